#include "kernels/panel_gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ONNXPLAIN_PANEL_AVX2 1
#define ONNXPLAIN_PANEL_AVX512 1
#endif

namespace onnxplain::kernels {
namespace {

constexpr int MR = kPanelRows, NR = kPanelCols;

// Depth of one pass: a 6 x 256 slice of A (6 KB) stays in L1 while the 256 x N block of B
// streams from L2.
constexpr int64_t kDepth = 256;

// c[rows x 16] (=, or += with accumulate) a[kc x 6 panel] b[kc x 16 panel].
using Micro = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int rows, bool accumulate);

void micro_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int rows, bool accumulate) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] += a[r] * b[j];
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < NR; ++j) c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

#ifdef ONNXPLAIN_PANEL_AVX2
// Twelve 8-float accumulators (6 rows x 2 halves), two loads of B and six broadcasts of A per
// step: the register block that keeps both FMA ports busy on AVX2 (as BLIS's Haswell kernel).
__attribute__((target("avx2,fma"))) void micro_avx2(int64_t kc, const float* a, const float* b, float* c,
                                                    int64_t ldc, int rows, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    __m256 lo = acc[r][0], hi = acc[r][1];
    if (accumulate) lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)), hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
    _mm256_storeu_ps(cr, lo);
    _mm256_storeu_ps(cr + 8, hi);
  }
}

// The last one or two rows of A (M = 32: five full panels and two rows) against up to three B
// panels at once: 4 np accumulators. Through micro_avx2 those rows cost as much as six, an
// eighth of the multiply-adds of a 32-channel layer spent on the zero rows of the last panel.
template <int NP>
__attribute__((target("avx2,fma"))) void micro_avx2_thin(int64_t kc, const float* a, const float* b,
                                                         int64_t bstride, float* c, int64_t ldc, int rows,
                                                         bool accumulate) {
  // Named accumulators: GCC kept an array of them in registers but also stored it to the stack
  // on every step (12 stores per step, the loop ran no faster than the 6-row kernel).
  const __m256 z = _mm256_setzero_ps();
  __m256 p0 = z, p1 = z, p2 = z, p3 = z, q0 = z, q1 = z, q2 = z, q3 = z, r0 = z, r1 = z, r2 = z, r3 = z;
  const float* b1 = b + bstride;
  const float* b2 = b + 2 * bstride;
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR, b1 += NR, b2 += NR) {
    const __m256 a0 = _mm256_broadcast_ss(a), a1 = _mm256_broadcast_ss(a + 1);
    __m256 lo = _mm256_loadu_ps(b), hi = _mm256_loadu_ps(b + 8);
    p0 = _mm256_fmadd_ps(a0, lo, p0), p1 = _mm256_fmadd_ps(a0, hi, p1);
    p2 = _mm256_fmadd_ps(a1, lo, p2), p3 = _mm256_fmadd_ps(a1, hi, p3);
    if constexpr (NP > 1) {
      lo = _mm256_loadu_ps(b1), hi = _mm256_loadu_ps(b1 + 8);
      q0 = _mm256_fmadd_ps(a0, lo, q0), q1 = _mm256_fmadd_ps(a0, hi, q1);
      q2 = _mm256_fmadd_ps(a1, lo, q2), q3 = _mm256_fmadd_ps(a1, hi, q3);
    }
    if constexpr (NP > 2) {
      lo = _mm256_loadu_ps(b2), hi = _mm256_loadu_ps(b2 + 8);
      r0 = _mm256_fmadd_ps(a0, lo, r0), r1 = _mm256_fmadd_ps(a0, hi, r1);
      r2 = _mm256_fmadd_ps(a1, lo, r2), r3 = _mm256_fmadd_ps(a1, hi, r3);
    }
  }
  const __m256 acc[3][4] = {{p0, p1, p2, p3}, {q0, q1, q2, q3}, {r0, r1, r2, r3}};
  for (int r = 0; r < rows; ++r)
    for (int q = 0; q < NP; ++q) {
      float* cr = c + r * ldc + q * NR;
      __m256 lo = acc[q][2 * r], hi = acc[q][2 * r + 1];
      if (accumulate) lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)), hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
      _mm256_storeu_ps(cr, lo);
      _mm256_storeu_ps(cr + 8, hi);
    }
}

void block_avx2(int64_t kc, const float* ap, const float* b, int64_t K, int64_t k0, int64_t Np, float* c,
                int64_t ldc, int rows, bool accumulate) {
  const int64_t stride = K * NR;
  const float* bp = b + k0 * NR;
  for (int r0 = 0; r0 < rows; r0 += MR, ap += MR * K, c += MR * ldc) {
    const int rr = std::min(MR, rows - r0);
    if (rr > 2) {
      for (int64_t n0 = 0; n0 < Np; n0 += NR) micro_avx2(kc, ap, bp + n0 * K, c + n0, ldc, rr, accumulate);
      continue;
    }
    int64_t n0 = 0;
    for (; n0 + 3 * NR <= Np; n0 += 3 * NR) micro_avx2_thin<3>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
    if (Np - n0 == 2 * NR) micro_avx2_thin<2>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
    if (Np - n0 == NR) micro_avx2_thin<1>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
  }
}
#endif

