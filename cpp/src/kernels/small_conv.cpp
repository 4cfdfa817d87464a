#include "kernels/small_conv.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ONNXPLAIN_DIRECT_AVX2 1
#endif

#include "kernels/panel_gemm.hpp"
#include "kernels/scratch.hpp"

namespace onnxplain::kernels {

namespace {

// Column matrix of one unit of work (floats): a few panels of K x 16 that stay in L2 while the
// product streams the weight panels past them.
constexpr int64_t kUnitFloats = int64_t{48} << 10;
constexpr int64_t kMaxUnitPanels = 16;
// Padded input images kept per thread (floats), at least the ones one unit reads.
constexpr int64_t kWindowFloats = int64_t{64} << 10;
// Weight floats per group up to which small_conv_applies (256 KiB: in L2 beside a unit's panels).
constexpr int64_t kMaxWeightFloats = int64_t{64} << 10;
// Multiply-adds below which a layer runs on one thread: an OpenMP region costs a few
// microseconds, a conv on a 2x2 map at batch 1 takes less.
constexpr int64_t kParallelMacs = int64_t{1} << 18;

// The layer's geometry in the terms of the padded 2-D planes (axis 0 of Window3 is 1 here).
struct Geom {
  int64_t N, C, M, G, Cg, Mg, K, CgK, P, NC, IN;
  int64_t in1, in2, out2, s1, s2, pb1, pb2;
  int64_t Hp, Wp, plane, img;  // padded plane, one padded image (Cg planes)
  int L;                       // columns per contiguous run of a panel: 16, out2 (divides 16) or 1
  int64_t unit_panels, win_images;
  std::vector<int64_t> tap_off;  // offset of tap t from the window's top-left in a padded plane
};

Geom make_geom(const ConvShape& s) {
  const Window3& w = s.win;
  Geom g{};
  g.N = s.batch, g.C = s.in_channels, g.M = s.out_channels, g.G = s.groups;
  g.Cg = g.C / g.G, g.Mg = g.M / g.G, g.K = w.k_size(), g.CgK = g.Cg * g.K;
  g.P = w.out_size(), g.NC = g.N * g.P, g.IN = w.in_size();
  g.in1 = w.in[1], g.in2 = w.in[2], g.out2 = w.out[2], g.s1 = w.s[1], g.s2 = w.s[2];
  g.pb1 = w.pb[1], g.pb2 = w.pb[2];
  g.Hp = w.pb[1] + w.in[1] + w.pe[1];
  g.Wp = w.pb[2] + w.in[2] + w.pe[2];
  g.plane = g.Hp * g.Wp, g.img = g.Cg * g.plane;
  g.L = 1;
  if (g.s2 == 1) {
    if (g.out2 % kPanelCols == 0)
      g.L = kPanelCols;
    else if (kPanelCols % g.out2 == 0)
      g.L = static_cast<int>(g.out2);
  }
  g.unit_panels = std::clamp<int64_t>(kUnitFloats / std::max<int64_t>(1, g.CgK * kPanelCols), 1, kMaxUnitPanels);
  const int64_t unit_images = g.unit_panels * kPanelCols / g.P + 2;
  g.win_images = std::min(g.N, std::max(unit_images, kWindowFloats / std::max<int64_t>(1, g.img)));
  g.tap_off.resize(static_cast<std::size_t>(g.K));
  for (int64_t ky = 0; ky < w.k[1]; ++ky)
    for (int64_t kx = 0; kx < w.k[2]; ++kx)
      g.tap_off[static_cast<std::size_t>(ky * w.k[2] + kx)] = ky * w.d[1] * g.Wp + kx * w.d[2];
  return g;
}

// The rows of images [n0, n1) of group grp into their padded planes (zeroed by the caller), rows of
// W floats (W = 0: g.in2 at run time). A fixed-size memcpy is one or two vector moves, where a
// loop of run-time length became a call to memcpy per row of 4-32 floats.
template <int W>
void copy_rows(const Geom& g, const float* x, int64_t grp, int64_t n0, int64_t n1, float* win) {
  const int64_t w = W ? W : g.in2;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < g.Cg; ++c) {
      const float* src = x + (n * g.C + grp * g.Cg + c) * g.IN;
      float* dst = win + (n - n0) * g.img + c * g.plane + g.pb1 * g.Wp + g.pb2;
      for (int64_t iy = 0; iy < g.in1; ++iy, src += w, dst += g.Wp) std::memcpy(dst, src, sizeof(float) * w);
    }
}

// Images [n0, n1) of group grp, zero-padded, into win ([image][channel][Hp][Wp]). One memset of
// the whole window and a copy per row: zeroing the borders row by row cost more than the copies
// (a seventh of a 32-channel layer on 4x4 maps went to the old per-row loops).
void pad_images(const Geom& g, const float* x, int64_t grp, int64_t n0, int64_t n1, float* win) {
  std::memset(win, 0, sizeof(float) * static_cast<std::size_t>((n1 - n0) * g.img));
  switch (g.in2) {
    case 4: copy_rows<4>(g, x, grp, n0, n1, win); break;
    case 8: copy_rows<8>(g, x, grp, n0, n1, win); break;
    case 16: copy_rows<16>(g, x, grp, n0, n1, win); break;
    case 32: copy_rows<32>(g, x, grp, n0, n1, win); break;
    default: copy_rows<0>(g, x, grp, n0, n1, win); break;
  }
}

// The zero-padded copies of the images a worker's columns read, made again when a unit of columns
// reaches past them.
struct PaddedWindow {
  const Geom& g;
  const float* x;
  float* buf;  // g.win_images * g.img floats
  int64_t grp = -1, n0 = 0, n1 = 0;
  int64_t last_image = 0;  // the last image the current group's part of the thread's range reaches

