// GEMM through OpenBLAS (scipy-openblas32). The only place that calls BLAS, so a CUDA or oneDNN
// backend replaces one file.
#pragma once

#include <cstdint>

namespace onnxplain::kernels {

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, with leading dimensions.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

/// The pair of modified weights of the sign-split kernels: LRP-αβ's B+ = max(B, 0) and
/// B- = min(B, 0), or with `gamma` LRP-γ's B + g B+ and B + g B- (each weight as Zennit's Gamma).
struct SignSplitMod {
  bool gamma = false;
  float g = 0.f;
};

/// One row against the two modified weights of B, in one pass over B (a dense layer at batch 1
/// is bound by reading its weight, and two products read it twice): with op(B) K x N,
/// pos[n] = sum_k a[k] f1(op(B)[k, n]) and neg[n] the same with f2, (f1, f2) as `mod` says.
/// Zero a[k] are skipped.
void gemv_sign_split(bool trans_b, int64_t N, int64_t K, const float* a, const float* B, int64_t ldb, float* pos,
                     float* neg, const SignSplitMod& mod = {});

/// The VJP of both products of gemv_sign_split in one pass over B (g1 through f1(B), g2 through
/// f2(B)): out[k] = sum_n f1(op(B)[k, n]) g1[n] + f2(op(B)[k, n]) g2[n] (for αβ, op(B)[k, n]
/// times g1[n] or g2[n] by its sign). Columns n with g1[n] = g2[n] = 0 are skipped where B is
/// read row by row.
void gemv_sign_split_vjp(bool trans_b, int64_t N, int64_t K, const float* g1, const float* g2, const float* B,
                         int64_t ldb, float* out, const SignSplitMod& mod = {});

/// Threads sgemm may use for the next calls made from this thread (split over OpenMP; OpenBLAS
/// itself stays single-threaded). Never call sgemm from inside a parallel region with n > 1.
void set_blas_threads(int n);
int blas_threads();

}  // namespace onnxplain::kernels
