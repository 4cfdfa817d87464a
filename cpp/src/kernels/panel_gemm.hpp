// A GEMM on operands already laid out in register-blocked panels (the BLIS/GotoBLAS layout), for
// products whose left operand is a constant (Winograd's transformed weights) and whose right
// operand is written by our own code (Winograd's input transform): neither is ever copied into
// panels per call. BLAS packs both operands on every call; with a chunk of a few dozen tiles per
// product that repacking of the weight was a third of the multiply time (perf, VGG-16 LRP).
#pragma once

#include <cstdint>

namespace onnxplain::kernels {

/// Rows of one panel of the left operand, columns of one panel of the right operand (one AVX-512
/// register, two AVX2 ones; the 512-bit kernel takes up to four panels per step).
constexpr int kPanelRows = 6;
constexpr int kPanelCols = 16;

/// Rows of the left operand rounded up to whole panels.
inline int64_t panel_rows(int64_t m) { return (m + kPanelRows - 1) / kPanelRows * kPanelRows; }
/// Columns of the right operand rounded up to whole panels.
inline int64_t panel_cols(int64_t n) { return (n + kPanelCols - 1) / kPanelCols * kPanelCols; }

/// Index of A[m, k] (A is M x K) in its panel layout: panel m / 6 holds K columns of 6 rows;
/// the rows past M up to panel_rows(M) are zero.
inline int64_t panel_a_index(int64_t m, int64_t k, int64_t K) {
  return (m / kPanelRows) * K * kPanelRows + k * kPanelRows + m % kPanelRows;
}
/// Index of B[k, n] (B is K x N) in its panel layout: panel n / 16 holds K rows of 16 columns.
inline int64_t panel_b_index(int64_t k, int64_t n, int64_t K) {
  return (n / kPanelCols) * K * kPanelCols + k * kPanelCols + n % kPanelCols;
}

/// C[M x N] (row stride ldc) = A B, A in panel layout (panel_rows(M) x K floats), B in panel
/// layout (K x panel_cols(N) floats; columns past N may hold anything: they only reach columns of
/// the product that are not written). Single-threaded. Columns N..panel_cols(N) of C must exist
/// (ldc >= panel_cols(N)): whole panels are stored.
void panel_gemm(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c, int64_t ldc);

}  // namespace onnxplain::kernels