  void cover(int64_t group, int64_t j0, int64_t j1) {
    const int64_t lo = j0 / g.P, hi = std::min(g.N, (j1 - 1) / g.P + 1);
    if (group == grp && lo >= n0 && hi <= n1) return;
    // Only the images this thread's range reaches: past them the copy is another thread's work
    // (at batch 64 on 4x4 maps the first thread padded 56 images for its 32).
    grp = group, n0 = lo, n1 = std::min({g.N, lo + g.win_images, last_image + 1});
    pad_images(g, x, grp, n0, n1, buf);
  }
};

// Items [i0, i1) of the list of all groups' items (group-major; an item is `cols` columns, column
// j = image j / P, position j % P), in units of at most `step` items within one group: the window
// made to cover each unit's columns [j0, j1), then unit(grp, j0, j1).
template <class F>
void for_units(const Geom& g, PaddedWindow& win, int64_t i0, int64_t i1, int64_t cols, int64_t step, F unit) {
  const int64_t per_group = (g.NC + cols - 1) / cols;
  for (int64_t i = i0; i < i1;) {
    const int64_t grp = i / per_group, q = i % per_group;
    const int64_t e = std::min({i1, (grp + 1) * per_group, i + step});
    win.last_image = (std::min(g.NC, (std::min(i1, (grp + 1) * per_group) - grp * per_group) * cols) - 1) / g.P;
    const int64_t j0 = q * cols, j1 = std::min(g.NC, (e - grp * per_group) * cols);
    win.cover(grp, j0, j1);
    unit(grp, j0, j1);
    i = e;
  }
}

// One K x 16 panel of the column matrix: row c*K + t holds, for each run r of L columns, the L
// floats at base[r] + tap_off[t] of padded plane c. L is a compile-time constant so that each
// run is a fixed-size (vector) copy.
template <int L>
void build_panel(const Geom& g, const float* win, const int64_t* base, float* bq) {
  constexpr int R = kPanelCols / L;
  const int64_t* tap = g.tap_off.data();
  for (int64_t c = 0; c < g.Cg; ++c) {
    const float* xc = win + c * g.plane;
    for (int64_t t = 0; t < g.K; ++t, bq += kPanelCols) {
      const float* src = xc + tap[t];
      // A fixed-size memcpy is one or two vector moves; the equivalent loop stayed scalar (GCC
      // cannot rule out that bq and src overlap).
      for (int r = 0; r < R; ++r) std::memcpy(bq + r * L, src + base[r], sizeof(float) * L);
    }
  }
}

// Columns [j0, j1) of group grp (column j = image j / P, position j % P), j0 a multiple of 16:
// the padded window (reused while it covers the unit), the column panels, one panel product
// into tmp, then y = tmp + bias scattered back per image.
struct Worker {
  const Geom& g;
  const float* packed;
  const float* bias;
  float* y;
  float* bbuf;  // unit_panels * 16 * CgK
  float* tmp;   // Mg * unit_panels * 16
  PaddedWindow win;
  bool relu = false;  // max(y, 0) as y is written

