// Gather — https://onnx.ai/onnx/operators/onnx__Gather.html (opset 1, 11 (negative indices), 13).
// y[i_0..i_{a-1}, j_0..j_{q-1}, i_{a+1}..] = x[i_0..i_{a-1}, idx[j_0..j_{q-1}], i_{a+1}..] for
// axis a, indices idx of any rank q (a scalar index drops the axis); negative indices count
// from the end; an index out of range is a ShapeError naming it. Data float32 or int64.
// Kind: Routing (relevance and gradients are scattered back to the gathered positions).
// Typical uses: Shape -> Gather(0) in exporters' shape arithmetic, embedding lookups.
#include <cstring>

#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Gather final : public Op {
 public:
  explicit Gather(const NodeDesc& d) : Op(d), axis_(d.attrs->get_int("axis", 0)) {
    require_io(*this, d, 2, "data, indices");
  }
  OpKind kind() const override { return OpKind::Routing; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& idx = in.at(1);
    ValueInfo o;
    o.dtype = x.dtype;
    if (!x.has_rank || !idx.has_rank) return {o};
    const std::size_t a = static_cast<std::size_t>(normalize_axis(*this, axis_, x.rank()));
    const int64_t dim = x.shape[a];
    if (idx.value && dim >= 0) check_indices(*idx.value, dim);
    Shape s(x.shape.begin(), x.shape.begin() + static_cast<std::ptrdiff_t>(a));
    s.insert(s.end(), idx.shape.begin(), idx.shape.end());
    s.insert(s.end(), x.shape.begin() + static_cast<std::ptrdiff_t>(a) + 1, x.shape.end());
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& it = *in[1];
    const int64_t a = normalize_axis(*this, axis_, x.rank());
    const int64_t dim = x.dim(a);
    std::vector<int64_t> idx = check_indices(it, dim);
    Shape s(x.shape().begin(), x.shape().begin() + a);
    s.insert(s.end(), it.shape().begin(), it.shape().end());
    s.insert(s.end(), x.shape().begin() + a + 1, x.shape().end());
    out[0] = ctx.alloc(x.dtype(), s);
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < a; ++k) outer *= x.dim(k);
    for (int64_t k = a + 1; k < x.rank(); ++k) inner *= x.dim(k);
    const int64_t n = static_cast<int64_t>(idx.size());
    if (outer * n * inner == 0) return;
    const std::size_t es = dtype_size(x.dtype());
    const std::size_t row = static_cast<std::size_t>(inner) * es;
    const char* src = static_cast<const char*>(x.raw());
    char* dst = static_cast<char*>(out[0].raw());
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / inner);
    kernels::parallel_for(
        outer * n, ctx.threads(),
        [&](int64_t b, int64_t e) {
          for (int64_t t = b; t < e; ++t) {
            const int64_t o = t / n, j = t % n;
            std::memcpy(dst + static_cast<std::size_t>(t) * row,
                        src + static_cast<std::size_t>(o * dim + idx[static_cast<std::size_t>(j)]) * row, row);
          }
        },
        grain);
  }

  // dx = zeros with dy's rows added at the gathered positions; repeated indices accumulate.
  // Tasks own disjoint (outer, column block) tiles of dx, so the adds need no atomics and their
  // order (index order) is fixed whatever the thread count.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    const Tensor& it = *in[1];
    const int64_t a = normalize_axis(*this, axis_, x.rank());
    const int64_t dim = x.dim(a);
    std::vector<int64_t> idx = check_indices(it, dim);
    Shape s(x.shape().begin(), x.shape().begin() + a);
    s.insert(s.end(), it.shape().begin(), it.shape().end());
    s.insert(s.end(), x.shape().begin() + a + 1, x.shape().end());
    const Tensor* g = checked_cotangent(*this, gout, 0, s);
    gin[0] = zeros_f32(ctx, x.shape());
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < a; ++k) outer *= x.dim(k);
    for (int64_t k = a + 1; k < x.rank(); ++k) inner *= x.dim(k);
    const int64_t n = static_cast<int64_t>(idx.size());
    if (!g || outer * n * inner == 0) return;
    constexpr int64_t kBlock = 1024;
    const int64_t blocks = (inner + kBlock - 1) / kBlock;
    const float* pg = g->f32();
    float* pd = gin[0].f32();
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(1, n * std::min(inner, kBlock)));
    kernels::parallel_for(
        outer * blocks, ctx.threads(),
        [&](int64_t b, int64_t e) {
          for (int64_t t = b; t < e; ++t) {
            const int64_t o = t / blocks, c0 = (t % blocks) * kBlock, c1 = std::min(inner, c0 + kBlock);
            float* d = pd + o * dim * inner;
            const float* src = pg + o * n * inner;
            for (int64_t j = 0; j < n; ++j) {
              float* dr = d + idx[static_cast<std::size_t>(j)] * inner;
              const float* sr = src + j * inner;
              for (int64_t c = c0; c < c1; ++c) dr[c] += sr[c];
            }
          }
        },
        grain);
  }

 private:
  // The indices made non-negative; out-of-range ones are an error (never read out of bounds).
  std::vector<int64_t> check_indices(const Tensor& t, int64_t dim) const {
    std::vector<int64_t> idx = t.to_i64_vector();
    for (int64_t& v : idx) {
      if (v < -dim || v >= dim)
        fail_shape("index " + std::to_string(v) + " is out of range for axis " + std::to_string(axis_) + " of size " +
                   std::to_string(dim));
      if (v < 0) v += dim;
    }
    return idx;
  }
  int64_t axis_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Gather, Gather)
