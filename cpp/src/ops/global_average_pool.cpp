// GlobalAveragePool — https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html (opsets 1, 22).
// y[n, c, 1, ..., 1] = mean of x[n, c, ...] over all spatial axes (any rank >= 3).
// Kind: AvgPool (LRP redistributes proportionally to the contributions x/count).
// VJP: dY / (spatial size) to every element of the plane.
#include "ops/pool_op.hpp"

namespace onnxplain::ops {
namespace {

class GlobalAveragePool final : public GlobalPoolOp {
 public:
  using GlobalPoolOp::GlobalPoolOp;
  OpKind kind() const override { return OpKind::AvgPool; }
  bool keeps_nonneg() const override { return true; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    out[0] = ctx.alloc(DType::Float32, out_shape(x.shape()));
    kernels::global_avg_pool(x.f32(), planes(x), plane_size(x), out[0].f32(), ctx.threads());
  }

  // dX = dY / (number of spatial elements), broadcast over each plane.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor* gy = vjp_prologue(x, out_shape(x.shape()), gout, need, gin, ctx);
    if (!gy) return;
    kernels::global_avg_pool_backward(gy->f32(), planes(x), plane_size(x), gin[0].f32(), ctx.threads());
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(GlobalAveragePool, GlobalAveragePool)