  void unit(int64_t grp, int64_t j0, int64_t j1) {
    const int64_t panels = (j1 - j0 + kPanelCols - 1) / kPanelCols;
    for (int64_t q = 0; q < panels; ++q) {
      int64_t base[kPanelCols];
      const int64_t jq = j0 + q * kPanelCols;
      for (int r = 0; r < kPanelCols / g.L; ++r) {
        const int64_t j = jq + r * g.L;
        if (j >= g.NC) {
          base[r] = 0;  // past the last column: any readable float, the product's column is not stored
          continue;
        }
        const int64_t n = j / g.P, p = j % g.P, oy = p / g.out2, ox = p % g.out2;
        base[r] = (n - win.n0) * g.img + oy * g.s1 * g.Wp + ox * g.s2;
      }
      float* bq = bbuf + q * g.CgK * kPanelCols;
      switch (g.L) {
        case 16: build_panel<16>(g, win.buf, base, bq); break;
        case 8: build_panel<8>(g, win.buf, base, bq); break;
        case 4: build_panel<4>(g, win.buf, base, bq); break;
        case 2: build_panel<2>(g, win.buf, base, bq); break;
        default: build_panel<1>(g, win.buf, base, bq); break;
      }
    }
    const int64_t ldt = panels * kPanelCols;
    const float* a = packed + grp * panel_rows(g.Mg) * g.CgK;
    panel_gemm(g.Mg, j1 - j0, g.CgK, a, bbuf, tmp, ldt);
    for (int64_t j = j0; j < j1;) {
      const int64_t n = j / g.P, p0 = j % g.P, len = std::min(j1 - j, g.P - p0);
      for (int64_t m = 0; m < g.Mg; ++m) {
        const float b0 = bias ? bias[grp * g.Mg + m] : 0.f;
        const float* src = tmp + m * ldt + (j - j0);
        float* dst = y + (n * g.M + grp * g.Mg + m) * g.P + p0;
        if (relu)
          for (int64_t i = 0; i < len; ++i) {
            const float v = src[i] + b0;
            dst[i] = v < 0.f ? 0.f : v;  // Relu's: NaN and -0 kept
          }
        else
          for (int64_t i = 0; i < len; ++i) dst[i] = src[i] + b0;
      }
      j += len;
    }
  }

