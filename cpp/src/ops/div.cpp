// Div — https://onnx.ai/onnx/operators/onnx__Div.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a / b. float32 follows IEEE (x/0 = +-inf, 0/0 = NaN); int64 truncates toward zero
// as onnxruntime does, and an int64 division by zero is an error instead of a hardware trap.
// VJP: g / b for a, -g * (a / b) / b for b (as torch), each summed back over its broadcast dims.
// Kind: Product (division by a constant is a scaling; by an activation, a Product rule).
#include "ops/binary_arith.hpp"

namespace onnxplain::ops {
namespace {

class Div final : public BinaryArith<kernels::DivFn> {
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
    // d/da = g / b and d/db = -g * (a / b) / b (torch's order of operations), each summed back
    // over its broadcast dims. Recomputed from the inputs, not the output, so a rule may pass
    // modified inputs alone.
    if (need[0]) gin[0] = reduced(plan, a, b, *g, a.shape(), a.shape(), ctx, [](float, float vb, float vg) { return vg / vb; });
    if (need[1])
      gin[1] = reduced(plan, a, b, *g, bs, b.shape(), ctx,
                       [](float va, float vb, float vg) { return -vg * ((va / vb) / vb); });
  }

 protected:
  void check_operands(const Tensor& a, const Tensor& b, const kernels::BroadcastPlan& plan) const override {
    if (a.dtype() == DType::Int64 && plan.numel > 0 && kernels::contains_zero(b)) fail_shape("integer division by zero");
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Div, Div)
