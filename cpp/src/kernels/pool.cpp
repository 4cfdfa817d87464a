#include "kernels/pool.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/parallel.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace onnxplain::kernels {

std::string parse_auto_pad(const std::string& s, AutoPad* out) {
  if (s.empty() || s == "NOTSET")
    *out = AutoPad::NotSet;
  else if (s == "SAME_UPPER")
    *out = AutoPad::SameUpper;
  else if (s == "SAME_LOWER")
    *out = AutoPad::SameLower;
  else if (s == "VALID")
    *out = AutoPad::Valid;
  else
    return "auto_pad '" + s + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID";
  return "";
}

namespace {

std::string ints_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

std::string normalize_window(WindowSpec* spec, int64_t nd) {
  const auto n = static_cast<std::size_t>(nd);
  if (spec->kernel.size() != n)
    return "kernel_shape " + ints_str(spec->kernel) + " has " + std::to_string(spec->kernel.size()) +
           " values but the input has " + std::to_string(nd) + " spatial axes";
  if (spec->strides.empty()) spec->strides.assign(n, 1);
  if (spec->dilations.empty()) spec->dilations.assign(n, 1);
  if (spec->pads.empty()) spec->pads.assign(2 * n, 0);
  if (spec->strides.size() != n) return "strides " + ints_str(spec->strides) + " must have " + std::to_string(nd) + " values";
  if (spec->dilations.size() != n)
    return "dilations " + ints_str(spec->dilations) + " must have " + std::to_string(nd) + " values";
  if (spec->pads.size() != 2 * n)
    return "pads " + ints_str(spec->pads) + " must have " + std::to_string(2 * nd) + " values";
  for (std::size_t i = 0; i < n; ++i) {
    if (spec->kernel[i] < 1) return "kernel_shape " + ints_str(spec->kernel) + " must be positive";
    if (spec->strides[i] < 1) return "strides " + ints_str(spec->strides) + " must be positive";
    if (spec->dilations[i] < 1) return "dilations " + ints_str(spec->dilations) + " must be positive";
  }
  for (int64_t p : spec->pads)
    if (p < 0) return "pads " + ints_str(spec->pads) + " must be non-negative";
  return "";
}

std::string window_axis(const WindowSpec& spec, int64_t axis, int64_t in, int64_t* out, int64_t* pad_begin,
                        int64_t* pad_end) {
  const auto a = static_cast<std::size_t>(axis);
  const int64_t s = spec.strides[a];
  const int64_t dk = (spec.kernel[a] - 1) * spec.dilations[a] + 1;  // extent of the dilated window
  if (spec.auto_pad == AutoPad::SameUpper || spec.auto_pad == AutoPad::SameLower) {
    if (in < 0) {
      *out = *pad_begin = *pad_end = -1;
      return "";
    }
    *out = (in + s - 1) / s;
    // Clamped at 0 like TensorFlow's SAME (a 1x1 stride-2 window never needs negative padding);
    // the odd pixel goes to the end (UPPER) or the beginning (LOWER).
    const int64_t total = std::max<int64_t>(0, (*out - 1) * s + dk - in);
    *pad_begin = spec.auto_pad == AutoPad::SameUpper ? total / 2 : total - total / 2;
    *pad_end = total - *pad_begin;
    return "";
  }
  const bool valid = spec.auto_pad == AutoPad::Valid;
  *pad_begin = valid ? 0 : spec.pads[a];
  *pad_end = valid ? 0 : spec.pads[a + spec.kernel.size()];
  if (in < 0) {
    *out = -1;
    return "";
  }
  const int64_t span = in + *pad_begin + *pad_end - dk;
  if (span < 0)
    return "the window (extent " + std::to_string(dk) + ") is larger than the padded input (" +
           std::to_string(in + *pad_begin + *pad_end) + ") on spatial axis " + std::to_string(axis);
  *out = span / s + 1;
  if (spec.ceil_mode && span % s != 0) {
    ++*out;
    // A window that would start in the end padding is dropped (ONNX, onnxruntime, PyTorch).
    if ((*out - 1) * s >= in + *pad_begin) --*out;
  }
  return "";
}

std::string window_out_dims(const WindowSpec& spec, const std::vector<int64_t>& in, std::vector<int64_t>* out) {
  out->assign(in.size(), -1);
  if (static_cast<int64_t>(in.size()) != spec.nd())
    return "the window has " + std::to_string(spec.nd()) + " spatial axes but the input has " +
           std::to_string(in.size());
  for (std::size_t a = 0; a < in.size(); ++a) {
    int64_t pb = 0, pe = 0;
    std::string err = window_axis(spec, static_cast<int64_t>(a), in[a], &(*out)[a], &pb, &pe);
    if (!err.empty()) return err;
  }
  return "";
}

std::string resolve_window(const WindowSpec& spec, const std::vector<int64_t>& in, Window3* w) {
  const int64_t nd = spec.nd();
  if (nd < 1 || nd > 3 || static_cast<int64_t>(in.size()) != nd)
    return "only 1 to 3 spatial axes are supported, got " + std::to_string(in.size());
  const int64_t lead = 3 - nd;
  for (int64_t i = 0; i < lead; ++i) {
    w->in[i] = w->out[i] = w->k[i] = w->s[i] = w->d[i] = 1;
    w->pb[i] = w->pe[i] = 0;
  }
  for (int64_t a = 0; a < nd; ++a) {
    const auto ua = static_cast<std::size_t>(a);
    const int64_t i = lead + a;
    w->in[i] = in[ua];
    w->k[i] = spec.kernel[ua];
    w->s[i] = spec.strides[ua];
    w->d[i] = spec.dilations[ua];
    std::string err = window_axis(spec, a, in[ua], &w->out[i], &w->pb[i], &w->pe[i]);
    if (!err.empty()) return err;
  }
  return "";
}

namespace {

// Per output index of one axis: first input index of the window and the range of taps
// [k0, k1) that land inside the input, plus the taps inside the padded input (the divisor of
// count_include_pad).
struct AxisTaps {
  std::vector<int64_t> i0, k0, k1, kpad;
};

AxisTaps axis_taps(const Window3& w, int a) {
  AxisTaps t;
  const int64_t n = w.out[a], k = w.k[a], s = w.s[a], d = w.d[a], in = w.in[a];
  t.i0.resize(static_cast<std::size_t>(n));
  t.k0 = t.k1 = t.kpad = t.i0;
  for (int64_t o = 0; o < n; ++o) {
    const auto u = static_cast<std::size_t>(o);
    const int64_t i0 = o * s - w.pb[a];
    t.i0[u] = i0;
    t.k0[u] = i0 < 0 ? std::min(k, (-i0 + d - 1) / d) : 0;
    t.k1[u] = std::max<int64_t>(t.k0[u], std::min(k, (in - i0 + d - 1) / d));
    t.kpad[u] = std::max<int64_t>(0, std::min(k, (in + w.pe[a] - i0 + d - 1) / d));
  }
  return t;
}

int64_t plane_grain(int64_t work_per_plane) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, work_per_plane));
}

