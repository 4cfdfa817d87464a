// Elementwise kernels shared by the arithmetic ops (Add/Sub/Mul/Div over a BroadcastPlan, float32
// and int64), the unary activations (one parallel map) and Softmax/LogSoftmax (one stable
// kernel). Ops pass small functors; everything inlines into one tight loop per (op, dtype, stride
// pattern).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ir/tensor.hpp"
#include "kernels/broadcast.hpp"
#include "kernels/parallel.hpp"

namespace onnxplain::kernels {

// ---- arithmetic functors ------------------------------------------------------------------
// int64 arithmetic wraps around (two's complement) instead of being undefined on overflow, as
// numpy and onnxruntime's int64 kernels behave on the usual hardware.
namespace detail {
inline int64_t wrap(uint64_t v) { return static_cast<int64_t>(v); }
inline uint64_t u(int64_t v) { return static_cast<uint64_t>(v); }
}  // namespace detail

struct AddFn {
  float operator()(float a, float b) const { return a + b; }
  int64_t operator()(int64_t a, int64_t b) const { return detail::wrap(detail::u(a) + detail::u(b)); }
};
struct SubFn {
  float operator()(float a, float b) const { return a - b; }
  int64_t operator()(int64_t a, int64_t b) const { return detail::wrap(detail::u(a) - detail::u(b)); }
};
struct MulFn {
  float operator()(float a, float b) const { return a * b; }
  int64_t operator()(int64_t a, int64_t b) const { return detail::wrap(detail::u(a) * detail::u(b)); }
};
/// Integer division truncates toward zero (C++ and onnxruntime). The caller must rule out b == 0;
/// INT64_MIN / -1 wraps to INT64_MIN instead of trapping.
struct DivFn {
  float operator()(float a, float b) const { return a / b; }
  int64_t operator()(int64_t a, int64_t b) const { return b == -1 ? detail::wrap(0 - detail::u(a)) : a / b; }
};

/// Whether an int64 tensor holds a zero (integer Div must fail cleanly instead of trapping).
inline bool contains_zero(const Tensor& t) {
  const int64_t* p = t.i64();
  return std::find(p, p + t.numel(), int64_t{0}) != p + t.numel();
}

// ---- broadcast binary map -------------------------------------------------------------------
namespace detail {
// One innermost run of n outputs; after plan collapsing each operand's stride is 0 or 1.
template <class T, class F>
inline void binary_run(const T* a, int64_t sa, const T* b, int64_t sb, T* y, int64_t n, const F& f) {
  if (sa != 0 && sb != 0) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
  } else if (sa != 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
  } else if (sb != 0) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
  } else {
    const T v = f(*a, *b);
    std::fill(y, y + n, v);
  }
}

// Offsets into a and b of output row `r` (a multi-index over the plan's outer dims).
inline void row_offsets(const BroadcastPlan& p, std::size_t outer, int64_t r, int64_t* idx, int64_t& oa,
                        int64_t& ob) {
  oa = ob = 0;
  for (std::size_t d = outer; d-- > 0;) {
    idx[d] = r % p.dims[d];
    r /= p.dims[d];
    oa += idx[d] * p.stride_a[d];
    ob += idx[d] * p.stride_b[d];
  }
}
}  // namespace detail

/// Calls run(oa, ob, oy, n) for every innermost run of a plan (offsets into a, b and the
/// output, run length n), split across threads.
template <class Run>
void for_each_run(const BroadcastPlan& p, int threads, const Run& run) {
  if (p.numel == 0) return;
  const std::size_t outer = p.dims.size() - 1;
  const int64_t n = p.dims.back(), sa = p.stride_a.back(), sb = p.stride_b.back();
  const int64_t rows = p.numel / n;
  if (rows < 2 * static_cast<int64_t>(threads)) {
    // Few long rows (same shape, scalar operand, [1,C,H,W] + [C,1,1]): split inside each row.
    std::vector<int64_t> idx(outer);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t oa, ob;
      detail::row_offsets(p, outer, r, idx.data(), oa, ob);
      parallel_for(n, threads, [&](int64_t i0, int64_t i1) { run(oa + i0 * sa, ob + i0 * sb, r * n + i0, i1 - i0); });
    }
    return;
  }
  parallel_for(
      rows, threads,
      [&](int64_t r0, int64_t r1) {
        // Divisions once per chunk; an odometer steps the offsets from row to row.
        std::vector<int64_t> idx(outer);
        int64_t oa, ob;
        detail::row_offsets(p, outer, r0, idx.data(), oa, ob);
        for (int64_t r = r0; r < r1; ++r) {
          run(oa, ob, r * n, n);
          for (std::size_t d = outer; d-- > 0;) {
            oa += p.stride_a[d];
            ob += p.stride_b[d];
            if (++idx[d] < p.dims[d]) break;
            oa -= p.stride_a[d] * p.dims[d];
            ob -= p.stride_b[d] * p.dims[d];
            idx[d] = 0;
          }
        }
      },
      std::max<int64_t>(1, kParallelGrain / n));
}

