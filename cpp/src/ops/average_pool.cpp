// AveragePool — https://onnx.ai/onnx/operators/onnx__AveragePool.html (opsets 1, 7, 10, 11, 19).
// y[n, c, o] = sum over the window taps t of x[n, c, o*stride - pad_begin + t*dilation] / count,
// count = taps inside the input, or with count_include_pad (7+) taps inside the padded input
// (taps that ceil_mode (10+) adds past the end padding never count, as in onnxruntime).
// kernel_shape, strides, pads, auto_pad, dilations (19); 1-3 spatial axes.
// Kind: AvgPool (LRP redistributes proportionally to the contributions x/count).
// VJP: dY / count to every tap of the window, with the forward's count.

#include "ops/pool_op.hpp"

namespace onnxplain::ops {
namespace {

class AveragePool final : public WindowPoolOp {
 public:
  explicit AveragePool(const NodeDesc& d)
      : WindowPoolOp(d), count_include_pad_(d.attrs->get_int("count_include_pad", 0) != 0) {}

  OpKind kind() const override { return OpKind::AvgPool; }
  bool keeps_nonneg() const override { return true; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Geometry g = resolve(x.shape());
    out[0] = ctx.alloc(DType::Float32, g.out_shape);
    kernels::avg_pool(x.f32(), planes(x), g.w, count_include_pad_, out[0].f32(), ctx.threads());
  }

  // dX = dY / count spread over each window's taps, with the forward's divisor.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Geometry g = resolve(x.shape());
    const Tensor* gy = vjp_prologue(x, g.out_shape, gout, need, gin, ctx);
    if (!gy) return;
    kernels::avg_pool_backward(gy->f32(), planes(x), g.w, count_include_pad_, gin[0].f32(), ctx.threads());
  }

 private:
  bool count_include_pad_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(AveragePool, AveragePool)