// Max pooling over 2-D windows without dilation (the pools of common CNNs: VGG's 2x2/2,
// ResNet's padded 3x3/2). Per output row, each tap (ky, kx) is one strided run over the output
// columns it reaches, so the inner loops are long and branch-free; the generic loops pay for
// per-output tap bounds (3.5x slower than onnxruntime on ResNet's stem pool). Taps are visited in
// the generic order (ky, then kx), so ties and NaN (which never wins) resolve the same way.
bool rows_2d(const Window3& w) {
  return w.k[0] == 1 && w.in[0] == 1 && w.out[0] == 1 && w.d[1] == 1 && w.d[2] == 1;
}

// The output columns [c0, c1) whose tap kx lands inside the input row (ix = ox * s + kx - pad).
void tap_cols(const Window3& w, int64_t kx, int64_t* c0, int64_t* c1) {
  const int64_t s = w.s[2], off = kx - w.pb[2], last = w.in[2] - 1 - off;
  *c0 = off >= 0 ? 0 : (-off + s - 1) / s;
  *c1 = last < 0 ? 0 : std::min(w.out[2], last / s + 1);
  *c1 = std::max(*c0, *c1);
}

void max_pool_rows(const float* x, int64_t planes, const Window3& w, float* y, int threads) {
  const int64_t H = w.in[1], W = w.in[2], OH = w.out[1], OW = w.out[2], kh = w.k[1], kw = w.k[2];
  const int64_t sh = w.s[1], sw = w.s[2], pt = w.pb[1], pl = w.pb[2];
  if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && pt == 0 && pl == 0 && 2 * OH <= H && 2 * OW <= W) {
    // The small CNNs' 2x2/2 pool on 4-16 wide rows: per-row fills and per-tap column ranges cost
    // more than the maxima there (digits at batch 64: the two pools were a fifth of the forward).
    // Same comparisons in the same order as below.
#if defined(__SSE2__)
    if (W == 4 && H == 2 * OH) {
      // 4x4 -> 2x2 maps (the second pool of 8x8-input CNNs): two output rows per step from 16
      // consecutive input floats; one row at a time left half of each vector idle and the loop
      // overhead per 2 outputs dominated (16 us for 8K outputs).
      const int64_t rows = planes * OH;
      parallel_for(
          (rows + 1) / 2, threads,
          [&](int64_t qb, int64_t qe) {
            const __m128 ninf = _mm_set1_ps(-std::numeric_limits<float>::infinity());
            for (int64_t q = qb; q < qe; ++q) {
              const float* a = x + q * 16;
              if (2 * q + 1 == rows) {  // an odd last row
                for (int64_t ox = 0; ox < 2; ++ox) {
                  float m = -std::numeric_limits<float>::infinity();
                  const float v[4] = {a[2 * ox], a[2 * ox + 1], a[4 + 2 * ox], a[4 + 2 * ox + 1]};
                  for (float t : v) m = t > m ? t : m;
                  y[4 * q + ox] = m;
                }
                continue;
              }
              // Rows 2r, 2r+2 hold the first taps' rows of the two outputs, 2r+1, 2r+3 the second.
              const __m128 a0 = _mm_loadu_ps(a), b0 = _mm_loadu_ps(a + 4), a1 = _mm_loadu_ps(a + 8),
                           b1 = _mm_loadu_ps(a + 12);
              __m128 m = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), ninf);
              m = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), m);
              m = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), m);
              m = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), m);
              _mm_storeu_ps(y + 4 * q, m);
            }
          },
          std::max<int64_t>(1, kParallelGrain / 16));
      return;
    }