/// y[i] = f(a[.], b[.]) over a plan from make_broadcast_plan(a.shape, b.shape); y has
/// plan.out_shape.
template <class T, class F>
void broadcast_binary(const BroadcastPlan& p, const T* a, const T* b, T* y, int threads, const F& f) {
  const int64_t sa = p.stride_a.back(), sb = p.stride_b.back();
  for_each_run(p, threads, [&](int64_t oa, int64_t ob, int64_t oy, int64_t n) {
    detail::binary_run(a + oa, sa, b + ob, sb, y + oy, n, f);
  });
}

namespace detail {
template <class F>
inline void ternary_run(const float* a, int64_t sa, const float* b, int64_t sb, const float* c, float* y, int64_t n,
                        const F& f) {
  if (sa != 0 && sb != 0) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i], c[i]);
  } else if (sa != 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv, c[i]);
  } else if (sb != 0) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i], c[i]);
  } else {
    const float av = *a, bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = f(av, bv, c[i]);
  }
}
}  // namespace detail

/// y[i] = f(a[.], b[.], c[i]) for float32: a and b broadcast by the plan, c (typically the
/// output cotangent) and y have plan.out_shape. What the VJPs of broadcasting ops need.
template <class F>
void broadcast_ternary(const BroadcastPlan& p, const float* a, const float* b, const float* c, float* y, int threads,
                       const F& f) {
  const int64_t sa = p.stride_a.back(), sb = p.stride_b.back();
  for_each_run(p, threads, [&](int64_t oa, int64_t ob, int64_t oy, int64_t n) {
    detail::ternary_run(a + oa, sa, b + ob, sb, c + oy, y + oy, n, f);
  });
}

/// Tensor-level dispatch on dtype (a, b and y share it); F has float and int64 overloads.
template <class F>
void broadcast_binary(const BroadcastPlan& p, const Tensor& a, const Tensor& b, Tensor& y, int threads,
                      const F& f) {
  if (a.dtype() == DType::Int64)
    broadcast_binary(p, a.i64(), b.i64(), y.i64(), threads, f);
  else
    broadcast_binary(p, a.f32(), b.f32(), y.f32(), threads, f);
}

// ---- unary map ------------------------------------------------------------------------------
/// y[i] = f(x[i]) for float32 tensors of equal size.
template <class F>
void unary_map(const Tensor& x, Tensor& y, int threads, const F& f) {
  const float* px = x.f32();
  float* py = y.f32();
  parallel_for(x.numel(), threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
  });
}

/// y[i] = f(x[i], g[i]) for float32 arrays of n elements (an activation's VJP: x the forward
/// input or output, g the cotangent).
template <class F>
void binary_map(const float* x, const float* g, float* y, int64_t n, int threads, const F& f) {
  parallel_for(n, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i], g[i]);
  });
}

// ---- VJP helpers ----------------------------------------------------------------------------
/// For a single-output op whose output cotangent g is null (zero): gives every needed input a
/// zero gradient and returns true.
inline bool zero_vjp(const Tensor* g, const std::vector<const Tensor*>& in, const std::vector<bool>& need,
                     std::vector<Tensor>& gin) {
  if (g != nullptr) return false;
  for (std::size_t i = 0; i < need.size() && i < in.size(); ++i)
    if (need[i] && in[i] != nullptr) gin[i] = Tensor::zeros(DType::Float32, in[i]->shape());
  return true;
}

/// The gradient of an operand of shape `shape` from t, a float32 tensor shaped like the
/// broadcast output: t itself (shared, reshaped) when nothing was broadcast, otherwise t summed
/// over the broadcast dims. `aligned` is the operand's shape as broadcasting saw it (differs from
/// `shape` only by the trailing 1s of an opset < 7 `axis` operand); it must broadcast to t.
inline Tensor sum_to(const Tensor& t, const Shape& aligned, const Shape& shape, int threads) {
  if (t.numel() == shape_numel(shape)) return t.reshaped(shape);
  Tensor r(DType::Float32, shape);
  reduce_to_shape(t.f32(), t.shape(), aligned, r.f32(), threads);
  return r;
}

