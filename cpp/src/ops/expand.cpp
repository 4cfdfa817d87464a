// Expand — https://onnx.ai/onnx/operators/onnx__Expand.html (opsets 8, 13).
// y = x broadcast (numpy rules, both ways) with the int64 `shape` input: dims of 1 in `shape`
// keep x's dim. The dynamo exporter writes Conv biases and BatchNorm parameters through it; those
// fold to constants at load. Kind: Routing (copies values, no arithmetic; gradients are summed
// back over the broadcast dims).
#include <string>

#include <algorithm>
#include <cstring>

#include "kernels/broadcast.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

/// Copies x (shape xs, right-aligned) into y (shape ys) with broadcasting: one odometer over
/// y's outer dims, the innermost dim copied as a run or filled from one value.
template <class T>
void expand_copy(const T* x, const Shape& xs, T* y, const Shape& ys) {
  const std::size_t r = ys.size();
  std::vector<int64_t> xstride(r, 0);
  int64_t s = 1;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const std::size_t d = r - 1 - k;
    const int64_t dim = xs[xs.size() - 1 - k];
    xstride[d] = dim == 1 ? 0 : s;
    s *= dim;
  }
  const int64_t inner = r ? ys[r - 1] : 1;
  const int64_t outer = inner ? shape_numel(ys) / inner : 0;
  const bool run = r && xstride[r - 1] != 0;
  std::vector<int64_t> idx(r ? r - 1 : 0, 0);
  int64_t off = 0;
  for (int64_t o = 0; o < outer; ++o) {
    T* row = y + o * inner;
    if (run) std::memcpy(row, x + off, static_cast<std::size_t>(inner) * sizeof(T));
    else std::fill(row, row + inner, x[off]);
    for (std::size_t d = idx.size(); d-- > 0;) {
      off += xstride[d];
      if (++idx[d] < ys[d]) break;
      off -= xstride[d] * ys[d];
      idx[d] = 0;
    }
  }
}

class Expand final : public Op {
 public:
  explicit Expand(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::Routing; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& s = in.at(1);
    if (s.dtype != DType::Int64) fail_format("the shape input must be int64, got " + std::string(dtype_name(s.dtype)));
    ValueInfo o;
    o.dtype = x.dtype;
    if (s.value) {
      Shape target = s.value->to_i64_vector();
      for (int64_t d : target)
        if (d < 0) fail_shape("shape " + shape_str(target) + " has a negative dimension");
      if (!x.has_rank) return {o};
      Shape y;
      if (!kernels::broadcast_shapes(x.shape, target, y))
        fail_shape(kernels::broadcast_error(x.shape, target));
      return {ValueInfo(x.dtype, y)};
    }
    if (x.has_rank && s.has_rank && s.rank() == 1 && s.shape[0] >= 0)
      o = ValueInfo(x.dtype, Shape(static_cast<std::size_t>(std::max<int64_t>(s.shape[0], x.rank())), -1));
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Shape y = out_shape(in);
    if (y == x.shape()) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(x.dtype(), y);
    if (x.dtype() == DType::Int64) expand_copy(x.i64(), x.shape(), out[0].i64(), y);
    else expand_copy(x.f32(), x.shape(), out[0].f32(), y);
  }

  // dx = dy summed over the broadcast dims. The broadcast plan collapses the walk to a few dims
  // whose innermost x-stride is 1 (add a row) or 0 (add a row's sum); when x has a stride on the
  // outermost dim, the tasks over it write disjoint parts of dx and run in parallel.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    const Shape y = out_shape(in);
    const Tensor* g = checked_cotangent(*this, gout, 0, y);
    if (g && y == x.shape()) {
      gin[0] = *g;
      return;
    }
    gin[0] = zeros_f32(ctx, x.shape());
    kernels::BroadcastPlan plan;
    if (!g || shape_numel(y) == 0 || !kernels::make_broadcast_plan(x.shape(), y, plan)) return;
    const std::vector<int64_t>& d = plan.dims;
    const std::vector<int64_t>& sa = plan.stride_a;
    const std::size_t r = d.size();
    const int64_t inner = d[r - 1], sin = sa[r - 1];
    const int64_t top = r >= 2 ? d[0] : 1;
    int64_t mid = 1;  // rows of dy per index of the outermost dim
    for (std::size_t k = 1; k + 1 < r; ++k) mid *= d[k];
    const float* pg = g->f32();
    float* pd = gin[0].f32();
    const int threads = r >= 2 && sa[0] != 0 ? ctx.threads() : 1;
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(1, mid * inner));
    kernels::parallel_for(
        top, threads,
        [&](int64_t b, int64_t e) {
          std::vector<int64_t> idx(r, 0);
          for (int64_t t = b; t < e; ++t) {
            int64_t off = r >= 2 ? t * sa[0] : 0;
            std::fill(idx.begin(), idx.end(), 0);
            const float* row = pg + t * mid * inner;
            for (int64_t m = 0; m < mid; ++m, row += inner) {
              float* dr = pd + off;
              if (sin != 0) {
                for (int64_t c = 0; c < inner; ++c) dr[c] += row[c];
              } else {
                float s = 0.f;
                for (int64_t c = 0; c < inner; ++c) s += row[c];
                dr[0] += s;
              }
              for (std::size_t k = r - 1; k-- > 1;) {
                off += sa[k];
                if (++idx[k] < d[k]) break;
                off -= sa[k] * d[k];
                idx[k] = 0;
              }
            }
          }
        },
        grain);
  }

 private:
  Shape out_shape(const std::vector<const Tensor*>& in) const {
    const Shape& xs = in[0]->shape();
    Shape target = in[1]->to_i64_vector();
    for (int64_t d : target)
      if (d < 0) fail_shape("shape " + shape_str(target) + " has a negative dimension");
    Shape y;
    if (!kernels::broadcast_shapes(xs, target, y)) fail_shape(kernels::broadcast_error(xs, target));
    return y;
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Expand, Expand)