#endif
    parallel_for(
        planes * OH, threads,
        [&](int64_t rb, int64_t re) {
          // Row pointers advanced, not recomputed: two 64-bit divisions per output row were most
          // of the time on the 2-4 wide rows of the small CNNs' second pool.
          int64_t oy = rb % OH;
          const float* a = x + ((rb / OH) * H + 2 * oy) * W;
          for (int64_t r = rb; r < re; ++r, a += 2 * W) {
            if (oy == OH) oy = 0, a += (H - 2 * OH) * W;  // next plane: skip the unpooled last row
            ++oy;
            const float* b = a + W;
            float* yr = y + r * OW;
            int64_t ox = 0;
#if defined(__SSE2__)
            // Four outputs at a time: even and odd columns of both rows split by shuffles, then
            // the same maxima in the same order (MAXPS returns its second operand unless the first
            // is strictly greater, which is `t > m ? t : m`). Scalar, the pools were 8% of the
            // digits CNN at batch 64 (onnxruntime's NCHWc pool needs no shuffles at all).
            const __m128 ninf = _mm_set1_ps(-std::numeric_limits<float>::infinity());
            for (; ox + 4 <= OW; ox += 4) {
              const __m128 a0 = _mm_loadu_ps(a + 2 * ox), a1 = _mm_loadu_ps(a + 2 * ox + 4);
              const __m128 b0 = _mm_loadu_ps(b + 2 * ox), b1 = _mm_loadu_ps(b + 2 * ox + 4);
              __m128 m = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), ninf);
              m = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), m);
              m = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), m);
              m = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), m);
              _mm_storeu_ps(yr + ox, m);
            }
#endif
            for (; ox < OW; ++ox) {
              float m = -std::numeric_limits<float>::infinity();
              const float v[4] = {a[2 * ox], a[2 * ox + 1], b[2 * ox], b[2 * ox + 1]};
              for (float t : v) m = t > m ? t : m;
              yr[ox] = m;
            }
          }
        },
        std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, OW * 4)));
    return;
  }
  parallel_for(
      planes * OH, threads,
      [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {
          const int64_t p = r / OH, oy = r % OH;
          float* yr = y + r * OW;
          std::fill(yr, yr + OW, -std::numeric_limits<float>::infinity());
          for (int64_t ky = 0; ky < kh; ++ky) {
            const int64_t iy = oy * sh - pt + ky;
            if (iy < 0 || iy >= H) continue;
            const float* xr = x + (p * H + iy) * W;
            for (int64_t kx = 0; kx < kw; ++kx) {
              int64_t c0, c1;
              tap_cols(w, kx, &c0, &c1);
              const int64_t off = kx - pl;
              for (int64_t ox = c0; ox < c1; ++ox) {
                const float v = xr[ox * sw + off];
                yr[ox] = v > yr[ox] ? v : yr[ox];
              }
            }
          }
        }
      },
      std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, OW * kh * kw)));
}

