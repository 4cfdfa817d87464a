// Sub — https://onnx.ai/onnx/operators/onnx__Sub.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a - b, float32 or int64 (int64 only for the shape arithmetic exporters emit;
// wraps around on overflow).
// VJP: +g for a, -g for b, each summed back over the dims it was broadcast along.
// Kind: Sum (a sum with a negated term, e.g. mean subtraction: LRP splits relevance in proportion
// to the signed terms).
#include "ops/binary_arith.hpp"

namespace onnxplain::ops {
namespace {

class Sub final : public BinaryArith<kernels::SubFn> {
 public:
  using BinaryArith::BinaryArith;
  OpKind kind() const override { return OpKind::Sum; }
  bool fuses_rectifier() const override { return true; }
  // The cotangent summed to each operand's shape: no value is read.
  void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const override {
    (void)constant;
    no_vjp_reads(in, out);
  }
  float sum_sign(std::size_t input) const override { return input == 0 ? 1.f : input == 1 ? -1.f : 0.f; }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    kernels::BroadcastPlan plan;
    Shape bs;
    const Tensor* g = vjp_prologue(in, gout, need, gin, plan, bs);
    if (!g) return;
    // Each operand's gradient is +-the cotangent, summed over the dims it was broadcast along.
    if (need[0]) gin[0] = kernels::sum_to(*g, in[0]->shape(), in[0]->shape(), ctx.threads());
    if (need[1]) {
      const Tensor s = kernels::sum_to(*g, bs, in[1]->shape(), ctx.threads());
      gin[1] = ctx.alloc(DType::Float32, in[1]->shape());  // s may share g's storage: negate into a new tensor
      kernels::unary_map(s, gin[1], ctx.threads(), [](float v) { return -v; });
    }
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Sub, Sub)
