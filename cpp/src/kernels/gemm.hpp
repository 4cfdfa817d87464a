// GEMM through OpenBLAS (scipy-openblas32). The only place that calls BLAS, so a CUDA or oneDNN
// backend replaces one file.
#pragma once

#include <cstdint>

namespace onnxplain::kernels {

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, with leading dimensions.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

/// One row against B split by sign, in one pass over B (a dense layer at batch 1 is bound by
/// reading its weight, and B+ and B- as two products read it twice): with op(B) K x N,
/// pos[n] = sum_k a[k] max(op(B)[k, n], 0) and neg[n] the same with min. Zero a[k] are skipped.
void gemv_sign_split(bool trans_b, int64_t N, int64_t K, const float* a, const float* B, int64_t ldb, float* pos,
                     float* neg);

/// The VJP of both products of gemv_sign_split in one pass over B (g1 through B+, g2 through
/// B-): out[k] = sum_n op(B)[k, n] * (op(B)[k, n] > 0 ? g1[n] : g2[n]). Columns n with
/// g1[n] = g2[n] = 0 are skipped where B is read row by row.
void gemv_sign_split_vjp(bool trans_b, int64_t N, int64_t K, const float* g1, const float* g2, const float* B,
                         int64_t ldb, float* out);

/// Threads sgemm may use for the next calls made from this thread (split over OpenMP; OpenBLAS
/// itself stays single-threaded). Never call sgemm from inside a parallel region with n > 1.
void set_blas_threads(int n);
int blas_threads();

}  // namespace onnxplain::kernels