// One plane per work item (windows of neighbouring rows overlap). Per output row the running
// maximum and its input index are kept for all columns; the winner is the first strict
// improvement over -inf, or the window's first tap inside the input when none improves (all -inf
// or NaN), as in pool_backward_impl.
void max_pool_rows_backward(const float* x, const float* dy, int64_t planes, const Window3& w, float* dx,
                            int threads) {
  const int64_t H = w.in[1], W = w.in[2], OH = w.out[1], OW = w.out[2], kh = w.k[1], kw = w.k[2];
  const int64_t sh = w.s[1], sw = w.s[2], pt = w.pb[1], pl = w.pb[2];
  parallel_for(
      planes, threads,
      [&](int64_t pb, int64_t pe) {
        // Plane-relative indices fit 32 bits (checked by the caller), so the compare-and-select
        // runs on 8 lanes of floats and 8 of indices alike (with 64-bit indices it did not
        // vectorise, and the mispredicted branches cost 3x).
        std::vector<float> bv(static_cast<std::size_t>(OW));
        std::vector<int32_t> bi(static_cast<std::size_t>(OW));
        for (int64_t p = pb; p < pe; ++p) {
          const float* xp = x + p * H * W;
          float* dp = dx + p * H * W;
          std::fill(dp, dp + H * W, 0.f);
          for (int64_t oy = 0; oy < OH; ++oy) {
            std::fill(bv.begin(), bv.end(), -std::numeric_limits<float>::infinity());
            std::fill(bi.begin(), bi.end(), int32_t{-1});
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * sh - pt + ky;
              if (iy < 0 || iy >= H) continue;
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t c0, c1;
                tap_cols(w, kx, &c0, &c1);
                const auto base = static_cast<int32_t>(iy * W + kx - pl), step = static_cast<int32_t>(sw);
                float* pv = bv.data();
                int32_t* pi = bi.data();
                auto ox = static_cast<int32_t>(c0);
#if defined(__SSE2__)
                if (step == 2) {
                  // Stride 2 (ResNet's 3x3/2 stem pool): the strided loads did not vectorise and
                  // this loop took 4x the forward. Four windows from 8 consecutive floats, the
                  // even ones picked by a shuffle; the same compare (false on NaN) and selects.
                  const __m128i four = _mm_set1_epi32(8);
                  __m128i idx = _mm_add_epi32(_mm_set1_epi32(base + 2 * ox), _mm_setr_epi32(0, 2, 4, 6));
                  for (; ox + 4 <= static_cast<int32_t>(c1) && int64_t{base} + 2 * ox + 8 <= H * W; ox += 4) {
                    const float* src = xp + base + 2 * ox;
                    const __m128 v = _mm_shuffle_ps(_mm_loadu_ps(src), _mm_loadu_ps(src + 4), _MM_SHUFFLE(2, 0, 2, 0));
                    const __m128 old = _mm_loadu_ps(pv + ox);
                    const __m128 up = _mm_cmpgt_ps(v, old);
                    _mm_storeu_ps(pv + ox, _mm_or_ps(_mm_and_ps(up, v), _mm_andnot_ps(up, old)));
                    const __m128i upi = _mm_castps_si128(up);
                    const __m128i oldi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pi + ox));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(pi + ox),
                                     _mm_or_si128(_mm_and_si128(upi, idx), _mm_andnot_si128(upi, oldi)));
                    idx = _mm_add_epi32(idx, four);
                  }
                }
#endif
                for (; ox < static_cast<int32_t>(c1); ++ox) {
                  const int32_t i = base + ox * step;
                  const float v = xp[i];
                  const bool up = v > pv[ox];
                  pv[ox] = up ? v : pv[ox];
                  pi[ox] = up ? i : pi[ox];
                }
              }
            }
            const float* g = dy + (p * OH + oy) * OW;
            const int64_t iy0 = std::max<int64_t>(0, oy * sh - pt);
            for (int64_t ox = 0; ox < OW; ++ox) {
              int64_t i = bi[static_cast<std::size_t>(ox)];
              if (i < 0) i = iy0 * W + std::max<int64_t>(0, ox * sw - pl);
              dp[i] += g[ox];
            }
          }
        }
      },
      std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, H * W)));
}

