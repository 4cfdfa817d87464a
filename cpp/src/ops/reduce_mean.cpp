// ReduceMean — https://onnx.ai/onnx/operators/onnx__ReduceMean.html (opsets 1, 11, 13, 18).
// y = mean of x over `axes` (negative axes count from the end; none given = all axes), the reduced
// axes kept as size 1 when keepdims (default 1). Axes are an attribute before opset 18 and the
// optional int64 second input from 18 on, where noop_with_empty_axes = 1 makes empty axes the identity.
// Computed as the sum times 1/count (an empty reduction gives NaN, like onnxruntime); int64 input
// divides the sum with truncation. VJP: dx = dy / count spread back over the reduced axes.
// Kind: AvgPool (the dynamo exporter writes global average
// pooling as ReduceMean over axes [2, 3]).
#include <limits>

#include "kernels/reduce.hpp"
#include "ops/reduce_op.hpp"

namespace onnxplain::ops {
namespace {

class ReduceMean final : public ReduceOp {
 public:
  explicit ReduceMean(const NodeDesc& d) : ReduceOp(d, 18) {}
  OpKind kind() const override { return OpKind::AvgPool; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Reduction r = resolve(in);
    if (r.identity) {
      out[0] = x;  // the identity: alias, nothing to compute
      return;
    }
    out[0] = ctx.alloc(x.dtype(), r.out_shape);
    const int64_t count = reduced_count(x, r.mask);
    Tensor& y = out[0];
    if (x.dtype() == DType::Int64) {
      kernels::reduce_sum(x.i64(), x.shape(), r.mask, y.i64(), ctx.threads());
      int64_t* py = y.i64();
      if (count > 1)
        for (int64_t i = 0; i < y.numel(); ++i) py[i] /= count;
      return;
    }
    kernels::reduce_sum(x.f32(), x.shape(), r.mask, y.f32(), ctx.threads());
    if (count == 1) return;
    const float s = count > 0 ? 1.f / static_cast<float>(count) : std::numeric_limits<float>::quiet_NaN();
    float* py = y.f32();
    for (int64_t i = 0; i < y.numel(); ++i) py[i] *= s;
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    Reduction r;
    const Tensor* g = vjp_prologue(in, gout, need, gin, r);
    if (!g) return;
    const int64_t count = reduced_count(*in[0], r.mask);
    const float scale = count > 0 ? 1.f / static_cast<float>(count) : 0.f;
    gin[0] = ctx.alloc(DType::Float32, in[0]->shape());
    kernels::expand_reduced(g->f32(), in[0]->shape(), r.mask, scale, gin[0].f32(), ctx.threads());
  }

 private:
  static int64_t reduced_count(const Tensor& x, const std::vector<bool>& mask) {
    int64_t count = 1;
    for (std::size_t d = 0; d < mask.size(); ++d)
      if (mask[d]) count *= x.dim(static_cast<int64_t>(d));
    return count;
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ReduceMean, ReduceMean)