  // Panels [i0, i1) of the list of all groups' panels (group-major), in units.
  void range(int64_t i0, int64_t i1) {
    for_units(g, win, i0, i1, kPanelCols, g.unit_panels,
              [&](int64_t grp, int64_t j0, int64_t j1) { unit(grp, j0, j1); });
  }
};


// ---------------------------------------------------------------------------------------------
// The direct mode: output channels along the vector, output positions broadcast straight from the
// padded window (an implicit GEMM). Each step of the micro-kernel loads 16 packed weights of one
// (channel, tap) and broadcasts the input float at that tap for each of 6 output positions, whose
// addresses are independent, so any stride, map width and image boundary costs nothing extra.
// Through the panel mode a fifth to a third of these layers' time went to copying the column
// panels (perf, digits and cnn16 at batch 64), for products of depth 144-576.

// Output channels per block of the packed weight (two AVX2 registers), positions per tile.
constexpr int kDirectOc = 16, kDirectPos = 6;
// Tiles per chunk: the chunk's window addresses are computed once and every weight block runs over
// all its tiles while that block (K x 16 floats) stays in L1.
constexpr int64_t kDirectChunkTiles = 16;
// Depth (input channels x taps) from which the direct mode is faster: RGB and grey stems (depth 27
// and 9) spend more on the per-tile stores than the panel mode spends on building panels
// (3 -> 32 channels on 16x16 maps at batch 64: 613 us direct, 479 us panel, onnxruntime 511).
constexpr int64_t kDirectMinDepth = 64;
// Blocks of depth for deep layers: taps x channels of a block at most this (weight slice 64 KiB),
// and channels x padded plane at most kDirectBlockWindow floats (128 KiB).
constexpr int64_t kDirectBlockDepth = 1024, kDirectBlockWindow = int64_t{32} << 10;

bool direct_cpu() {
#ifdef ONNXPLAIN_DIRECT_AVX2
  static const bool ok = [] {
    const char* v = std::getenv("ONNXPLAIN_GENERIC_KERNELS");
    const std::string choice = v ? v : "";
    if (choice == "1") return false;
    if (const char* m = std::getenv("ONNXPLAIN_SMALL_CONV"); m && std::string(m) == "panel") return false;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    // On AVX-512 CPUs the panel mode's 512-bit kernel does twice the work per instruction; this
    // 256-bit kernel is measured only where it is the widest (ONNXPLAIN_GENERIC_KERNELS=avx2 or
    // ONNXPLAIN_SMALL_CONV=direct there).
    if (const char* m = std::getenv("ONNXPLAIN_SMALL_CONV"); m && std::string(m) == "direct") return true;
    return choice == "avx2" || !__builtin_cpu_supports("avx512f");
  }();
  return ok;
#else
  return false;
#endif
}

int64_t oc_blocks(int64_t Mg) { return (Mg + kDirectOc - 1) / kDirectOc; }

// Whether a layer this path takes runs in the direct mode: on CPUs it is built for, with a kernel
// larger than 1x1, deep enough, and where whole blocks of 16 output channels waste at most a
// quarter of the multiply-adds.
bool use_direct(const ConvShape& s) {
  const int64_t Mg = s.out_channels / s.groups, CgK = s.in_channels / s.groups * s.win.k_size();
  // Not 1x1 kernels (strided; plain ones are sgemm on the input): the padded copy would be the
  // whole input for a quarter of its positions (ResNet-50's 1x1/2 shortcuts: 1.1-1.4x slower).
  // The tap offsets are 32-bit (one padded image of a group below 2^31 floats).
  const Window3& w = s.win;
  const int64_t padded = s.in_channels / s.groups * (w.pb[1] + w.in[1] + w.pe[1]) * (w.pb[2] + w.in[2] + w.pe[2]);
  return direct_cpu() && w.k_size() > 1 && CgK >= kDirectMinDepth && padded < (int64_t{1} << 31) &&
         4 * (oc_blocks(Mg) * kDirectOc - Mg) <= Mg;
}

#ifdef ONNXPLAIN_DIRECT_AVX2
// out[6 x 16] = sum over k of base[i][koff[k]] * w[k][0..15]: twelve accumulators, two weight
// loads and six broadcasts per step (the register block of panel_gemm's AVX2 kernel, with the
// roles of the operands swapped).
__attribute__((target("avx2,fma"))) void micro_direct(int64_t K, const int32_t* koff, const float* w,
                                                      const float* const* base, float* out, bool accumulate) {
  const float *b0 = base[0], *b1 = base[1], *b2 = base[2], *b3 = base[3], *b4 = base[4], *b5 = base[5];
  const __m256 z = _mm256_setzero_ps();
  __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
  if (accumulate) {
    // Continuing the sums of the previous block of channels, in the same order: the result is
    // bit-identical to one pass over the whole depth.
    c00 = _mm256_loadu_ps(out), c01 = _mm256_loadu_ps(out + 8), c10 = _mm256_loadu_ps(out + 16);
    c11 = _mm256_loadu_ps(out + 24), c20 = _mm256_loadu_ps(out + 32), c21 = _mm256_loadu_ps(out + 40);
    c30 = _mm256_loadu_ps(out + 48), c31 = _mm256_loadu_ps(out + 56), c40 = _mm256_loadu_ps(out + 64);
    c41 = _mm256_loadu_ps(out + 72), c50 = _mm256_loadu_ps(out + 80), c51 = _mm256_loadu_ps(out + 88);
  }
  for (int64_t k = 0; k < K; ++k, w += kDirectOc) {
    const int64_t o = koff[k];
    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
    __m256 v = _mm256_broadcast_ss(b0 + o);
    c00 = _mm256_fmadd_ps(v, w0, c00), c01 = _mm256_fmadd_ps(v, w1, c01);
    v = _mm256_broadcast_ss(b1 + o);
    c10 = _mm256_fmadd_ps(v, w0, c10), c11 = _mm256_fmadd_ps(v, w1, c11);
    v = _mm256_broadcast_ss(b2 + o);
    c20 = _mm256_fmadd_ps(v, w0, c20), c21 = _mm256_fmadd_ps(v, w1, c21);
    v = _mm256_broadcast_ss(b3 + o);
    c30 = _mm256_fmadd_ps(v, w0, c30), c31 = _mm256_fmadd_ps(v, w1, c31);
    v = _mm256_broadcast_ss(b4 + o);
    c40 = _mm256_fmadd_ps(v, w0, c40), c41 = _mm256_fmadd_ps(v, w1, c41);
    v = _mm256_broadcast_ss(b5 + o);
    c50 = _mm256_fmadd_ps(v, w0, c50), c51 = _mm256_fmadd_ps(v, w1, c51);
  }
  _mm256_storeu_ps(out, c00), _mm256_storeu_ps(out + 8, c01);
  _mm256_storeu_ps(out + 16, c10), _mm256_storeu_ps(out + 24, c11);
  _mm256_storeu_ps(out + 32, c20), _mm256_storeu_ps(out + 40, c21);
  _mm256_storeu_ps(out + 48, c30), _mm256_storeu_ps(out + 56, c31);
  _mm256_storeu_ps(out + 64, c40), _mm256_storeu_ps(out + 72, c41);
  _mm256_storeu_ps(out + 80, c50), _mm256_storeu_ps(out + 88, c51);
}
#else
void micro_direct(int64_t, const int32_t*, const float*, const float* const*, float*, bool) {}
#endif

// d[l * ld + i] = src[i * 16 + l] + bias[l] (rectified with Relu) for i < len, l < mc: eight columns at a time as 8 x 8
// transposes in registers (the scalar scatter was a tenth of a depth-144 layer).
#ifdef ONNXPLAIN_DIRECT_AVX2
template <bool Relu>
__attribute__((target("avx2,fma"))) void store_transposed_as(const float* src, int64_t len, int64_t mc,
                                                             const float* bias, float* d, int64_t ld) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= len; i += 8)
    for (int64_t h = 0; h < mc; h += 8) {
      const float* s = src + i * kDirectOc + h;
      const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + 16), r2 = _mm256_loadu_ps(s + 32),
                   r3 = _mm256_loadu_ps(s + 48), r4 = _mm256_loadu_ps(s + 64), r5 = _mm256_loadu_ps(s + 80),
                   r6 = _mm256_loadu_ps(s + 96), r7 = _mm256_loadu_ps(s + 112);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      const __m256 c[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                           _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                           _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                           _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
      const int64_t n = std::min<int64_t>(8, mc - h);
      for (int64_t l = 0; l < n; ++l) {
        __m256 v = _mm256_add_ps(c[l], _mm256_set1_ps(bias[h + l]));
        // Relu's `v < 0 ? 0 : v`: NaN and -0 are kept (max would not keep them).
        if constexpr (Relu) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        _mm256_storeu_ps(d + (h + l) * ld + i, v);
      }
    }
  for (; i < len; ++i)
    for (int64_t l = 0; l < mc; ++l) {
      const float v = src[i * kDirectOc + l] + bias[l];
      d[l * ld + i] = Relu && v < 0.f ? 0.f : v;
    }
}