template <bool kMax>
void pool_impl(const float* x, int64_t planes, const Window3& w, bool count_include_pad, float* y, int threads) {
  const AxisTaps t0 = axis_taps(w, 0), t1 = axis_taps(w, 1), t2 = axis_taps(w, 2);
  const int64_t in_hw = w.in[1] * w.in[2], in_w = w.in[2];
  const int64_t in_size = w.in_size(), out_size = w.out_size();
  const int64_t d0 = w.d[0] * in_hw, d1 = w.d[1] * in_w, d2 = w.d[2];
  parallel_for(
      planes, threads,
      [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe; ++p) {
          const float* xp = x + p * in_size;
          float* yp = y + p * out_size;
          for (int64_t a = 0; a < w.out[0]; ++a) {
            const auto ua = static_cast<std::size_t>(a);
            for (int64_t b = 0; b < w.out[1]; ++b) {
              const auto ub = static_cast<std::size_t>(b);
              for (int64_t c = 0; c < w.out[2]; ++c) {
                const auto uc = static_cast<std::size_t>(c);
                const float* base = xp + t0.i0[ua] * in_hw + t1.i0[ub] * in_w + t2.i0[uc];
                float acc = kMax ? -std::numeric_limits<float>::infinity() : 0.f;
                for (int64_t ka = t0.k0[ua]; ka < t0.k1[ua]; ++ka)
                  for (int64_t kb = t1.k0[ub]; kb < t1.k1[ub]; ++kb) {
                    const float* row = base + ka * d0 + kb * d1;
                    for (int64_t kc = t2.k0[uc]; kc < t2.k1[uc]; ++kc) {
                      const float v = row[kc * d2];
                      if (kMax)
                        acc = v > acc ? v : acc;
                      else
                        acc += v;
                    }
                  }
                if (!kMax) {
                  const int64_t cnt = count_include_pad
                                          ? t0.kpad[ua] * t1.kpad[ub] * t2.kpad[uc]
                                          : (t0.k1[ua] - t0.k0[ua]) * (t1.k1[ub] - t1.k0[ub]) * (t2.k1[uc] - t2.k0[uc]);
                  acc = cnt > 0 ? acc / static_cast<float>(cnt) : 0.f;
                }
                *yp++ = acc;
              }
            }
          }
        }
      },
      plane_grain(out_size * w.k_size()));
}

// The adjoint of pool_impl, one plane per work item (windows of one plane overlap, so a plane is
// only ever written by one thread).
template <bool kMax>
void pool_backward_impl(const float* x, const float* dy, int64_t planes, const Window3& w, bool count_include_pad,
                        float* dx, int threads) {
  const AxisTaps t0 = axis_taps(w, 0), t1 = axis_taps(w, 1), t2 = axis_taps(w, 2);
  const int64_t in_hw = w.in[1] * w.in[2], in_w = w.in[2];
  const int64_t in_size = w.in_size(), out_size = w.out_size();
  const int64_t d0 = w.d[0] * in_hw, d1 = w.d[1] * in_w, d2 = w.d[2];
  parallel_for(
      planes, threads,
      [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe; ++p) {
          const float* xp = kMax ? x + p * in_size : nullptr;
          const float* gp = dy + p * out_size;
          float* dp = dx + p * in_size;
          std::fill(dp, dp + in_size, 0.f);
          for (int64_t a = 0; a < w.out[0]; ++a) {
            const auto ua = static_cast<std::size_t>(a);
            for (int64_t b = 0; b < w.out[1]; ++b) {
              const auto ub = static_cast<std::size_t>(b);
              for (int64_t c = 0; c < w.out[2]; ++c) {
                const auto uc = static_cast<std::size_t>(c);
                const float g = *gp++;
                const int64_t ka0 = t0.k0[ua], ka1 = t0.k1[ua], kb0 = t1.k0[ub], kb1 = t1.k1[ub];
                const int64_t kc0 = t2.k0[uc], kc1 = t2.k1[uc];
                if (ka0 >= ka1 || kb0 >= kb1 || kc0 >= kc1) continue;  // no tap inside the input
                const int64_t base = t0.i0[ua] * in_hw + t1.i0[ub] * in_w + t2.i0[uc];
                if (kMax) {
                  // Same comparison as the forward, so the winner is the value it returned.
                  int64_t best = base + ka0 * d0 + kb0 * d1 + kc0 * d2;
                  float bv = -std::numeric_limits<float>::infinity();
                  for (int64_t ka = ka0; ka < ka1; ++ka)
                    for (int64_t kb = kb0; kb < kb1; ++kb) {
                      const int64_t row = base + ka * d0 + kb * d1;
                      for (int64_t kc = kc0; kc < kc1; ++kc) {
                        const float v = xp[row + kc * d2];
                        const bool up = v > bv;  // branch-free: the winner's place is unpredictable
                        bv = up ? v : bv;
                        best = up ? row + kc * d2 : best;
                      }
                    }
                  dp[best] += g;
                } else {
                  const int64_t cnt = count_include_pad ? t0.kpad[ua] * t1.kpad[ub] * t2.kpad[uc]
                                                        : (ka1 - ka0) * (kb1 - kb0) * (kc1 - kc0);
                  if (cnt <= 0) continue;
                  const float share = g / static_cast<float>(cnt);
                  for (int64_t ka = ka0; ka < ka1; ++ka)
                    for (int64_t kb = kb0; kb < kb1; ++kb) {
                      float* row = dp + base + ka * d0 + kb * d1;
                      for (int64_t kc = kc0; kc < kc1; ++kc) row[kc * d2] += share;
                    }
                }
              }
            }
          }
        }
      },
      plane_grain(out_size * w.k_size()));
}

}  // namespace

