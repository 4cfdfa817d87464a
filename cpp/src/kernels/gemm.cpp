#include "kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "onnxplain/errors.hpp"

extern "C" {
void scipy_openblas_set_num_threads(int);
int scipy_openblas_get_num_threads(void);
}

namespace onnxplain::kernels {
namespace {

// Threads for GEMM on this thread. OpenBLAS itself always runs single-threaded: its own pthread
// pool and our OpenMP pool would otherwise both spin-wait for each other on every layer (on a
// loaded 2-core machine that made a forward pass 30x slower); we split the product over OpenMP
// threads instead, so one pool does all the work.
thread_local int t_threads = 1;

void blas_once() {
  static const bool done = [] {
    scipy_openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

void sgemm_1(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                    static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
                    static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

// Sixteen floats as one value: one AVX-512 register, or a pair of 8-float (AVX2) vectors. GCC
// lowers a 64-byte generic vector on a target without AVX-512 through the stack (every
// accumulator spilled: the batch-1 dense layer ran at a quarter of numpy's gemv on an AVX2
// machine), so there the pair is spelled out and stays in registers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__AVX512F__)
typedef float Vec16 __attribute__((vector_size(64)));
inline Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, Vec16 v) { std::memcpy(p, &v, sizeof v); }
inline Vec16 splat16(float s) { return Vec16{} + s; }
inline Vec16 pos_part(Vec16 w) {
  const Vec16 z = {};
  return w > z ? w : z;
}
inline Vec16 neg_part(Vec16 w) {
  const Vec16 z = {};
  return w < z ? w : z;
}
// w > 0 ? a : b, lane by lane.
inline Vec16 where_pos(Vec16 w, Vec16 a, Vec16 b) {
  const Vec16 z = {};
  return w > z ? a : b;
}
inline float hsum(Vec16 v) {
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += v[j];
  return s;
}
#else
typedef float Vec8 __attribute__((vector_size(32)));
struct Vec16 {
  Vec8 lo, hi;
};
inline Vec16 operator+(Vec16 a, Vec16 b) { return {a.lo + b.lo, a.hi + b.hi}; }
inline Vec16 operator*(Vec16 a, Vec16 b) { return {a.lo * b.lo, a.hi * b.hi}; }
inline Vec16& operator+=(Vec16& a, Vec16 b) {
  a.lo += b.lo;
  a.hi += b.hi;
  return a;
}
inline Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v.lo, p, sizeof v.lo);
  std::memcpy(&v.hi, p + 8, sizeof v.hi);
  return v;
}
inline void store16(float* p, Vec16 v) {
  std::memcpy(p, &v.lo, sizeof v.lo);
  std::memcpy(p + 8, &v.hi, sizeof v.hi);
}
inline Vec16 splat16(float s) { return {Vec8{} + s, Vec8{} + s}; }
inline Vec8 pos8(Vec8 w) {
  const Vec8 z = {};
  return w > z ? w : z;
}
inline Vec8 neg8(Vec8 w) {
  const Vec8 z = {};
  return w < z ? w : z;
}
inline Vec16 pos_part(Vec16 w) { return {pos8(w.lo), pos8(w.hi)}; }
inline Vec16 neg_part(Vec16 w) { return {neg8(w.lo), neg8(w.hi)}; }
inline Vec16 where_pos(Vec16 w, Vec16 a, Vec16 b) {
  const Vec8 z = {};
  return {w.lo > z ? a.lo : b.lo, w.hi > z ? a.hi : b.hi};
}
inline float hsum(Vec16 v) {
  const Vec8 t = v.lo + v.hi;
  float s = 0.f;
  for (int j = 0; j < 8; ++j) s += t[j];
  return s;
}
#endif

// Output entries [0, n) split over the threads of this thread's sgemm budget in blocks of 64,
// when there is enough work (n * depth multiply-adds) to pay for a parallel region.
template <class F>
void split_outputs(int64_t n, int64_t depth, F f) {
  blas_once();
  const int64_t blocks = (n + 63) / 64;
  const int parts =
      static_cast<int>(std::min<int64_t>({t_threads, blocks, std::max<int64_t>(1, n * depth / (int64_t{1} << 18))}));
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
  for (int p = 0; p < parts; ++p) {
    const int64_t b = blocks * p / parts * 64, e = std::min(n, blocks * (p + 1) / parts * 64);
    if (b < e) f(b, e);
  }
}

// Rows [0, rows) of a matrix combined onto output columns [b, e) in blocks of `width` that stay
// in L2 while long runs of each row stream past: clear(c0, c1) per block, then row(r, c0, c1).
template <class Clear, class Row>
void rows_in_column_blocks(int64_t b, int64_t e, int64_t rows, int64_t width, Clear clear, Row row) {
  for (int64_t c0 = b; c0 < e; c0 += width) {
    const int64_t c1 = std::min(e, c0 + width);
    clear(c0, c1);
    for (int64_t r = 0; r < rows; ++r) row(r, c0, c1);
  }
}

// c = alpha op(A) op(B) + beta c for a single row of C (a dense layer at batch 1), columns
// [n0, n1): one pass over B. The product is bound by reading B, and BLAS's packing of B doubles
// that traffic (measured: half onnxruntime's bandwidth on VGG's 25088x4096 layer). With more rows
// BLAS's register blocking wins (hand loops over 2..8 rows measured slower than BLAS here).
void one_row_gemm(bool trans_b, const float* a, int64_t n0, int64_t n1, int64_t K, float alpha, const float* B,
                  int64_t ldb, float beta, float* c) {
  if (trans_b) {
    // op(B)[k, n] = B[n, k]: a dot product of two contiguous rows per output, four outputs at a
    // time so that each load of a serves four rows of B, with 16 partial sums per row: one
    // 8-wide sum per row was a chain of dependent FMAs, latency-bound at half the memory
    // bandwidth (VGG's 25088x4096 layer: 24 ms against numpy's 12 ms gemv).
    constexpr int kRows = 4, kLanes = 16;
    int64_t n = n0;
    for (; n + kRows <= n1; n += kRows) {
      const float* b0 = B + n * ldb;
      const float* b1 = b0 + ldb;
      const float* b2 = b1 + ldb;
      const float* b3 = b2 + ldb;
      Vec16 s0 = {}, s1 = {}, s2 = {}, s3 = {};
      int64_t k = 0;
      for (; k + kLanes <= K; k += kLanes) {
        const Vec16 av = load16(a + k);
        s0 += av * load16(b0 + k);
        s1 += av * load16(b1 + k);
        s2 += av * load16(b2 + k);
        s3 += av * load16(b3 + k);
      }
      const Vec16 sums[kRows] = {s0, s1, s2, s3};
      const float* rows[kRows] = {b0, b1, b2, b3};
      for (int r = 0; r < kRows; ++r) {
        float sum = hsum(sums[r]);
        for (int64_t kk = k; kk < K; ++kk) sum += a[kk] * rows[r][kk];
        c[n + r] = alpha * sum + (beta == 0.f ? 0.f : beta * c[n + r]);
      }
    }
    for (; n < n1; ++n) {
      const float* bn = B + n * ldb;
      float acc[kLanes] = {};
      int64_t k = 0;
      for (; k + kLanes <= K; k += kLanes)
        for (int j = 0; j < kLanes; ++j) acc[j] += a[k + j] * bn[k + j];
      float sum = 0.f;
      for (int j = 0; j < kLanes; ++j) sum += acc[j];
      for (; k < K; ++k) sum += a[k] * bn[k];
      c[n] = alpha * sum + (beta == 0.f ? 0.f : beta * c[n]);
    }
    return;
  }
  // op(B) = B [K, N]: rows of B scaled and added onto c.
  rows_in_column_blocks(
      n0, n1, K, int64_t{64} << 10,
      [&](int64_t c0, int64_t c1) {
        if (beta == 0.f)
          std::fill(c + c0, c + c1, 0.f);
        else if (beta != 1.f)
          for (int64_t n = c0; n < c1; ++n) c[n] *= beta;
      },
      [&](int64_t k, int64_t c0, int64_t c1) {
        const float s = alpha * a[k];
        // A zero multiplier adds nothing (as reference BLAS, which skips it too): behind a ReLU
        // about half of a cotangent row is zero, and skipping those rows of B halves the traffic.
        if (s == 0.f) return;
        const float* bk = B + k * ldb;
        for (int64_t n = c0; n < c1; ++n) c[n] += s * bk[n];
      });
}

// The two modified weights of the sign-split kernels, per lane and per scalar, and the VJP term
// f1(w) g1 + f2(w) g2 (for αβ, where one of w+ and w- is zero, w times g1 or g2 by w's sign).
struct AlphaBetaMods {
  Vec16 f1(Vec16 w) const { return pos_part(w); }
  Vec16 f2(Vec16 w) const { return neg_part(w); }
  float f1(float w) const { return std::max(w, 0.f); }
  float f2(float w) const { return std::min(w, 0.f); }
  Vec16 vjp(Vec16 w, Vec16 g1, Vec16 g2) const { return w * where_pos(w, g1, g2); }
  float vjp(float w, float g1, float g2) const { return w * (w > 0.f ? g1 : g2); }
};
// γ's W + γW+ and W + γW-, as Zennit's Gamma modifies each weight (rules::GammaMod).
struct GammaMods {
  float g;
  Vec16 f1(Vec16 w) const { return w + splat16(g) * pos_part(w); }
  Vec16 f2(Vec16 w) const { return w + splat16(g) * neg_part(w); }
  float f1(float w) const { return w + g * (w > 0.f ? w : 0.f); }
  float f2(float w) const { return w + g * (w < 0.f ? w : 0.f); }
  Vec16 vjp(Vec16 w, Vec16 g1, Vec16 g2) const { return f1(w) * g1 + f2(w) * g2; }
  float vjp(float w, float g1, float g2) const { return f1(w) * g1 + f2(w) * g2; }
};

template <class Mods>
void gemv_split(const Mods& md, bool trans_b, int64_t N, int64_t K, const float* a, const float* B, int64_t ldb,
                float* pos, float* neg) {
  if (N <= 0) return;
  if (trans_b) {
    // op(B)[k, n] = B[n, k]: two dot products (both modified weights) per contiguous row, two
    // rows at a time.
    split_outputs(N, K, [&](int64_t n0, int64_t n1) {
      int64_t n = n0;
      for (; n + 2 <= n1; n += 2) {
        const float* b0 = B + n * ldb;
        const float* b1 = b0 + ldb;
        Vec16 p0 = {}, q0 = {}, p1 = {}, q1 = {};
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
          const Vec16 av = load16(a + k), w0 = load16(b0 + k), w1 = load16(b1 + k);
          p0 += av * md.f1(w0), q0 += av * md.f2(w0);
          p1 += av * md.f1(w1), q1 += av * md.f2(w1);
        }
        float sp0 = hsum(p0), sq0 = hsum(q0), sp1 = hsum(p1), sq1 = hsum(q1);
        for (; k < K; ++k) {
          sp0 += a[k] * md.f1(b0[k]), sq0 += a[k] * md.f2(b0[k]);
          sp1 += a[k] * md.f1(b1[k]), sq1 += a[k] * md.f2(b1[k]);
        }
        pos[n] = sp0, neg[n] = sq0, pos[n + 1] = sp1, neg[n + 1] = sq1;
      }
      for (; n < n1; ++n) {
        const float* bn = B + n * ldb;
        float sp = 0.f, sq = 0.f;
        for (int64_t k = 0; k < K; ++k) sp += a[k] * md.f1(bn[k]), sq += a[k] * md.f2(bn[k]);
        pos[n] = sp, neg[n] = sq;
      }
    });
    return;
  }
  // op(B) = B [K, N]: rows of B (both modified weights) scaled and added, in column blocks that
  // stay in L2.
  split_outputs(N, K, [&](int64_t n0, int64_t n1) {
    rows_in_column_blocks(
        n0, n1, K, int64_t{32} << 10,
        [&](int64_t c0, int64_t c1) {
          std::fill(pos + c0, pos + c1, 0.f);
          std::fill(neg + c0, neg + c1, 0.f);
        },
        [&](int64_t k, int64_t c0, int64_t c1) {
          const float s = a[k];
          if (s == 0.f) return;  // behind a ReLU about half the row is zero
          const float* bk = B + k * ldb;
          const Vec16 sv = splat16(s);
          int64_t n = c0;
          for (; n + 16 <= c1; n += 16) {
            const Vec16 w = load16(bk + n);
            store16(pos + n, load16(pos + n) + sv * md.f1(w));
            store16(neg + n, load16(neg + n) + sv * md.f2(w));
          }
          for (; n < c1; ++n) pos[n] += s * md.f1(bk[n]), neg[n] += s * md.f2(bk[n]);
        });
  });
}

template <class Mods>
void gemv_split_vjp(const Mods& md, bool trans_b, int64_t N, int64_t K, const float* g1, const float* g2,
                    const float* B, int64_t ldb, float* out) {
  if (K <= 0) return;
  if (!trans_b) {
    // op(B) = B [K, N]: out[k] is a dot product of row k of B (modified) with g1 and g2.
    split_outputs(K, N, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const float* bk = B + k * ldb;
        Vec16 acc = {};
        int64_t n = 0;
        for (; n + 16 <= N; n += 16) acc += md.vjp(load16(bk + n), load16(g1 + n), load16(g2 + n));
        float s = hsum(acc);
        for (; n < N; ++n) s += md.vjp(bk[n], g1[n], g2[n]);
        out[k] = s;
      }
    });
    return;
  }
  // op(B)[k, n] = B[n, k]: rows of B added onto out, modified and scaled by g1 and g2.
  split_outputs(K, N, [&](int64_t k0, int64_t k1) {
    rows_in_column_blocks(
        k0, k1, N, int64_t{64} << 10, [&](int64_t c0, int64_t c1) { std::fill(out + c0, out + c1, 0.f); },
        [&](int64_t n, int64_t c0, int64_t c1) {
          const float s1 = g1[n], s2 = g2[n];
          if (s1 == 0.f && s2 == 0.f) return;  // no relevance reached this output
          const float* bn = B + n * ldb;
          const Vec16 v1 = splat16(s1), v2 = splat16(s2);
          int64_t k = c0;
          for (; k + 16 <= c1; k += 16) store16(out + k, load16(out + k) + md.vjp(load16(bn + k), v1, v2));
          for (; k < c1; ++k) out[k] += md.vjp(bn[k], s1, s2);
        });
  });
}

}  // namespace