// ---- numerically stable scalar functions ----------------------------------------------------
/// 1 / (1 + e^-x) without overflow of e^-x for large negative x.
inline float stable_sigmoid(float x) {
  if (x >= 0.f) return 1.f / (1.f + std::exp(-x));
  const float e = std::exp(x);  // NaN takes this branch and stays NaN
  return e / (1.f + e);
}
/// log(1 + e^x) = max(x, 0) + log1p(e^-|x|).
inline float stable_softplus(float x) {
  return x > 0.f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// ---- softmax --------------------------------------------------------------------------------
/// Softmax (or log-softmax) of x viewed as [outer, n, inner], along the middle axis. Subtracts
/// the maximum first; a NaN or +inf in a slice makes the whole slice NaN, as in onnxruntime.
inline void softmax(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log_output,
                    int threads) {
  if (outer == 0 || n == 0 || inner == 0) return;
  const int64_t slice = n * inner;
  // Work items are (outer index, block of inner columns). Blocks matter when outer is small and
  // inner large (e.g. a per-pixel softmax over the channels of one image); each stays >= 64
  // columns wide so its passes still stream memory.
  int64_t nblk = 1;
  if (inner > 1 && outer < 4 * static_cast<int64_t>(threads)) {
    nblk = std::min((inner + 63) / 64, (4 * static_cast<int64_t>(threads) + outer - 1) / outer);
    if (nblk < 1) nblk = 1;
  }
  const int64_t blk = (inner + nblk - 1) / nblk;
  parallel_for(
      outer * nblk, threads,
      [&](int64_t w0, int64_t w1) {
        std::vector<float> mx(static_cast<std::size_t>(blk)), sum(static_cast<std::size_t>(blk));
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t o = w / nblk, j0 = (w % nblk) * blk, m = std::min(blk, inner - j0);
          if (m <= 0) continue;
          const float* xs = x + o * slice + j0;
          float* ys = y + o * slice + j0;
          // Walk k outer, j inner so every pass reads memory contiguously even when inner > 1.
          std::fill(mx.begin(), mx.begin() + m, -std::numeric_limits<float>::infinity());
          std::fill(sum.begin(), sum.begin() + m, 0.f);
          for (int64_t k = 0; k < n; ++k)
            for (int64_t j = 0; j < m; ++j) mx[j] = std::max(mx[j], xs[k * inner + j]);
          if (log_output) {
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) sum[j] += std::exp(xs[k * inner + j] - mx[j]);
            // (x - max) - log(sum), not x - (max + log(sum)): with |x| ~ 1e4 the latter loses
            // the small log term to rounding.
            for (int64_t j = 0; j < m; ++j) sum[j] = std::log(sum[j]);
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) ys[k * inner + j] = (xs[k * inner + j] - mx[j]) - sum[j];
          } else {
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) {
                const float e = std::exp(xs[k * inner + j] - mx[j]);
                ys[k * inner + j] = e;
                sum[j] += e;
              }
            // One division per slice, then multiplications.
            for (int64_t j = 0; j < m; ++j) sum[j] = 1.f / sum[j];
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) ys[k * inner + j] *= sum[j];
          }
        }
      },
      std::max<int64_t>(1, kParallelGrain / (n * blk)));
}

/// VJP of softmax (log_output false) or log-softmax over the same [outer, n, inner] view, from
/// the forward output y and the cotangent g (torch's formulas, which use only the output):
///   softmax:     gx = y * (g - sum_k g_k y_k)
///   log-softmax: gx = g - e^y * sum_k g_k
inline void softmax_vjp(const float* y, const float* g, float* gx, int64_t outer, int64_t n, int64_t inner,
                        bool log_output, int threads) {
  if (outer == 0 || n == 0 || inner == 0) return;
  const int64_t slice = n * inner;
  int64_t nblk = 1;
  if (inner > 1 && outer < 4 * static_cast<int64_t>(threads)) {
    nblk = std::min((inner + 63) / 64, (4 * static_cast<int64_t>(threads) + outer - 1) / outer);
    if (nblk < 1) nblk = 1;
  }
  const int64_t blk = (inner + nblk - 1) / nblk;
  parallel_for(
      outer * nblk, threads,
      [&](int64_t w0, int64_t w1) {
        std::vector<double> dot(static_cast<std::size_t>(blk));
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t o = w / nblk, j0 = (w % nblk) * blk, m = std::min(blk, inner - j0);
          if (m <= 0) continue;
          const int64_t base = o * slice + j0;
          const float* ys = y + base;
          const float* gs = g + base;
          float* xs = gx + base;
          std::fill(dot.begin(), dot.begin() + m, 0.0);
          if (log_output) {
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) dot[j] += gs[k * inner + j];
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j)
                xs[k * inner + j] = gs[k * inner + j] - std::exp(ys[k * inner + j]) * static_cast<float>(dot[j]);
          } else {
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j) dot[j] += static_cast<double>(gs[k * inner + j]) * ys[k * inner + j];
            for (int64_t k = 0; k < n; ++k)
              for (int64_t j = 0; j < m; ++j)
                xs[k * inner + j] = ys[k * inner + j] * (gs[k * inner + j] - static_cast<float>(dot[j]));
          }
        }
      },
      std::max<int64_t>(1, kParallelGrain / (n * blk)));
}

}  // namespace onnxplain::kernels
