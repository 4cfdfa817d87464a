// GEMM through OpenBLAS (scipy-openblas32). The only place that calls BLAS, so a CUDA or oneDNN
// backend replaces one file.
#pragma once

#include <cstdint>

namespace onnxplain::kernels {

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, with leading dimensions.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

/// Threads sgemm may use for the next calls made from this thread (split over OpenMP; OpenBLAS
/// itself stays single-threaded). Never call sgemm from inside a parallel region with n > 1.
void set_blas_threads(int n);
int blas_threads();

}  // namespace onnxplain::kernels
