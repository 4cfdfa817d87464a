// Mul — https://onnx.ai/onnx/operators/onnx__Mul.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a * b, float32 or int64 (int64 only for the shape arithmetic exporters emit;
// wraps around on overflow).
// VJP: g * b for a, g * a for b, each summed back over the dims it was broadcast along.
// Kind: Product (scaling by a constant is linear in the other operand; a product of two
// activations, e.g. gating, is handled by the Product rules).
#include "ops/binary_arith.hpp"

namespace onnxplain::ops {
namespace {

class Mul final : public BinaryArith<kernels::MulFn> {
 public:
  using BinaryArith::BinaryArith;
  OpKind kind() const override { return OpKind::Product; }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    kernels::BroadcastPlan plan;
    Shape bs;
    const Tensor* g = vjp_prologue(in, gout, need, gin, plan, bs);
    if (!g) return;
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    // d/da = g * b and d/db = g * a, each summed back over its broadcast dims. Both come from
    // the forward plan with the cotangent as the output-shaped third operand.
    if (need[0]) gin[0] = reduced(plan, a, b, *g, a.shape(), a.shape(), ctx, [](float, float vb, float vg) { return vg * vb; });
    if (need[1]) gin[1] = reduced(plan, a, b, *g, bs, b.shape(), ctx, [](float va, float, float vg) { return vg * va; });
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Mul, Mul)
