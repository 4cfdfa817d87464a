// Softplus — https://onnx.ai/onnx/operators/onnx__Softplus.html (opsets 1, 22).
// Formula: y = log(1 + e^x), as max(x, 0) + log1p(e^-|x|) so large |x| neither overflows nor
// rounds to 0.
// Kind: Activation (LRP passes relevance through; the gradient is sigmoid(x)).
#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Softplus final : public Op {
 public:
  explicit Softplus(const NodeDesc& d) : Op(d) {}
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
    kernels::unary_map(x, out[0], ctx.threads(), [](float v) { return kernels::stable_softplus(v); });
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
    // d/dx log(1 + e^x) = sigmoid(x).
    kernels::binary_map(x.f32(), g.f32(), gin[0].f32(), x.numel(), ctx.threads(),
                        [](float v, float gv) { return gv * kernels::stable_sigmoid(v); });
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Softplus, Softplus)