void max_pool(const float* x, int64_t planes, const Window3& w, float* y, int threads) {
  if (rows_2d(w)) return max_pool_rows(x, planes, w, y, threads);
  pool_impl<true>(x, planes, w, false, y, threads);
}

void avg_pool(const float* x, int64_t planes, const Window3& w, bool count_include_pad, float* y, int threads) {
  pool_impl<false>(x, planes, w, count_include_pad, y, threads);
}

void global_max_pool(const float* x, int64_t planes, int64_t n, float* y, int threads) {
  parallel_for(
      planes, threads,
      [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) {
          const float* xp = x + p * n;
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < n; ++i) m = xp[i] > m ? xp[i] : m;
          y[p] = m;
        }
      },
      plane_grain(n));
}

void global_avg_pool(const float* x, int64_t planes, int64_t n, float* y, int threads) {
  parallel_for(
      planes, threads,
      [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) {
          const float* xp = x + p * n;
          // Independent partial sums vectorise and keep the rounding error small.
          float acc[8] = {};
          int64_t i = 0;
          for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; ++j) acc[j] += xp[i + j];
          float s = 0.f;
          for (; i < n; ++i) s += xp[i];
          for (float a : acc) s += a;
          y[p] = n > 0 ? s / static_cast<float>(n) : 0.f;
        }
      },
      plane_grain(n));
}

void max_pool_backward(const float* x, const float* dy, int64_t planes, const Window3& w, float* dx, int threads) {
  if (rows_2d(w) && w.in_size() < (int64_t{1} << 31)) return max_pool_rows_backward(x, dy, planes, w, dx, threads);
  pool_backward_impl<true>(x, dy, planes, w, false, dx, threads);
}

void avg_pool_backward(const float* dy, int64_t planes, const Window3& w, bool count_include_pad, float* dx,
                       int threads) {
  pool_backward_impl<false>(nullptr, dy, planes, w, count_include_pad, dx, threads);
}

void global_max_pool_backward(const float* x, const float* dy, int64_t planes, int64_t n, float* dx, int threads) {
  parallel_for(
      planes, threads,
      [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) {
          const float* xp = x + p * n;
          float* dp = dx + p * n;
          std::fill(dp, dp + n, 0.f);
          if (n == 0) continue;
          // First strict improvement wins, as in global_max_pool.
          int64_t best = 0;
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < n; ++i)
            if (xp[i] > m) {
              m = xp[i];
              best = i;
            }
          dp[best] = dy[p];
        }
      },
      plane_grain(n));
}

void global_avg_pool_backward(const float* dy, int64_t planes, int64_t n, float* dx, int threads) {
  parallel_for(
      planes, threads,
      [&](int64_t b, int64_t e) {
        for (int64_t p = b; p < e; ++p) {
          const float share = n > 0 ? dy[p] / static_cast<float>(n) : 0.f;
          std::fill(dx + p * n, dx + (p + 1) * n, share);
        }
      },
      plane_grain(n));
}

}  // namespace onnxplain::kernels
