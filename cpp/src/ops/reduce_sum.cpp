// ReduceSum — https://onnx.ai/onnx/operators/onnx__ReduceSum.html (opsets 1, 11, 13).
// y = sum of x over `axes` (negative axes count from the end; none given = all axes), the reduced
// axes kept as size 1 when keepdims (default 1). Axes are an attribute before opset 13 and the
// optional int64 second input from 13 on, where noop_with_empty_axes = 1 makes empty axes the identity.
// float32 and int64 (shape arithmetic). VJP: dx = dy spread back over the reduced axes.
// Kind: AvgPool (a weightless linear pooling; LRP redistributes in proportion to the summands).
#include "kernels/reduce.hpp"
#include "ops/reduce_op.hpp"

namespace onnxplain::ops {
namespace {

class ReduceSum final : public ReduceOp {
 public:
  explicit ReduceSum(const NodeDesc& d) : ReduceOp(d, 13) {}
  OpKind kind() const override { return OpKind::AvgPool; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Reduction r = resolve(in);
    if (r.identity) {
      out[0] = x;  // the identity: alias, nothing to compute
      return;
    }
    out[0] = ctx.alloc(x.dtype(), r.out_shape);
    if (x.dtype() == DType::Int64)
      kernels::reduce_sum(x.i64(), x.shape(), r.mask, out[0].i64(), ctx.threads());
    else
      kernels::reduce_sum(x.f32(), x.shape(), r.mask, out[0].f32(), ctx.threads());
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    Reduction r;
    const Tensor* g = vjp_prologue(in, gout, need, gin, r);
    if (!g) return;
    gin[0] = ctx.alloc(DType::Float32, in[0]->shape());
    kernels::expand_reduced(g->f32(), in[0]->shape(), r.mask, 1.f, gin[0].f32(), ctx.threads());
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ReduceSum, ReduceSum)
