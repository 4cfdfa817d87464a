// LeakyRelu — https://onnx.ai/onnx/operators/onnx__LeakyRelu.html (opsets 6, 16).
// Formula: y = x >= 0 ? x : alpha * x (alpha default 0.01). NaN stays NaN.
// VJP: g for x > 0, alpha * g otherwise (torch: alpha at x == 0).
// Kind: Activation (LRP passes relevance through; the gradient is 1 or alpha).
#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class LeakyRelu final : public Op {
 public:
  explicit LeakyRelu(const NodeDesc& d) : Op(d), alpha_(d.attrs->get_float("alpha", 0.01f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    if (o.dtype != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(o.dtype));
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float alpha = alpha_;
    kernels::unary_map(x, out[0], ctx.threads(), [alpha](float v) { return v >= 0.f ? v : alpha * v; });
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    if (!need[0] || kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& x = *in[0];
    const Tensor& g = *gout[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    const float alpha = alpha_;
    // torch's convention: slope alpha at x == 0.
    kernels::binary_map(x.f32(), g.f32(), gin[0].f32(), x.numel(), ctx.threads(),
                        [alpha](float v, float gv) { return v > 0.f ? gv : alpha * gv; });
  }

 private:
  float alpha_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(LeakyRelu, LeakyRelu)
