// Tanh — https://onnx.ai/onnx/operators/onnx__Tanh.html (opsets 6, 13).
// Formula: y = tanh(x).
// Kind: Activation (LRP passes relevance through; the gradient is 1 - y^2).
#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Tanh final : public Op {
 public:
  explicit Tanh(const NodeDesc& d) : Op(d) {}
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
    kernels::unary_map(x, out[0], ctx.threads(), [](float v) { return std::tanh(v); });
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (!need[0] || kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& x = *in[0];
    const Tensor& g = *gout[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    if (out.empty() || out[0] == nullptr || out[0]->shape() != x.shape())
      fail_shape("the forward output does not match the input shape " + shape_str(x.shape()));
    const Tensor& y = *out[0];
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    // From the output, as torch: 1 - y^2.
    kernels::binary_map(y.f32(), g.f32(), gin[0].f32(), x.numel(), ctx.threads(),
                        [](float t, float gv) { return gv * (1.f - t * t); });
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Tanh, Tanh)