#ifdef ONNXPLAIN_PANEL_AVX512
// np right-operand panels side by side (np x 16 columns, one 16-float register each) against
// one 6-row panel of A: 6 np accumulators, np loads of B and six broadcasts of A per step. With
// np = 4 that is 24 of the 32 registers, enough independent FMAs to keep two 512-bit FMA pipes
// busy (Zen 4/5, Skylake-SP); the AVX2 kernel's 6 x 16 block would leave half of each register
// unused on these CPUs.
template <int NP>
__attribute__((target("avx512f"))) void micro_avx512(int64_t kc, const float* a, const float* b, int64_t bstride,
                                                     float* c, int64_t ldc, int rows, bool accumulate) {
  __m512 acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < NP; ++q) acc[r][q] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    __m512 bv[NP];
    for (int q = 0; q < NP; ++q) bv[q] = _mm512_loadu_ps(b + q * bstride);
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      for (int q = 0; q < NP; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    for (int q = 0; q < NP; ++q) {
      __m512 v = acc[r][q];
      if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(cr + q * NR));
      _mm512_storeu_ps(cr + q * NR, v);
    }
  }
}

// One B panel against two A panels (12 rows x 16 columns): 12 accumulators. A product with a
// single panel of columns (16 Winograd tiles: a 14x14 map at batch 1) has only 6 independent
// sums in the 6 x 16 block, fewer than the two FMA pipes' latency needs (perf, VGG-16 LRP at
// batch 1: that kernel was 16% of the time for 12% of the multiply-adds).
__attribute__((target("avx512f"))) void micro_avx512_tall(int64_t kc, const float* a0, const float* a1,
                                                          const float* b, float* c, int64_t ldc, int rows,
                                                          bool accumulate) {
  __m512 acc[2 * MR];
  for (int r = 0; r < 2 * MR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a0 += MR, a1 += MR, b += NR) {
    const __m512 bv = _mm512_loadu_ps(b);
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a0[r]), bv, acc[r]);
    for (int r = 0; r < MR; ++r) acc[MR + r] = _mm512_fmadd_ps(_mm512_set1_ps(a1[r]), bv, acc[MR + r]);
  }
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    __m512 v = acc[r];
    if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(cr));
    _mm512_storeu_ps(cr, v);
  }
}

// Whole B panels in fours, then twos, then one, all with the 512-bit kernel, for each of the
// (one or two) A panels; a single B panel takes both A panels at once.
void block_avx512(int64_t kc, const float* ap, const float* b, int64_t K, int64_t k0, int64_t Np, float* c,
                  int64_t ldc, int rows, bool accumulate) {
  const int64_t stride = K * NR;
  const float* bp = b + k0 * NR;
  if (Np == NR && rows > MR) {
    micro_avx512_tall(kc, ap, ap + MR * K, bp, c, ldc, rows, accumulate);
    return;
  }
  for (int r0 = 0; r0 < rows; r0 += MR, ap += MR * K, c += MR * ldc) {
    const int rr = std::min(MR, rows - r0);
    int64_t n0 = 0;
    for (; n0 + 4 * NR <= Np; n0 += 4 * NR) micro_avx512<4>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
    for (; n0 + 2 * NR <= Np; n0 += 2 * NR) micro_avx512<2>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
    for (; n0 < Np; n0 += NR) micro_avx512<1>(kc, ap, bp + n0 * K, stride, c + n0, ldc, rr, accumulate);
  }
}
#endif

// c[rows x Np] (=, or += with accumulate) = one or two 6-row panels of A (rows <= 12; depth kc
// from k0; the second panel follows the first, K * 6 floats on) times every B panel.
using Block = void (*)(int64_t kc, const float* ap, const float* b, int64_t K, int64_t k0, int64_t Np, float* c,
                       int64_t ldc, int rows, bool accumulate);

template <Micro micro>
void block_of(int64_t kc, const float* ap, const float* b, int64_t K, int64_t k0, int64_t Np, float* c, int64_t ldc,
              int rows, bool accumulate) {
  for (int r0 = 0; r0 < rows; r0 += MR, ap += MR * K, c += MR * ldc)
    for (int64_t n0 = 0; n0 < Np; n0 += NR)
      micro(kc, ap, b + n0 * K + k0 * NR, c + n0, ldc, std::min(MR, rows - r0), accumulate);
}

Block pick() {
  // ONNXPLAIN_GENERIC_KERNELS=1 takes the portable loop on any CPU (how the tests reach it);
  // ONNXPLAIN_GENERIC_KERNELS=avx2 the 256-bit kernel on a CPU that also has AVX-512.
  const char* v = std::getenv("ONNXPLAIN_GENERIC_KERNELS");
  const std::string choice = v ? v : "";
  if (choice == "1") return block_of<micro_generic>;
#ifdef ONNXPLAIN_PANEL_AVX2
  __builtin_cpu_init();
#ifdef ONNXPLAIN_PANEL_AVX512
  if (choice != "avx2" && __builtin_cpu_supports("avx512f")) return block_avx512;
#endif
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return block_avx2;
#endif
  return block_of<micro_generic>;
}

}  // namespace

void panel_gemm(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c, int64_t ldc) {
  static const Block block = pick();
  if (M <= 0 || N <= 0) return;
  const int64_t Np = panel_cols(N);
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + Np, 0.f);
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t kc = std::min(kDepth, K - k0);
    for (int64_t m0 = 0; m0 < M; m0 += 2 * MR) {
      const int rows = static_cast<int>(std::min<int64_t>(2 * MR, M - m0));
      block(kc, a + m0 * K + k0 * MR, b, K, k0, Np, c + m0 * ldc, ldc, rows, k0 > 0);
    }
  }
}

}  // namespace onnxplain::kernels