// A compile-time choice: with a run-time test inside the store loop GCC kept the transposed rows
// on the stack, and the layer ran 20% slower even without the rectifier.
void store_transposed(const float* src, int64_t len, int64_t mc, const float* bias, float* d, int64_t ld,
                      bool relu) {
  if (relu)
    store_transposed_as<true>(src, len, mc, bias, d, ld);
  else
    store_transposed_as<false>(src, len, mc, bias, d, ld);
}
#else
void store_transposed(const float*, int64_t, int64_t, const float*, float*, int64_t, bool) {}
#endif

// Tiles [i0, i1) of the list of all groups' tiles (group-major, ceil(NC / 6) per group).
struct DirectWorker {
  const Geom& g;
  const float* packed;
  const float* bias;
  float* y;
  const int32_t* koff;
  PaddedWindow win;
  int64_t ob_lo = 0, ob_hi = -1;  // the blocks of output channels this thread computes (-1: all)
  int64_t kc = 0;                 // input channels per block of depth (all of them: one block)
  bool relu = false;              // max(y, 0) as y is written
  float* acc = nullptr;           // with several blocks of depth: [block of channels][column][16]

  void chunk(int64_t grp, int64_t j0, int64_t j1) {
    constexpr int64_t kCols = kDirectChunkTiles * kDirectPos;
    const float* base[kCols];
    const int64_t cols = j1 - j0;
    {
      // Walked position by position: four 64-bit divisions per column cost a sixth of a depth-144
      // layer on 8x8 maps.
      int64_t n = j0 / g.P, p = j0 % g.P, oy = p / g.out2, ox = p % g.out2;
      for (int64_t i = 0; i < cols; ++i) {
        base[i] = win.buf + (n - win.n0) * g.img + oy * g.s1 * g.Wp + ox * g.s2;
        if (++ox == g.out2) {
          ox = 0;
          if (++oy * g.out2 == g.P) oy = 0, ++n;
        }
      }
      for (int64_t i = cols; i < kCols; ++i) base[i] = base[0];  // past the end: read, not stored
    }
    const int64_t blocks = oc_blocks(g.Mg), ob_end = ob_hi < 0 ? blocks : ob_hi;
    alignas(32) float out_one[kCols * kDirectOc];  // [column][16 channels]
    if (kc < g.Cg) {
      // Deep layers in blocks of input channels, every block of output channels over the chunk's
      // tiles per block of depth: the padded input's slice and the weight's slice stay cached
      // (through the whole depth at once, 512-channel layers streamed both from L3 per tile).
      for (int64_t c0 = 0; c0 < g.Cg; c0 += kc) {
        const int64_t k0 = c0 * g.K, kn = (std::min(g.Cg, c0 + kc) - c0) * g.K;
        for (int64_t ob = ob_lo; ob < ob_end; ++ob) {
          const float* wb = packed + ((grp * blocks + ob) * g.CgK + k0) * kDirectOc;
          float* o = acc + (ob - ob_lo) * kCols * kDirectOc;
          for (int64_t t = 0; t < cols; t += kDirectPos)
            micro_direct(kn, koff + k0, wb, base + t, o + t * kDirectOc, c0 > 0);
        }
      }
    }
    for (int64_t ob = ob_lo; ob < ob_end; ++ob) {
      const float* wb = packed + (grp * blocks + ob) * g.CgK * kDirectOc;
      const int64_t m0 = ob * kDirectOc, mc = std::min<int64_t>(kDirectOc, g.Mg - m0);
      float bv[kDirectOc] = {};
      if (bias)
        for (int64_t l = 0; l < mc; ++l) bv[l] = bias[grp * g.Mg + m0 + l];
      float* out = out_one;
      if (kc < g.Cg)
        out = acc + (ob - ob_lo) * kCols * kDirectOc;
      else
        for (int64_t t = 0; t < cols; t += kDirectPos)
          micro_direct(g.CgK, koff, wb, base + t, out + t * kDirectOc, false);
      // Back to [channel][position] per run of columns within one image.
      for (int64_t i = 0; i < cols;) {
        const int64_t j = j0 + i, n = j / g.P, p = j % g.P, len = std::min(cols - i, g.P - p);
        float* d = y + (n * g.M + grp * g.Mg + m0) * g.P + p;
        store_transposed(out + i * kDirectOc, len, mc, bv, d, g.P, relu);
        i += len;
      }
    }
  }

