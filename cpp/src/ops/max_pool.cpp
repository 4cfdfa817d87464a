// MaxPool — https://onnx.ai/onnx/operators/onnx__MaxPool.html (opsets 1, 8, 10, 11, 12).
// y[n, c, o] = max over the window taps t of x[n, c, o*stride - pad_begin + t*dilation]; padding
// never wins (-inf). kernel_shape, strides, pads, auto_pad, dilations (10+), ceil_mode (10+);
// storage_order only concerns the Indices output, which is not supported (1-3 spatial axes).
// Kind: MaxPool (reverse passes route relevance/gradient to the winning input of each window).
// VJP: dY to the first maximum of each window in window order (ties: earliest tap; padding never wins).

#include "ops/pool_op.hpp"

namespace onnxplain::ops {
namespace {

class MaxPool final : public WindowPoolOp {
 public:
  explicit MaxPool(const NodeDesc& d) : WindowPoolOp(d) {
    if (d.num_outputs > 1) fail_format("the Indices output (output 1) is not supported; only output 0 is");
  }

  OpKind kind() const override { return OpKind::MaxPool; }
  bool keeps_nonneg() const override { return true; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Geometry g = resolve(x.shape());
    out[0] = ctx.alloc(DType::Float32, g.out_shape);
    kernels::max_pool(x.f32(), planes(x), g.w, out[0].f32(), ctx.threads());
  }

  // Each dY goes to the first maximum of its window, recomputed from the X passed in (no state is
  // kept from the forward: the op is shared and const, and a rule may pass a modified X).
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Geometry g = resolve(x.shape());
    const Tensor* gy = vjp_prologue(x, g.out_shape, gout, need, gin, ctx);
    if (!gy) return;
    kernels::max_pool_backward(x.f32(), gy->f32(), planes(x), g.w, gin[0].f32(), ctx.threads());
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(MaxPool, MaxPool)
