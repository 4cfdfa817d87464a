// GlobalMaxPool — https://onnx.ai/onnx/operators/onnx__GlobalMaxPool.html (opsets 1, 22).
// y[n, c, 1, ..., 1] = max of x[n, c, ...] over all spatial axes (any rank >= 3).
// Kind: MaxPool (reverse passes route relevance/gradient to the winning input of each plane).
// VJP: dY to the first maximum of each plane.
#include "kernels/pool.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class GlobalMaxPool final : public Op {
 public:
  explicit GlobalMaxPool(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::MaxPool; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32) fail_shape(std::string("expects a float32 input, got ") + dtype_name(x.dtype));
    if (!x.has_rank) return {ValueInfo()};
    return {ValueInfo(DType::Float32, out_shape(x.shape))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    out[0] = ctx.alloc(DType::Float32, out_shape(x.shape()));
    const int64_t planes = x.dim(0) * x.dim(1);
    kernels::global_max_pool(x.f32(), planes, planes > 0 ? x.numel() / planes : 0, out[0].f32(), ctx.threads());
  }

  // Each dY goes to the first maximum of its plane (recomputed from X).
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& x = *in[0];
    const Shape ys = out_shape(x.shape());
    const Tensor* gy = gout.empty() ? nullptr : gout[0];
    if (gy && (gy->dtype() != DType::Float32 || gy->shape() != ys))
      fail_shape("the cotangent of Y has shape " + shape_str(gy->shape()) + " (" + dtype_name(gy->dtype()) +
                 ") but Y has shape " + shape_str(ys) + " (float32)");
    if (need.empty() || !need[0]) return;
    if (gin.empty()) gin.resize(1);
    if (!gy) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());
      return;
    }
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    const int64_t planes = x.dim(0) * x.dim(1), n = planes > 0 ? x.numel() / planes : 0;
    kernels::global_max_pool_backward(x.f32(), gy->f32(), planes, n, gin[0].f32(), ctx.threads());
  }

 private:
  Shape out_shape(const Shape& xs) const {
    if (xs.size() < 3) fail_shape("the input must have rank >= 3 (N, C, spatial...), got shape " + shape_str(xs));
    Shape ys(xs.size(), 1);
    ys[0] = xs[0];
    ys[1] = xs[1];
    return ys;
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(GlobalMaxPool, GlobalMaxPool)
