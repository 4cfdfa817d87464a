// Helpers shared by the routing and shape-arithmetic ops (Reshape, Transpose, Slice, Pad, ...):
// axis normalisation, integer lists read from an attribute or a (constant) input, and the one
// strided copy kernel every data-moving op reduces to. These ops only move bytes, so the kernel
// works on element size (4 or 8 bytes), never on the dtype. Their VJPs run the same copies
// backwards; the helpers at the end check cotangents and make the zero and view gradients.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ir/graph.hpp"
#include "ir/tensor.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

/// "[1, -1, 0]": raw integers, so -1 in a requested Reshape shape reads as -1, not "?".
inline std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// Maps axis in [-rank, rank) to [0, rank); anything else is a ShapeError naming the node.
inline int64_t normalize_axis(const Op& op, int64_t axis, int64_t rank, const char* what = "axis") {
  if (axis < -rank || axis >= rank)
    op.fail_shape(std::string(what) + " " + std::to_string(axis) + " is out of range for rank " +
                  std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

/// Normalises every axis and rejects repeats (the spec forbids them in Squeeze/Unsqueeze/Slice/Pad).
inline std::vector<int64_t> normalize_axes(const Op& op, const std::vector<int64_t>& axes, int64_t rank,
                                           const char* what = "axes") {
  std::vector<int64_t> out;
  out.reserve(axes.size());
  for (int64_t a : axes) {
    int64_t n = normalize_axis(op, a, rank, "axis");
    if (std::find(out.begin(), out.end(), n) != out.end())
      op.fail_shape(std::string(what) + " " + ints_str(axes) + " repeat axis " + std::to_string(n));
    out.push_back(n);
  }
  return out;
}

/// Load-time check that the first `n` inputs (`names`, e.g. "data, shape") are present and that
/// the node has an output, so infer/forward never index past what a malformed node has.
inline void require_io(const Op& op, const NodeDesc& d, std::size_t n, const char* names) {
  for (std::size_t i = 0; i < n; ++i)
    if (i >= d.input_present.size() || !d.input_present[i])
      op.fail_format(op.op_type() + " needs the input" + (n > 1 ? "s " : " ") + names);
  if (d.num_outputs < 1) op.fail_format(op.op_type() + " needs an output");
}

/// Input i, or nullptr when the node has fewer inputs or the optional input is omitted.
inline const Tensor* input_or_null(const std::vector<const Tensor*>& in, std::size_t i) {
  return i < in.size() ? in[i] : nullptr;
}

/// Whether input i is present in the node (not omitted with "").
inline bool input_given(const std::vector<ValueInfo>& in, std::size_t i) {
  return i < in.size() && (in[i].has_rank || in[i].value != nullptr);
}

/// The integer values of input i when they are known before running (a constant), else false.
inline bool known_ints(const std::vector<ValueInfo>& in, std::size_t i, std::vector<int64_t>& out) {
  if (i >= in.size() || !in[i].value) return false;
  out = in[i].value->to_i64_vector();
  return true;
}

/// Product of dims, or -1 when one of them is unknown (0 wins over unknown: the product is 0).
/// ShapeError when the known non-zero dims multiply to more than kMaxNumel (as shape_numel).
inline int64_t known_numel(const Shape& s) {
  int64_t n = 1;
  bool unknown = false, empty = false;
  for (int64_t d : s) {
    if (d < 0)
      unknown = true;
    else if (d == 0)
      empty = true;
    else
      n = checked_numel_mul(n, d);
  }
  return empty ? 0 : unknown ? -1 : n;
}

/// Row-major strides (in elements) of a fully known shape.
inline std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (std::size_t k = s.size(); k-- > 1;) st[k - 1] = st[k] * s[k];
  return st;
}

namespace detail {

constexpr int64_t kTile = 32;

// dst[b][i][j] = src[b*s0 + i + j*s2] with dst contiguous [nb, ni, nj]: the inner loop of a plain
// strided copy would read with stride s2, so the transpose goes through 32x32 tiles that fit L1.
template <class T>
void tiled_transpose(const T* src, int64_t s0, int64_t s2, T* dst, int64_t nb, int64_t ni, int64_t nj,
                     int threads) {
  const int64_t ti = (ni + kTile - 1) / kTile;
  const int64_t tasks = nb * ti;
  const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(1, kTile * nj));
  kernels::parallel_for(
      tasks, threads,
      [&](int64_t tb, int64_t te) {
        for (int64_t t = tb; t < te; ++t) {
          const int64_t b = t / ti, i0 = (t % ti) * kTile, i1 = std::min(ni, i0 + kTile);
          const T* sb = src + b * s0;
          T* db = dst + b * ni * nj;
          for (int64_t j0 = 0; j0 < nj; j0 += kTile) {
            const int64_t j1 = std::min(nj, j0 + kTile);
            for (int64_t j = j0; j < j1; ++j) {
              const T* sj = sb + j * s2;
              for (int64_t i = i0; i < i1; ++i) db[i * nj + j] = sj[i];
            }
          }
        }
      },
      grain);
}

template <class T>
void copy_strided_t(const T* src, std::vector<int64_t> ss, T* dst, std::vector<int64_t> ds, Shape shape,
                    int threads) {
  // Drop size-1 dims, then merge neighbours that are contiguous in both src and dst, so slices of
  // whole rows become one memcpy and transposes reduce to their 2-D core.
  std::size_t r = 0;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 1) continue;
    if (r > 0 && ss[r - 1] == ss[k] * shape[k] && ds[r - 1] == ds[k] * shape[k]) {
      shape[r - 1] *= shape[k];
      ss[r - 1] = ss[k];
      ds[r - 1] = ds[k];
      continue;
    }
    shape[r] = shape[k];
    ss[r] = ss[k];
    ds[r] = ds[k];
    ++r;
  }
  shape.resize(r);
  ss.resize(r);
  ds.resize(r);
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  // Transposes of a contiguous destination: NCHW<->NHWC arrive here as [C, HW] with src
  // strides [1, C] (or a batch of them).
  const bool dst_contig = ds[r - 1] == 1 && (r < 2 || ds[r - 2] == shape[r - 1]) &&
                          (r < 3 || ds[r - 3] == shape[r - 1] * shape[r - 2]);
  if (dst_contig && r == 2 && ss[0] == 1 && shape[0] >= 4 && shape[1] >= 4) {
    tiled_transpose(src, 0, ss[1], dst, 1, shape[0], shape[1], threads);
    return;
  }
  if (dst_contig && r == 3 && ss[1] == 1 && shape[1] >= 4 && shape[2] >= 4) {
    tiled_transpose(src, ss[0], ss[2], dst, shape[0], shape[1], shape[2], threads);
    return;
  }
  const int64_t inner = shape[r - 1], sin = ss[r - 1], din = ds[r - 1];
  int64_t rows = 1;
  for (std::size_t k = 0; k + 1 < r; ++k) rows *= shape[k];
  const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(1, inner));
  kernels::parallel_for(
      rows, threads,
      [&](int64_t b, int64_t e) {
        // Odometer over the outer dims, started by one division per chunk.
        std::vector<int64_t> idx(r, 0);
        int64_t so = 0, dof = 0, rem = b;
        for (std::size_t k = r - 1; k-- > 0;) {
          idx[k] = rem % shape[k];
          rem /= shape[k];
          so += idx[k] * ss[k];
          dof += idx[k] * ds[k];
        }
        for (int64_t row = b; row < e; ++row) {
          const T* s = src + so;
          T* d = dst + dof;
          if (sin == 1 && din == 1)
            std::memcpy(d, s, static_cast<std::size_t>(inner) * sizeof(T));
          else
            for (int64_t j = 0; j < inner; ++j) d[j * din] = s[j * sin];
          for (std::size_t k = r - 1; k-- > 0;) {
            so += ss[k];
            dof += ds[k];
            if (++idx[k] < shape[k]) break;
            so -= ss[k] * shape[k];
            dof -= ds[k] * shape[k];
            idx[k] = 0;
          }
        }
      },
      grain);
}

}  // namespace detail