void gemv_sign_split(bool trans_b, int64_t N, int64_t K, const float* a, const float* B, int64_t ldb, float* pos,
                     float* neg, const SignSplitMod& mod) {
  if (mod.gamma)
    gemv_split(GammaMods{mod.g}, trans_b, N, K, a, B, ldb, pos, neg);
  else
    gemv_split(AlphaBetaMods{}, trans_b, N, K, a, B, ldb, pos, neg);
}

void gemv_sign_split_vjp(bool trans_b, int64_t N, int64_t K, const float* g1, const float* g2, const float* B,
                         int64_t ldb, float* out, const SignSplitMod& mod) {
  if (mod.gamma)
    gemv_split_vjp(GammaMods{mod.g}, trans_b, N, K, g1, g2, B, ldb, out);
  else
    gemv_split_vjp(AlphaBetaMods{}, trans_b, N, K, g1, g2, B, ldb, out);
}

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
  blas_once();
  const int threads = t_threads;
  // One row: our streaming kernel at every size (OpenBLAS packs B first: 12 us for a 256 x 128
  // layer, a fifth of a small CNN at batch 1); split_outputs keeps small products on one thread.
  if (M == 1) {
    std::vector<float> packed;  // op(A)'s row made contiguous (a copy only when A is transposed)
    const float* a = A;
    if (trans_a) {
      packed.resize(static_cast<std::size_t>(K));
      for (int64_t k = 0; k < K; ++k) packed[static_cast<std::size_t>(k)] = A[k * lda];
      a = packed.data();
    }
    // Columns split over threads in blocks of 64 (whole cache lines of C and B).
    split_outputs(N, K, [&](int64_t b, int64_t e) { one_row_gemm(trans_b, a, b, e, K, alpha, B, ldb, beta, C); });
    return;
  }
  // Below ~4 MFLOP a split costs more than it saves.
  if (threads <= 1 || static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) < 2e6) {
    sgemm_1(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger of M and N into one block per thread (blocks of whole 16-wide panels).
  const bool split_m = M >= N;
  const int64_t dim = split_m ? M : N;
  int64_t parts = std::min<int64_t>(threads, std::max<int64_t>(1, dim / 16));
#pragma omp parallel for num_threads(static_cast<int>(parts)) schedule(static)
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t b = (dim * p / parts) / 16 * 16, e = p == parts - 1 ? dim : (dim * (p + 1) / parts) / 16 * 16;
    if (e <= b) continue;
    if (split_m) {
      const float* a = trans_a ? A + b : A + b * lda;
      sgemm_1(trans_a, trans_b, e - b, N, K, alpha, a, lda, B, ldb, beta, C + b * ldc, ldc);
    } else {
      const float* bb = trans_b ? B + b * ldb : B + b;
      sgemm_1(trans_a, trans_b, M, e - b, K, alpha, A, lda, bb, ldb, beta, C + b, ldc);
    }
  }
}

void set_blas_threads(int n) { t_threads = n < 1 ? 1 : n; }

int blas_threads() { return t_threads; }

}  // namespace onnxplain::kernels
