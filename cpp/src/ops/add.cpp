// Add — https://onnx.ai/onnx/operators/onnx__Add.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a + b, float32 or int64 (int64 only for the shape arithmetic exporters emit;
// wraps around on overflow).
// VJP: the cotangent, summed back over the dims each operand was broadcast along.
// Kind: Sum (residual connections, bias adds: LRP splits relevance in proportion to the terms).
#include "ops/binary_arith.hpp"

namespace onnxplain::ops {
namespace {

class Add final : public BinaryArith<kernels::AddFn> {
 public:
  using BinaryArith::BinaryArith;
  OpKind kind() const override { return OpKind::Sum; }
  bool fuses_rectifier() const override { return true; }
  // The cotangent summed to each operand's shape: no value is read.
  void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const override {
    (void)constant;
    no_vjp_reads(in, out);
  }
  float sum_sign(std::size_t) const override { return 1.f; }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    kernels::BroadcastPlan plan;
    Shape bs;
    const Tensor* g = vjp_prologue(in, gout, need, gin, plan, bs);
    if (!g) return;
    // Each operand's gradient is the cotangent, summed over the dims it was broadcast along.
    if (need[0]) gin[0] = kernels::sum_to(*g, in[0]->shape(), in[0]->shape(), ctx.threads());
    if (need[1]) gin[1] = kernels::sum_to(*g, bs, in[1]->shape(), ctx.threads());
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Add, Add)
