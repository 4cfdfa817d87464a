// Separable per-axis resampling shared by Pad's reflect/edge/wrap modes and Resize/Upsample: each
// axis gets a map from output index i to at most two input indices with weights,
//   y[.., i, ..] = w0[i] x[.., i0[i], ..] + w1[i] x[.., i1[i], ..],
// applied one axis after the other (a bilinear resize is a linear one along H, then along W). A
// one-tap map with weight 1 copies bytes (any dtype); the adjoint scatters the cotangent back,
// summing where several outputs read one input. Work items are (outer index, block of the inner
// contiguous run), so a thread never writes another's rows.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

struct AxisMap {
  int64_t axis = 0;
  int64_t in_len = 0;
  std::vector<int64_t> i0, i1;  // out_len entries each; i1 empty: one tap
  std::vector<float> w0, w1;    // empty: weight 1 (copy)
  int64_t out_len() const { return static_cast<int64_t>(i0.size()); }
  bool identity() const {
    if (!i1.empty() || !w0.empty() || out_len() != in_len) return false;
    for (int64_t i = 0; i < in_len; ++i)
      if (i0[static_cast<std::size_t>(i)] != i) return false;
    return true;
  }
};

namespace axis_map_detail {
constexpr int64_t kBlock = 512;

inline void split(const Shape& s, int64_t axis, int64_t* outer, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int64_t k = 0; k < axis; ++k) *outer *= s[static_cast<std::size_t>(k)];
  for (std::size_t k = static_cast<std::size_t>(axis) + 1; k < s.size(); ++k) *inner *= s[k];
}
}  // namespace axis_map_detail

/// x resampled along every map in turn (maps of distinct axes).
inline Tensor apply_axis_maps(const Tensor& x, const std::vector<AxisMap>& maps, ExecContext& ctx) {
  using namespace axis_map_detail;
  Tensor cur = x;
  for (const AxisMap& m : maps) {
    if (m.identity()) continue;
    Shape ys = cur.shape();
    ys[static_cast<std::size_t>(m.axis)] = m.out_len();
    Tensor y = ctx.alloc(cur.dtype(), ys);
    int64_t outer, inner;
    split(ys, m.axis, &outer, &inner);
    const int64_t L = m.out_len(), Lin = m.in_len;
    const int64_t nb = inner == 0 ? 0 : (inner + kBlock - 1) / kBlock;
    const bool copy = m.w0.empty();
    const std::size_t es = dtype_size(cur.dtype());
    const auto* src = static_cast<const char*>(cur.raw());
    auto* dst = static_cast<char*>(y.raw());
    kernels::parallel_for(outer * nb, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t it = b; it < e; ++it) {
        const int64_t o = it / nb, j0 = (it % nb) * kBlock, n = std::min(kBlock, inner - j0);
        for (int64_t i = 0; i < L; ++i) {
          const std::size_t si = static_cast<std::size_t>(i);
          const int64_t d = (o * L + i) * inner + j0;
          const int64_t s0 = (o * Lin + m.i0[si]) * inner + j0;
          if (copy) {
            std::memcpy(dst + d * static_cast<int64_t>(es), src + s0 * static_cast<int64_t>(es),
                        static_cast<std::size_t>(n) * es);
            continue;
          }
          const float* a = reinterpret_cast<const float*>(src) + s0;
          float* yd = reinterpret_cast<float*>(dst) + d;
          const float w0 = m.w0[si];
          if (m.i1.empty()) {
            for (int64_t j = 0; j < n; ++j) yd[j] = w0 * a[j];
          } else {
            const float* c = reinterpret_cast<const float*>(src) + (o * Lin + m.i1[si]) * inner + j0;
            const float w1 = m.w1[si];
            for (int64_t j = 0; j < n; ++j) yd[j] = w0 * a[j] + w1 * c[j];
          }
        }
      }
    }, std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(L * std::min(kBlock, inner), 1)));
    cur = y;
  }
  return cur;
}

/// The adjoint of apply_axis_maps for a float32 cotangent g of the resampled shape: the gradient
/// with respect to x (of shape `x_shape`).
inline Tensor adjoint_axis_maps(const Tensor& g, const Shape& x_shape, const std::vector<AxisMap>& maps,
                                ExecContext& ctx) {
  using namespace axis_map_detail;
  Tensor cur = g;
  for (auto it_m = maps.rbegin(); it_m != maps.rend(); ++it_m) {
    const AxisMap& m = *it_m;
    if (m.identity()) continue;
    Shape xs = cur.shape();
    xs[static_cast<std::size_t>(m.axis)] = m.in_len;
    Tensor dx = Tensor::zeros(DType::Float32, xs);
    int64_t outer, inner;
    split(xs, m.axis, &outer, &inner);
    const int64_t L = m.out_len(), Lin = m.in_len;
    const int64_t nb = inner == 0 ? 0 : (inner + kBlock - 1) / kBlock;
    const float* src = cur.f32();
    float* dst = dx.f32();
    kernels::parallel_for(outer * nb, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t it = b; it < e; ++it) {
        const int64_t o = it / nb, j0 = (it % nb) * kBlock, n = std::min(kBlock, inner - j0);
        for (int64_t i = 0; i < L; ++i) {
          const std::size_t si = static_cast<std::size_t>(i);
          const float* gy = src + (o * L + i) * inner + j0;
          float* a = dst + (o * Lin + m.i0[si]) * inner + j0;
          const float w0 = m.w0.empty() ? 1.f : m.w0[si];
          for (int64_t j = 0; j < n; ++j) a[j] += w0 * gy[j];
          if (!m.i1.empty()) {
            float* c = dst + (o * Lin + m.i1[si]) * inner + j0;
            const float w1 = m.w1[si];
            for (int64_t j = 0; j < n; ++j) c[j] += w1 * gy[j];
          }
        }
      }
    }, std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(L * std::min(kBlock, inner), 1)));
    cur = dx;
  }
  if (cur.shape() != x_shape) {
    Tensor r = ctx.alloc(DType::Float32, x_shape);
    if (r.numel() == cur.numel()) std::memcpy(r.raw(), cur.raw(), static_cast<std::size_t>(r.numel()) * 4);
    return r;
  }
  return cur;
}

}  // namespace onnxplain::ops