  void range(int64_t i0, int64_t i1) {
    for_units(g, win, i0, i1, kDirectPos, kDirectChunkTiles,
              [&](int64_t grp, int64_t j0, int64_t j1) { chunk(grp, j0, j1); });
  }
};

void direct_forward(const ConvShape& s, const float* x, const float* packed, const float* bias, float* y,
                    int threads, bool relu) {
  Geom g = make_geom(s);
  // The window holds every image a chunk's columns touch.
  g.win_images = std::min(g.N, std::max(kDirectChunkTiles * kDirectPos / g.P + 2, g.win_images));
  std::vector<int32_t> koff(static_cast<std::size_t>(g.CgK));
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t t = 0; t < g.K; ++t)
      koff[static_cast<std::size_t>(c * g.K + t)] =
          static_cast<int32_t>(c * g.plane + g.tap_off[static_cast<std::size_t>(t)]);
  const int64_t items = g.G * ((g.NC + kDirectPos - 1) / kDirectPos);
  const int64_t blocks = oc_blocks(g.Mg);
  // Input channels per block of depth: the weight's slice (depth x 16 floats) within 64 KiB and
  // the padded input's slice within 128 KiB.
  const int64_t kc_max = std::max<int64_t>(1, std::min(kDirectBlockDepth / g.K, kDirectBlockWindow / g.plane));
  const int64_t nkb = (g.Cg + kc_max - 1) / kc_max, kc = (g.Cg + nkb - 1) / nkb;
  const int64_t acc_floats = nkb > 1 ? blocks * kDirectChunkTiles * kDirectPos * kDirectOc : 0;
  const auto scratch = static_cast<std::size_t>(g.win_images * g.img + 16 + acc_floats);
  const int64_t macs = g.NC * g.M * g.CgK;
  const int T = static_cast<int>(
      std::min<int64_t>({threads, std::max(items, blocks), std::max<int64_t>(1, macs / kParallelMacs)}));
  // Few positions and a large weight (ResNet's 512-channel layers on 7x7 maps at batch 1: 9 tiles,
  // 9 MB of weight): split the output channels instead, so that each thread streams only its part
  // of the weight rather than all of it.
  const bool by_channels = g.G == 1 && T > 1 && blocks >= 4 * T && items < 8 * kDirectChunkTiles * T;
  auto run = [&](int64_t i0, int64_t i1, int64_t b0, int64_t b1) {
    float* buf = thread_scratch(scratch, ScratchSlot::ConvWorker);
    DirectWorker wk{g, packed, bias, y, koff.data(), PaddedWindow{g, x, buf}};
    wk.ob_lo = b0, wk.ob_hi = b1, wk.kc = kc, wk.relu = relu;
    if (acc_floats) wk.acc = buf + g.win_images * g.img + 16;
    wk.range(i0, i1);
  };
  if (T <= 1) {
    run(0, items, 0, -1);
    return;
  }
  if (by_channels) {
#pragma omp parallel for num_threads(T) schedule(static)
    for (int t = 0; t < T; ++t) run(0, items, blocks * t / T, blocks * (t + 1) / T);
    return;
  }
