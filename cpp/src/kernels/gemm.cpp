#include "kernels/gemm.hpp"

#include <cblas.h>

#include <limits>

#include "onnxplain/errors.hpp"

extern "C" {
void scipy_openblas_set_num_threads(int);
int scipy_openblas_get_num_threads(void);
}

namespace onnxplain::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  constexpr int64_t lim = std::numeric_limits<int>::max();
  if (M > lim || N > lim || K > lim || lda > lim || ldb > lim || ldc > lim)
    throw InvalidArgument("matrix too large for 32-bit BLAS");
  if (K == 0) {
    // BLAS leaves C untouched for K == 0 only when beta == 1; be explicit.
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

void set_blas_threads(int n) {
  if (n < 1) n = 1;
  if (scipy_openblas_get_num_threads() != n) scipy_openblas_set_num_threads(n);
}

int blas_threads() { return scipy_openblas_get_num_threads(); }

}  // namespace onnxplain::kernels
