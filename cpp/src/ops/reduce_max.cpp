// ReduceMax — https://onnx.ai/onnx/operators/onnx__ReduceMax.html (opsets 1, 11, 12, 13, 18, 20).
// y = max of x over `axes` (negative axes count from the end; none given = all axes), reduced axes
// kept as size 1 when keepdims (default 1). Axes are an attribute before opset 18 and the optional
// int64 second input from 18 on (noop_with_empty_axes = 1 makes empty axes the identity). NaNs
// are skipped, as in onnxruntime (which differs only for a NaN first in its reduction: it returns
// that NaN); an empty or all-NaN reduction gives -inf (float), INT64_MIN for int64.
// VJP: each dy goes to the first maximal element of its reduction in row-major order (as
// torch.max(dim) picks its index), NaNs skipped as in the forward; an all-NaN reduction gets none.
// Kind: MaxPool (the dynamo exporter writes adaptive/global max pooling as ReduceMax over [2, 3]).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/parallel.hpp"
#include "kernels/reduce.hpp"
#include "ops/reduce_op.hpp"

namespace onnxplain::ops {
namespace {

// A NaN never compares greater, so it is skipped, as onnxruntime's ReduceMax does.
template <class T>
inline T max_nan(T a, T b) {
  return b > a ? b : a;
}

/// Max over the masked axes of a row-major tensor. Trailing reduced axes (the pooling case) run
/// as contiguous rows; any other pattern walks the input once with an odometer over the output.
template <class T>
void reduce_max(const T* x, const Shape& shape, const std::vector<bool>& mask, T* y, int64_t ny, int threads) {
  const T lowest = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                        : std::numeric_limits<T>::lowest();
  for (int64_t i = 0; i < ny; ++i) y[i] = lowest;
  const std::size_t r = shape.size();
  std::size_t first_trailing = r;
  while (first_trailing > 0 && mask[first_trailing - 1]) --first_trailing;
  bool trailing_only = true;
  for (std::size_t d = 0; d < first_trailing; ++d) trailing_only = trailing_only && !mask[d];
  int64_t inner = 1;
  for (std::size_t d = first_trailing; d < r; ++d) inner *= shape[d];
  if (trailing_only) {
    kernels::parallel_for(ny, threads, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* p = x + o * inner;
        T m = lowest;
        for (int64_t k = 0; k < inner; ++k) m = max_nan(m, p[k]);
        y[o] = m;
      }
    });
    return;
  }
  // Output strides per input axis (0 for reduced axes).
  std::vector<int64_t> ostride(r, 0);
  int64_t s = 1;
  for (std::size_t d = r; d-- > 0;)
    if (!mask[d]) {
      ostride[d] = s;
      s *= shape[d];
    }
  int64_t n = shape_numel(shape);
  std::vector<int64_t> idx(r + 1, 0);  // one spare slot keeps GCC 12's -Wfree-nonheap-object quiet
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    y[off] = max_nan(y[off], x[i]);
    for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
      const auto k = static_cast<std::size_t>(d);
      off += ostride[k];
      if (++idx[k] < shape[k]) break;
      off -= ostride[k] * shape[k];
      idx[k] = 0;
    }
  }
}

/// dx for y = max over the masked axes: dx = 0 except dx[first argmax] = dy. The argmax is
/// recomputed from x, the first non-NaN element strictly above all before it.
void route_to_max(const float* x, const Shape& shape, const std::vector<bool>& mask, const float* g, int64_t ny,
                  float* dx, int threads) {
  const int64_t n = shape_numel(shape);
  std::fill(dx, dx + n, 0.f);
  if (n == 0) return;
  const std::size_t r = shape.size();
  std::size_t first_trailing = r;
  while (first_trailing > 0 && mask[first_trailing - 1]) --first_trailing;
  bool trailing_only = true;
  for (std::size_t d = 0; d < first_trailing; ++d) trailing_only = trailing_only && !mask[d];
  int64_t inner = 1;
  for (std::size_t d = first_trailing; d < r; ++d) inner *= shape[d];
  if (trailing_only) {
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(inner, 1));
    kernels::parallel_for(ny, threads, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const float* p = x + o * inner;
        int64_t best = -1;
        float m = 0.f;
        for (int64_t k = 0; k < inner; ++k)
          if (best < 0 ? !std::isnan(p[k]) : p[k] > m) {
            m = p[k];
            best = k;
          }
        if (best >= 0) dx[o * inner + best] = g[o];
      }
    }, grain);
    return;
  }
  // Any other axis pattern: one walk over x keeping the running argmax of every output.
  std::vector<int64_t> ostride(r, 0);
  int64_t s = 1;
  for (std::size_t d = r; d-- > 0;)
    if (!mask[d]) {
      ostride[d] = s;
      s *= shape[d];
    }
  std::vector<int64_t> arg(static_cast<std::size_t>(ny), -1);
  std::vector<float> best(static_cast<std::size_t>(ny), 0.f);
  std::vector<int64_t> idx(r + 1, 0);
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto o = static_cast<std::size_t>(off);
    if (arg[o] < 0 ? !std::isnan(x[i]) : x[i] > best[o]) {
      best[o] = x[i];
      arg[o] = i;
    }
    for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
      const auto k = static_cast<std::size_t>(d);
      off += ostride[k];
      if (++idx[k] < shape[k]) break;
      off -= ostride[k] * shape[k];
      idx[k] = 0;
    }
  }
  for (int64_t o = 0; o < ny; ++o)
    if (arg[static_cast<std::size_t>(o)] >= 0) dx[arg[static_cast<std::size_t>(o)]] = g[o];
}

class ReduceMax final : public ReduceOp {
 public:
  explicit ReduceMax(const NodeDesc& d) : ReduceOp(d, 18) {}
  OpKind kind() const override { return OpKind::MaxPool; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Reduction r = resolve(in);
    if (r.identity) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(x.dtype(), r.out_shape);
    if (x.dtype() == DType::Int64)
      reduce_max(x.i64(), x.shape(), r.mask, out[0].i64(), out[0].numel(), ctx.threads());
    else
      reduce_max(x.f32(), x.shape(), r.mask, out[0].f32(), out[0].numel(), ctx.threads());
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    Reduction r;
    const Tensor* g = vjp_prologue(in, gout, need, gin, r);
    if (!g) return;
    const Tensor& x = *in[0];
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    route_to_max(x.f32(), x.shape(), r.mask, g->f32(), g->numel(), gin[0].f32(), ctx.threads());
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ReduceMax, ReduceMax)