#pragma omp parallel for num_threads(T) schedule(static)
  for (int t = 0; t < T; ++t) run(items * t / T, items * (t + 1) / T, 0, -1);
}

}  // namespace

bool small_conv_applies(const ConvShape& s) {
  const Window3& w = s.win;
  if (s.groups > 1 && s.groups == s.in_channels) return false;  // depthwise
  if (w.in[0] != 1 || w.out[0] != 1 || w.k[0] != 1) return false;
  bool pointwise = true;
  for (int i = 0; i < 3; ++i) {
    if (w.pb[i] < 0 || w.pe[i] < 0 || w.s[i] < 1 || w.d[i] < 1) return false;
    pointwise = pointwise && w.k[i] == 1 && w.s[i] == 1 && w.pb[i] == 0 && w.pe[i] == 0;
  }
  // A 1x1 convolution's column matrix is its input: sgemm reads it in place.
  if (pointwise) return false;
  const int64_t P = w.out_size();
  // In the panel mode a weight beyond L2 is streamed from memory once per unit of columns (units sized for
  // the column matrix): ResNet-50's 512 -> 512 layers on 7x7 maps ran at 112 GF/s this way,
  // 1.7x onnxruntime, where sgemm's own blocking over K keeps pieces of the weight in cache.
  const int64_t weight_floats = s.out_channels / s.groups * (s.in_channels / s.groups) * w.k_size();
  // The direct mode streams its weight in blocks of depth, so any weight size suits it: ResNet-50's
  // 512 -> 512 layers on 7x7 maps at batch 1 went 1.71 -> 1.31 ms (onnxruntime 1.17), its
  // stride-2 3x3 layers 1.15-1.27x -> 1.01-1.08x onnxruntime, against im2col + sgemm.
  if (weight_floats > kMaxWeightFloats && !use_direct(s)) return false;
  // Stems reading up to 4 channels with kernels of depth >= 64 (ResNet's 7x7/2 on RGB) take the
  // direct mode at any map size: it reads the padded image where im2col + sgemm first wrote a
  // column matrix 49x the image (224x224 at batch 1: 1.95 -> 1.31 ms, onnxruntime 1.42).
  const bool stem = s.in_channels / s.groups <= 4 && use_direct(s);
  return s.batch > 0 && P > 0 && (P <= kSmallConvMaxPositions || stem) && s.out_channels > 0 && s.in_channels > 0;
}