/// dst[d_off + sum_k i_k*dst_stride[k]] = src[s_off + sum_k i_k*src_stride[k]] for every index of
/// `shape` (strides and offsets in elements of `elem_size` bytes, 4 or 8). Parallel for big copies.
inline void copy_strided(const void* src, int64_t s_off, const std::vector<int64_t>& src_stride, void* dst,
                         int64_t d_off, const std::vector<int64_t>& dst_stride, const Shape& shape,
                         std::size_t elem_size, int threads) {
  for (int64_t d : shape)
    if (d == 0) return;
  if (elem_size == 8)
    detail::copy_strided_t(static_cast<const uint64_t*>(src) + s_off, src_stride,
                           static_cast<uint64_t*>(dst) + d_off, dst_stride, shape, threads);
  else
    detail::copy_strided_t(static_cast<const uint32_t*>(src) + s_off, src_stride,
                           static_cast<uint32_t*>(dst) + d_off, dst_stride, shape, threads);
}

// ---- Reverse pass (vjp) helpers ---------------------------------------------------------------

/// Float zeros through the context's allocator (gradients of values that never reach the output).
inline Tensor zeros_f32(ExecContext& ctx, const Shape& shape) {
  Tensor t = ctx.alloc(DType::Float32, shape);
  if (t.numel()) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

/// The cotangent of output k (nullptr = zero), checked against the shape `expect` the op derives
/// from its inputs: a mismatch is a ShapeError naming the node, never a read out of bounds.
inline const Tensor* checked_cotangent(const Op& op, const std::vector<const Tensor*>& gout, std::size_t k,
                                       const Shape& expect) {
  const Tensor* g = k < gout.size() ? gout[k] : nullptr;
  if (!g) return nullptr;
  if (g->dtype() != DType::Float32)
    op.fail_shape("the cotangent of output " + std::to_string(k) + " is " + dtype_name(g->dtype()) +
                  ", not float32");
  if (g->shape() != expect)
    op.fail_shape("the cotangent of output " + std::to_string(k) + " has shape " + shape_str(g->shape()) +
                  " but the output has shape " + shape_str(expect));
  return g;
}

/// Zero gradients for the needed inputs from `first` on: inputs that only steer the op (shapes,
/// indices, a Dropout ratio, a CastLike target) do not reach the output values.
inline void zero_grads(const std::vector<const Tensor*>& in, const std::vector<bool>& need, std::vector<Tensor>& gin,
                       std::size_t first, ExecContext& ctx) {
  for (std::size_t i = first; i < need.size() && i < in.size() && i < gin.size(); ++i)
    if (need[i] && in[i]) gin[i] = zeros_f32(ctx, in[i]->shape());
}

/// The VJP of an op whose output is its input viewed with another shape (Reshape, Flatten,
/// Squeeze, Unsqueeze, Identity, Dropout): the cotangent viewed back with the input's shape
/// (an alias, no copy). `y_shape` is the output shape derived from the inputs.
inline void view_vjp(const Op& op, const std::vector<const Tensor*>& in, const Shape& y_shape,
                     const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
                     ExecContext& ctx) {
  if (!need.empty() && need[0]) {
    const Tensor& x = *in[0];
    const Tensor* g = checked_cotangent(op, gout, 0, y_shape);
    gin[0] = g ? g->reshaped(x.shape()) : zeros_f32(ctx, x.shape());
  }
  zero_grads(in, need, gin, 1, ctx);
}

}  // namespace onnxplain::ops
