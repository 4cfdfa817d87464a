#include "kernels/panel_gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ONNXPLAIN_PANEL_AVX2 1
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
#endif

Micro pick() {
  // ONNXPLAIN_GENERIC_KERNELS=1 takes the portable loop on any CPU (how the tests reach it).
  if (const char* v = std::getenv("ONNXPLAIN_GENERIC_KERNELS"); v && std::string(v) == "1") return micro_generic;
#ifdef ONNXPLAIN_PANEL_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_avx2;
#endif
  return micro_generic;
}

}  // namespace

void panel_gemm(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c, int64_t ldc) {
  static const Micro micro = pick();
  if (M <= 0 || N <= 0) return;
  const int64_t Np = panel_cols(N);
  if (K <= 0) {
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + Np, 0.f);
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    const int64_t kc = std::min(kDepth, K - k0);
    for (int64_t m0 = 0; m0 < M; m0 += MR) {
      const float* ap = a + m0 * K + k0 * MR;
      const int rows = static_cast<int>(std::min<int64_t>(MR, M - m0));
      for (int64_t n0 = 0; n0 < Np; n0 += NR)
        micro(kc, ap, b + n0 * K + k0 * NR, c + m0 * ldc + n0, ldc, rows, k0 > 0);
    }
  }
}

}  // namespace onnxplain::kernels