bool small_conv_beats_winograd(const ConvShape& s) {
  if (!small_conv_applies(s)) return false;
  const Window3& w = s.win;
  const int64_t tiles = ((w.out[1] + 3) / 4) * ((w.out[2] + 3) / 4);
  return 2 * w.out_size() < tiles * 16;
}

int64_t small_conv_weight_floats(const ConvShape& s) {
  const int64_t Mg = s.out_channels / s.groups, CgK = s.in_channels / s.groups * s.win.k_size();
  if (use_direct(s)) return s.groups * oc_blocks(Mg) * kDirectOc * CgK;
  return s.groups * panel_rows(Mg) * CgK;
}

void small_conv_pack_weight(const ConvShape& s, const float* w, float* packed) {
  const int64_t G = s.groups, Mg = s.out_channels / G, CgK = s.in_channels / G * s.win.k_size();
  if (use_direct(s)) {
    // [group][block of 16 output channels][C/groups * taps][16], zero past the last channel.
    const int64_t blocks = oc_blocks(Mg);
    for (int64_t grp = 0; grp < G; ++grp)
      for (int64_t ob = 0; ob < blocks; ++ob) {
        float* a = packed + (grp * blocks + ob) * CgK * kDirectOc;
        for (int64_t k = 0; k < CgK; ++k)
          for (int64_t l = 0; l < kDirectOc; ++l) {
            const int64_t m = ob * kDirectOc + l;
            a[k * kDirectOc + l] = m < Mg ? w[(grp * Mg + m) * CgK + k] : 0.f;
          }
      }
    return;
  }
  const int64_t rows = panel_rows(Mg);
  for (int64_t grp = 0; grp < G; ++grp) {
    float* a = packed + grp * rows * CgK;
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t k = 0; k < CgK; ++k)
        a[panel_a_index(m, k, CgK)] = m < Mg ? w[(grp * Mg + m) * CgK + k] : 0.f;
  }
}

void small_conv_forward(const ConvShape& s, const float* x, const float* packed, const float* bias, float* y,
                        int threads, bool relu) {
  if (use_direct(s)) {
    direct_forward(s, x, packed, bias, y, threads, relu);
    return;
  }
  const Geom g = make_geom(s);
  const int64_t items = g.G * ((g.NC + kPanelCols - 1) / kPanelCols);
  const int64_t unit_cols = g.unit_panels * kPanelCols;
  const auto scratch = static_cast<std::size_t>(unit_cols * g.CgK + g.win_images * g.img + g.Mg * unit_cols);
  auto run = [&](int64_t i0, int64_t i1) {
    float* buf = thread_scratch(scratch, ScratchSlot::ConvWorker);
    Worker wk{g, packed, bias, y, buf, buf + unit_cols * g.CgK + g.win_images * g.img,
              PaddedWindow{g, x, buf + unit_cols * g.CgK}, relu};
    wk.range(i0, i1);
  };
  const int64_t macs = g.NC * g.M * g.CgK;
  const int T = static_cast<int>(std::min<int64_t>({threads, items, std::max<int64_t>(1, macs / kParallelMacs)}));
  if (T <= 1) {
    run(0, items);
    return;
  }
  // One region per layer, each thread a contiguous run of panels (its images' padded copies are
  // made once and reused across its units).
#pragma omp parallel for num_threads(T) schedule(static)
  for (int t = 0; t < T; ++t) run(items * t / T, items * (t + 1) / T);
}

}  // namespace onnxplain::kernels
