#include "kernels/conv.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace onnxplain::kernels {

namespace {

// Column-buffer budget of one GEMM (floats): large enough that sgemm runs near peak, small enough
// that the columns written by im2col are still in cache when sgemm packs them (a whole VGG
// conv1_2 column matrix is 115 MB).
constexpr int64_t kColTile = int64_t{1} << 19;
// Pointwise convs read the input directly; several images are packed into one GEMM (a copy) only
// when one image's GEMM is this narrow.
constexpr int64_t kPackNarrow = 256;
// Positions per product of a weight gradient computed alone (conv_backward with dW only).
constexpr int64_t kDwDepth = 2048;

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, work_per_item));
}

// Output columns [c_lo, c_hi) of the last axis whose tap at offset `off` (input index of output
// column 0) lands inside [0, in).
inline void valid_cols(int64_t off, int64_t s, int64_t in, int64_t out, int64_t* c_lo, int64_t* c_hi) {
  int64_t lo = off < 0 ? (-off + s - 1) / s : 0;
  int64_t hi = in - off > 0 ? (in - off + s - 1) / s : 0;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
  *c_lo = lo;
  *c_hi = hi;
}

// Row r = c*K + k of the column matrix, restricted to the output rows [r0, r1) (a row = one
// (a, b) index of the two leading output axes, out[2] columns each), written to dst.
inline void im2col_row(const float* x, const Window3& w, int64_t r, int64_t r0, int64_t r1, float* dst) {
  const int64_t K = w.k_size(), out2 = w.out[2], in_hw = w.in[1] * w.in[2];
  const int64_t c = r / K, k = r % K;
  const int64_t ka = k / (w.k[1] * w.k[2]), kb = (k / w.k[2]) % w.k[1], kc = k % w.k[2];
  const float* xc = x + c * w.in_size();
  const int64_t off2 = kc * w.d[2] - w.pb[2], s2 = w.s[2];
  int64_t c_lo, c_hi;
  valid_cols(off2, s2, w.in[2], out2, &c_lo, &c_hi);
  for (int64_t row = r0; row < r1; ++row, dst += out2) {
    const int64_t a = row / w.out[1], b = row % w.out[1];
    const int64_t ia = a * w.s[0] - w.pb[0] + ka * w.d[0];
    const int64_t ib = b * w.s[1] - w.pb[1] + kb * w.d[1];
    if (ia < 0 || ia >= w.in[0] || ib < 0 || ib >= w.in[1] || c_lo >= c_hi) {
      std::memset(dst, 0, sizeof(float) * static_cast<std::size_t>(out2));
      continue;
    }
    // First tap inside the row: index c_lo * s2 + off2 >= 0.
    const float* src = xc + ia * in_hw + ib * w.in[2] + (c_lo * s2 + off2);
    for (int64_t j = 0; j < c_lo; ++j) dst[j] = 0.f;
    if (s2 == 1) {
      std::memcpy(dst + c_lo, src, sizeof(float) * static_cast<std::size_t>(c_hi - c_lo));
    } else {
      for (int64_t j = c_lo; j < c_hi; ++j) dst[j] = src[(j - c_lo) * s2];
    }
    for (int64_t j = c_hi; j < out2; ++j) dst[j] = 0.f;
  }
}

// im2col of the output rows [r0, r1); row r of col starts at col + r * ldc.
void im2col_rows(const float* x, int64_t channels, const Window3& w, int64_t r0, int64_t r1, float* col,
                 int64_t ldc, int threads) {
  parallel_for(
      channels * w.k_size(), threads,
      [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) im2col_row(x, w, r, r0, r1, col + r * ldc);
      },
      grain_for((r1 - r0) * w.out[2]));
}

// Groups == channels: one small stencil per output channel; a GEMM per channel would be a
// 1-row matrix product.
void depthwise(const ConvShape& s, const float* x, const float* wt, const float* bias, float* y, int threads) {
  const Window3& w = s.win;
  const int64_t C = s.in_channels, M = s.out_channels, mult = M / C;
  const int64_t K = w.k_size(), P = w.out_size(), IN = w.in_size(), in_hw = w.in[1] * w.in[2];
  const int64_t out2 = w.out[2], s2 = w.s[2];
  // Valid output columns of each tap of the last axis: the same for every row and channel.
  std::vector<int64_t> col_lo(static_cast<std::size_t>(w.k[2])), col_hi(col_lo.size());
  for (int64_t kc = 0; kc < w.k[2]; ++kc) {
    const auto u = static_cast<std::size_t>(kc);
    valid_cols(kc * w.d[2] - w.pb[2], s2, w.in[2], out2, &col_lo[u], &col_hi[u]);
  }
  parallel_for(
      s.batch * M, threads,
      [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe; ++p) {
          const int64_t n = p / M, m = p % M;
          const float* xp = x + (n * C + m / mult) * IN;
          const float* wm = wt + m * K;
          float* yp = y + p * P;
          const float b0 = bias ? bias[m] : 0.f;
          for (int64_t row = 0; row < w.out[0] * w.out[1]; ++row) {
            float* yr = yp + row * out2;
            for (int64_t j = 0; j < out2; ++j) yr[j] = b0;
            const int64_t a = row / w.out[1], b = row % w.out[1];
            for (int64_t ka = 0; ka < w.k[0]; ++ka) {
              const int64_t ia = a * w.s[0] - w.pb[0] + ka * w.d[0];
              if (ia < 0 || ia >= w.in[0]) continue;
              for (int64_t kb = 0; kb < w.k[1]; ++kb) {
                const int64_t ib = b * w.s[1] - w.pb[1] + kb * w.d[1];
                if (ib < 0 || ib >= w.in[1]) continue;
                const float* xr = xp + ia * in_hw + ib * w.in[2];
                const float* wk = wm + (ka * w.k[1] + kb) * w.k[2];
                for (int64_t kc = 0; kc < w.k[2]; ++kc) {
                  const int64_t off = kc * w.d[2] - w.pb[2];
                  const int64_t lo = col_lo[static_cast<std::size_t>(kc)], hi = col_hi[static_cast<std::size_t>(kc)];
                  if (lo >= hi) continue;
                  const float wv = wk[kc];
                  const float* src = xr + (lo * s2 + off);
                  float* dst = yr + lo;
                  const int64_t len = hi - lo;
                  if (s2 == 1) {
                    for (int64_t j = 0; j < len; ++j) dst[j] += wv * src[j];
                  } else {
                    for (int64_t j = 0; j < len; ++j) dst[j] += wv * src[j * s2];
                  }
                }
              }
            }
          }
        }
      },
      grain_for(P * K));
}

bool is_pointwise(const Window3& w) {
  for (int i = 0; i < 3; ++i)
    if (w.k[i] != 1 || w.s[i] != 1 || w.pb[i] != 0 || w.pe[i] != 0) return false;
  return true;
}

bool is_depthwise(const ConvShape& s) { return s.groups > 1 && s.groups == s.in_channels; }

// How the GEMMs are cut: several whole images per GEMM (images > 1) or row tiles of one image.
struct Plan {
  bool pointwise;
  int64_t images;        // images per GEMM
  int64_t rows_per_tile;  // output rows (of out[2] columns) per GEMM when images == 1
};

Plan make_plan(const ConvShape& s) {
  const Window3& w = s.win;
  const int64_t CgK = s.in_channels / s.groups * w.k_size(), P = w.out_size(), rows = w.out[0] * w.out[1];
  Plan pl{is_pointwise(w), 1, rows};
  if (pl.pointwise) {
    if (s.batch > 1 && P < kPackNarrow) pl.images = std::min(s.batch, std::max<int64_t>(1, kPackNarrow * 4 / P));
    return pl;
  }
  if (CgK * P <= kColTile) {
    if (s.batch > 1) pl.images = std::min(s.batch, std::max<int64_t>(1, kColTile / (CgK * P)));
  } else {
    pl.rows_per_tile = std::max<int64_t>(1, std::min(rows, kColTile / (CgK * w.out[2])));
  }
  return pl;
}

// The adjoint of im2col_rows: col holds the output rows [r0, r1) (row r of col at col + r * ldc)
// and is scattered back, added, onto the taps of x it was read from.
void col2im_rows_add(const float* col, int64_t channels, const Window3& w, int64_t r0, int64_t r1, int64_t ldc,
                     float* x, int threads) {
  const int64_t K = w.k_size(), kbc = w.k[1] * w.k[2], out2 = w.out[2], s2 = w.s[2];
  const int64_t in_size = w.in_size(), in_hw = w.in[1] * w.in[2];
  // Taps of one channel write the same plane, so channels are the unit of parallel work.
  parallel_for(
      channels, threads,
      [&](int64_t cb, int64_t ce) {
        for (int64_t c = cb; c < ce; ++c) {
          float* xc = x + c * in_size;
          for (int64_t k = 0; k < K; ++k) {
            const int64_t ka = k / kbc, kb = (k / w.k[2]) % w.k[1], kc = k % w.k[2];
            const int64_t off2 = kc * w.d[2] - w.pb[2];
            int64_t c_lo, c_hi;
            valid_cols(off2, s2, w.in[2], out2, &c_lo, &c_hi);
            if (c_lo >= c_hi) continue;
            const float* src = col + (c * K + k) * ldc;
            for (int64_t row = r0; row < r1; ++row, src += out2) {
              const int64_t a = row / w.out[1], b = row % w.out[1];
              const int64_t ia = a * w.s[0] - w.pb[0] + ka * w.d[0];
              const int64_t ib = b * w.s[1] - w.pb[1] + kb * w.d[1];
              if (ia < 0 || ia >= w.in[0] || ib < 0 || ib >= w.in[1]) continue;
              float* dst = xc + ia * in_hw + ib * w.in[2] + (c_lo * s2 + off2);
              if (s2 == 1) {
                for (int64_t j = c_lo; j < c_hi; ++j) dst[j - c_lo] += src[j];
              } else {
                for (int64_t j = c_lo; j < c_hi; ++j) dst[(j - c_lo) * s2] += src[j];
              }
            }
          }
        }
      },
      grain_for((r1 - r0) * out2 * K));
}

// Input gradient of the depthwise stencil: dx[n, c] += w[m, tap] * dy[n, m] shifted back to the
// taps, over the `mult` output channels m of input channel c. dx must be zero on entry. Work item
// = one (image, input channel) plane, which only that item writes.
void depthwise_backward_input(const ConvShape& s, const float* wt, const float* dy, float* dx, int threads) {
  const Window3& w = s.win;
  const int64_t C = s.in_channels, M = s.out_channels, mult = M / C;
  const int64_t K = w.k_size(), P = w.out_size(), IN = w.in_size(), in_hw = w.in[1] * w.in[2];
  const int64_t out2 = w.out[2], s2 = w.s[2];
  std::vector<int64_t> col_lo(static_cast<std::size_t>(w.k[2])), col_hi(col_lo.size());
  for (int64_t kc = 0; kc < w.k[2]; ++kc) {
    const auto u = static_cast<std::size_t>(kc);
    valid_cols(kc * w.d[2] - w.pb[2], s2, w.in[2], out2, &col_lo[u], &col_hi[u]);
  }
  parallel_for(
      s.batch * C, threads,
      [&](int64_t pb, int64_t pe) {
        for (int64_t p = pb; p < pe; ++p) {
          const int64_t n = p / C, c = p % C;
          float* xp = dx + p * IN;
          for (int64_t m = c * mult; m < (c + 1) * mult; ++m) {
            const float* wm = wt + m * K;
            const float* yp = dy + (n * M + m) * P;
            for (int64_t row = 0; row < w.out[0] * w.out[1]; ++row) {
              const float* yr = yp + row * out2;
              const int64_t a = row / w.out[1], b = row % w.out[1];
              for (int64_t ka = 0; ka < w.k[0]; ++ka) {
                const int64_t ia = a * w.s[0] - w.pb[0] + ka * w.d[0];
                if (ia < 0 || ia >= w.in[0]) continue;
                for (int64_t kb = 0; kb < w.k[1]; ++kb) {
                  const int64_t ib = b * w.s[1] - w.pb[1] + kb * w.d[1];
                  if (ib < 0 || ib >= w.in[1]) continue;
                  float* xr = xp + ia * in_hw + ib * w.in[2];
                  const float* wk = wm + (ka * w.k[1] + kb) * w.k[2];
                  for (int64_t kc = 0; kc < w.k[2]; ++kc) {
                    const int64_t lo = col_lo[static_cast<std::size_t>(kc)], hi = col_hi[static_cast<std::size_t>(kc)];
                    if (lo >= hi) continue;
                    const float wv = wk[kc];
                    float* dst = xr + (lo * s2 + kc * w.d[2] - w.pb[2]);
                    const float* src = yr + lo;
                    const int64_t len = hi - lo;
                    if (s2 == 1) {
                      for (int64_t j = 0; j < len; ++j) dst[j] += wv * src[j];
                    } else {
                      for (int64_t j = 0; j < len; ++j) dst[j * s2] += wv * src[j];
                    }
                  }
                }
              }
            }
          }
        }
      },
      grain_for(P * K * mult));
}

// Batch-parallel: one OpenMP region for the whole layer, f(sub, b) run by each thread on its own
// images [b, b + sub.batch) with single-threaded GEMMs. Alternating parallel copying regions with
// split GEMMs costs a thread hand-over per tile, which a loaded machine turns into milliseconds.
template <class F>
void per_thread_images(const ConvShape& s, int threads, F f) {
  const int64_t N = s.batch;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const int64_t b = N * t / threads, e = N * (t + 1) / threads;
    if (e <= b) continue;
    ConvShape sub = s;
    sub.batch = e - b;
    const int saved = blas_threads();
    set_blas_threads(1);
    f(sub, b);
    set_blas_threads(saved);
  }
}

}  // namespace

void im2col(const float* x, int64_t channels, const Window3& w, float* col, int64_t ldc, int threads) {
  im2col_rows(x, channels, w, 0, w.out[0] * w.out[1], col, ldc, threads);
}

void col2im_add(const float* col, int64_t channels, const Window3& w, float* x, int threads) {
  col2im_rows_add(col, channels, w, 0, w.out[0] * w.out[1], w.out_size(), x, threads);
}

int64_t conv_scratch_floats(const ConvShape& s) {
  if (s.batch == 0 || is_depthwise(s)) return 0;
  const Plan pl = make_plan(s);
  const int64_t Cg = s.in_channels / s.groups, Mg = s.out_channels / s.groups, K = s.win.k_size();
  const int64_t P = s.win.out_size();
  if (pl.images > 1) return (Cg * K + Mg) * pl.images * P;  // packed columns + packed result
  if (pl.pointwise) return 0;
  return Cg * K * pl.rows_per_tile * s.win.out[2];
}

void apply_epilogue_parallel(const Epilogue& ep, float* y, int64_t n, int threads) {
  if (!ep.any()) return;
  parallel_for(n, threads, [&](int64_t i0, int64_t i1) { apply_epilogue(ep, y + i0, i1 - i0, i0); });
}

void conv_forward(const ConvShape& s, const float* x, const float* w, const float* bias, float* y, float* scratch,
                  int threads, const Epilogue& ep) {
  if (s.batch == 0 || s.out_channels == 0 || s.win.out_size() == 0) return;
  if (is_depthwise(s)) {
    depthwise(s, x, w, bias, y, threads);
    apply_epilogue_parallel(ep, y, s.batch * s.out_channels * s.win.out_size(), threads);
    return;
  }
  if (threads > 1 && s.batch >= threads) {
    const int64_t per_in = s.in_channels * s.win.in_size(), per_out = s.out_channels * s.win.out_size();
    per_thread_images(s, threads, [&](const ConvShape& sub, int64_t b) {
      float* buf = thread_scratch(static_cast<std::size_t>(conv_scratch_floats(sub)), ScratchSlot::ConvWorker);
      conv_forward(sub, x + b * per_in, w, bias, y + b * per_out, buf, 1, ep.at(b * per_out));
    });
    return;
  }
  const Window3& win = s.win;
  const int64_t N = s.batch, C = s.in_channels, M = s.out_channels, G = s.groups;
  const int64_t Cg = C / G, Mg = M / G, K = win.k_size(), CgK = Cg * K;
  const int64_t P = win.out_size(), IN = win.in_size(), out2 = win.out[2], rows = win.out[0] * win.out[1];
  const Plan pl = make_plan(s);

  // The GEMM accumulates onto the bias (beta = 1), written just before into the block it is
  // about to produce (still in cache; OpenBLAS reads C before accumulating for any beta). Serial:
  // a short fill is cheaper than one more OpenMP region between two multithreaded sgemm calls.
  auto fill_bias = [&](float* yb, int64_t g, int64_t cols) {
    for (int64_t m = 0; m < Mg; ++m) std::fill(yb + m * P, yb + m * P + cols, bias[g * Mg + m]);
  };
  const float beta = bias ? 1.f : 0.f;

  const int64_t tiles_per_image = (rows + pl.rows_per_tile - 1) / pl.rows_per_tile;
  if (pl.images == 1 && !pl.pointwise && threads > 1 && N * G * tiles_per_image >= 2 * threads) {
    // Tile-parallel: each thread builds and multiplies whole tiles on its own (single-threaded
    // GEMM, own scratch), one OpenMP region per layer instead of a hand-over per tile.
    const int64_t total = N * G * tiles_per_image;
#pragma omp parallel num_threads(threads)
    {
      const int saved = blas_threads();
      set_blas_threads(1);
      float* buf = thread_scratch(static_cast<std::size_t>(CgK * pl.rows_per_tile * out2), ScratchSlot::ConvWorker);
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < total; ++t) {
        const int64_t n = t / (G * tiles_per_image), g = (t / tiles_per_image) % G;
        const int64_t r0 = (t % tiles_per_image) * pl.rows_per_tile;
        const int64_t r1 = std::min(rows, r0 + pl.rows_per_tile), cols = (r1 - r0) * out2;
        const float* xg = x + (n * C + g * Cg) * IN;
        float* yg = y + (n * M + g * Mg) * P;
        if (bias) fill_bias(yg + r0 * out2, g, cols);
        im2col_rows(xg, Cg, win, r0, r1, buf, cols, 1);
        sgemm(false, false, Mg, cols, CgK, 1.f, w + g * Mg * CgK, CgK, buf, cols, beta, yg + r0 * out2, P);
        if (ep.any())  // the tile, still in cache
          for (int64_t m = 0; m < Mg; ++m)
            apply_epilogue(ep, yg + m * P + r0 * out2, cols, (n * M + g * Mg + m) * P + r0 * out2);
      }
      set_blas_threads(saved);
    }
    return;
  }
  if (pl.images == 1) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const float* xg = x + (n * C + g * Cg) * IN;
        const float* wg = w + g * Mg * CgK;
        float* yg = y + (n * M + g * Mg) * P;
        if (pl.pointwise) {
          if (bias) fill_bias(yg, g, P);
          sgemm(false, false, Mg, P, Cg, 1.f, wg, Cg, xg, P, beta, yg, P);
        } else {
          for (int64_t r0 = 0; r0 < rows; r0 += pl.rows_per_tile) {
            const int64_t r1 = std::min(rows, r0 + pl.rows_per_tile), cols = (r1 - r0) * out2;
            if (bias) fill_bias(yg + r0 * out2, g, cols);
            im2col_rows(xg, Cg, win, r0, r1, scratch, cols, threads);
            sgemm(false, false, Mg, cols, CgK, 1.f, wg, CgK, scratch, cols, beta, yg + r0 * out2, P);
          }
        }
        if (ep.any()) {
          apply_epilogue_parallel(ep.at((n * M + g * Mg) * P), yg, Mg * P, threads);
        }
      }
    return;
  }

  // Several images side by side in one GEMM: columns [i*P, (i+1)*P) belong to image n0 + i.
  float* col = scratch;
  float* tmp = scratch + CgK * pl.images * P;
  for (int64_t n0 = 0; n0 < N; n0 += pl.images) {
    const int64_t nb = std::min(pl.images, N - n0), ld = nb * P;
    for (int64_t g = 0; g < G; ++g) {
      // One parallel region for all nb images: work item = (image, column-matrix row).
      parallel_for(
          nb * CgK, threads,
          [&](int64_t rb, int64_t re) {
            for (int64_t r = rb; r < re; ++r) {
              const int64_t i = r / CgK, k = r % CgK;
              const float* xg = x + ((n0 + i) * C + g * Cg) * IN;
              float* dst = col + k * ld + i * P;
              if (pl.pointwise)
                std::memcpy(dst, xg + k * P, sizeof(float) * static_cast<std::size_t>(P));
              else
                im2col_row(xg, win, k, 0, rows, dst);
            }
          },
          grain_for(P));
      sgemm(false, false, Mg, ld, CgK, 1.f, w + g * Mg * CgK, CgK, col, ld, 0.f, tmp, ld);
      parallel_for(
          nb * Mg, threads,
          [&](int64_t rb, int64_t re) {
            for (int64_t r = rb; r < re; ++r) {
              const int64_t i = r / Mg, m = r % Mg;
              const float* src = tmp + m * ld + i * P;
              float* dst = y + ((n0 + i) * M + g * Mg + m) * P;
              const float b0 = bias ? bias[g * Mg + m] : 0.f;
              for (int64_t j = 0; j < P; ++j) dst[j] = src[j] + b0;
              apply_epilogue(ep, dst, P, ((n0 + i) * M + g * Mg + m) * P);
            }
          },
          grain_for(P));
    }
  }
}

namespace {

// Output rows per GEMM in conv_backward: the column tile W^T*dY (or im2col(x)) stays within
// kColTile floats, as in the forward.
int64_t backward_rows_per_tile(const ConvShape& s) {
  const Window3& w = s.win;
  const int64_t CgK = s.in_channels / s.groups * w.k_size(), rows = w.out[0] * w.out[1];
  if (is_pointwise(w)) return rows;
  return std::max<int64_t>(1, std::min(rows, kColTile / std::max<int64_t>(1, CgK * w.out[2])));
}

// Images per GEMM for dX of a small output map (stage 4 of ResNet-50: 49 positions): W^T is
// packed by BLAS once per call, which for a few dozen columns costs more than the product, so
// several images' dY go side by side (a copy) into one wider product. 1 when P is wide enough.
int64_t backward_images(const ConvShape& s) {
  const int64_t P = s.win.out_size();
  if (is_pointwise(s.win) || s.batch < 2 || P >= kPackNarrow) return 1;
  const int64_t CgK = s.in_channels / s.groups * s.win.k_size();
  return std::min(s.batch, std::max<int64_t>(1, 4 * kColTile / std::max<int64_t>(1, CgK * P)));
}

/// dY of images [n0, n0 + k), channels [c0, c0 + Mg), side by side: packed[m, i * P + p] (rows of
/// k * P), so that one product covers several images of a small map.
void pack_images(const float* dy, int64_t n0, int64_t k, int64_t M, int64_t c0, int64_t Mg, int64_t P, float* packed,
                 int threads) {
  const int64_t ld = k * P;
  parallel_for(
      k * Mg, threads,
      [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {
          const int64_t i = r / Mg, m = r % Mg;
          std::memcpy(packed + m * ld + i * P, dy + ((n0 + i) * M + c0 + m) * P, sizeof(float) * static_cast<std::size_t>(P));
        }
      },
      grain_for(P));
}

}  // namespace

int64_t conv_backward_scratch_floats(const ConvShape& s) {
  if (s.batch == 0 || is_pointwise(s.win)) return 0;
  const int64_t CgK = s.in_channels / s.groups * s.win.k_size();
  const int64_t nb = backward_images(s);
  if (nb > 1) return (CgK + s.out_channels / s.groups) * nb * s.win.out_size();  // columns + packed dY
  return CgK * backward_rows_per_tile(s) * s.win.out[2];
}

void conv_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                   float* db, float* scratch, int threads) {
  const Window3& win = s.win;
  const int64_t N = s.batch, C = s.in_channels, M = s.out_channels, G = s.groups;
  const int64_t Cg = C / G, Mg = M / G, K = win.k_size(), CgK = Cg * K;
  const int64_t P = win.out_size(), IN = win.in_size(), out2 = win.out[2], rows = win.out[0] * win.out[1];
  if (dx && !is_depthwise(s) && !dw && threads > 1 && N >= threads && M > 0 && P > 0 && CgK > 0) {
    // As conv_forward: per image, split GEMMs and a parallel col2im cost two thread hand-overs
    // per tile (ResNet-50's strided layers at batch 8 ran 1.3-1.7x their forward time).
    const int64_t per_in = C * IN, per_out = M * P;
    per_thread_images(s, threads, [&](const ConvShape& sub, int64_t b) {
      float* buf = thread_scratch(static_cast<std::size_t>(conv_backward_scratch_floats(sub)), ScratchSlot::ConvWorker);
      conv_backward(sub, nullptr, w, dy + b * per_out, dx + b * per_in, nullptr, nullptr, buf, 1);
    });
    dx = nullptr;
    if (!db) return;
  }
  if (dx) std::fill(dx, dx + N * C * IN, 0.f);
  if (dw) std::fill(dw, dw + M * CgK, 0.f);
  if (db) {
    // Summed in double: a bias sees every output position of every image.
    parallel_for(
        M, threads,
        [&](int64_t mb, int64_t me) {
          for (int64_t m = mb; m < me; ++m) {
            double acc = 0.0;
            for (int64_t n = 0; n < N; ++n) {
              const float* p = dy + (n * M + m) * P;
              for (int64_t j = 0; j < P; ++j) acc += p[j];
            }
            db[m] = static_cast<float>(acc);
          }
        },
        grain_for(N * P));
  }
  if (N == 0 || M == 0 || P == 0 || CgK == 0) return;
  if (dw && !dx && threads > 1 && N >= threads) {
    // dW alone (the pattern statistics): images split over threads as in the forward, each thread
    // summing its images into its own dW with single-threaded products, the partial sums added at
    // the end. Per-tile regions (im2col, then a split product) left threads waiting at every tile.
    const int64_t wsize = M * CgK, per_in = C * IN, per_out = M * P;
    // Kept across calls: a fresh buffer of this size cost a page fault per 4 KiB on every batch.
    float* part = thread_scratch(static_cast<std::size_t>((threads - 1) * wsize), ScratchSlot::Partial);
    per_thread_images(s, threads, [&](const ConvShape& sub, int64_t b) {
      // The range's own index (not omp_get_thread_num(): a smaller team runs several ranges on one
      // thread, and each range overwrites its dW); b = N * t / threads is strictly increasing in t.
      int t = 0;
      while (N * t / threads != b) ++t;
      float* dst = t == 0 ? dw : part + (t - 1) * wsize;
      float* buf = thread_scratch(static_cast<std::size_t>(conv_backward_scratch_floats(sub)), ScratchSlot::ConvWorker);
      conv_backward(sub, x + b * per_in, w, dy + b * per_out, nullptr, dst, nullptr, buf, 1);
    });
    parallel_for(wsize, threads, [&](int64_t b, int64_t e) {
      for (int t = 1; t < threads; ++t) {
        const float* q = part + (t - 1) * wsize;
        for (int64_t i = b; i < e; ++i) dw[i] += q[i];
      }
    });
    return;
  }
  if (dx && is_depthwise(s)) {
    depthwise_backward_input(s, w, dy, dx, threads);
    dx = nullptr;
  }
  if (!dx && !dw) return;
  const bool pw = is_pointwise(win);
  if (const int64_t nb = dw ? 1 : backward_images(s); nb > 1) {
    // dY of nb images side by side ([Mg, nb P]), one W^T product, col2im per image.
    float* col = scratch;
    float* packed = scratch + CgK * nb * P;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
      const int64_t k = std::min(nb, N - n0), ld = k * P;
      for (int64_t g = 0; g < G; ++g) {
        pack_images(dy, n0, k, M, g * Mg, Mg, P, packed, threads);
        sgemm(true, false, CgK, ld, Mg, 1.f, w + g * Mg * CgK, CgK, packed, ld, 0.f, col, ld);
        for (int64_t i = 0; i < k; ++i)
          col2im_rows_add(col + i * P, Cg, win, 0, rows, ld, dx + ((n0 + i) * C + g * Cg) * IN, threads);
      }
    }
    return;
  }
  if (dw && !dx && N > 1 && P < kPackNarrow) {
    // dW alone on a small map (ResNet's 7x7 and 14x14 stages, the pattern statistics' stacked
    // weight gradients): per image the product's depth is only P, and dW itself, read and
    // written by every product, outweighs the multiply; several images' columns side by side
    // make one product of depth nb·P.
    const int64_t nb = std::min(
        N, std::max<int64_t>({2, (kDwDepth + P - 1) / P, 4 * kColTile / std::max<int64_t>(1, CgK * P)}));
    float* col = thread_scratch(static_cast<std::size_t>((CgK + Mg) * nb * P), ScratchSlot::Pack);
    float* packed = col + CgK * nb * P;
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
      const int64_t k = std::min(nb, N - n0), ld = k * P;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t i = 0; i < k; ++i)
          im2col_rows(x + ((n0 + i) * C + g * Cg) * IN, Cg, win, 0, rows, col + i * P, ld, threads);
        pack_images(dy, n0, k, M, g * Mg, Mg, P, packed, threads);
        sgemm(false, true, Mg, CgK, ld, 1.f, packed, ld, col, ld, 1.f, dw + g * Mg * CgK, CgK);
      }
    }
    return;
  }
  int64_t tile = backward_rows_per_tile(s);
  float* wcol = scratch;
  if (dw && !dx && !pw) {
    // dW alone: products of depth >= kDwDepth positions, so that dW, read and written by every
    // product, is amortised over more of them (at 224 columns per tile it was half the time).
    tile = std::min(rows, std::max(tile, (kDwDepth + out2 - 1) / out2));
    wcol = thread_scratch(static_cast<std::size_t>(CgK * tile * out2), ScratchSlot::Pack);
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      const float* dyg = dy + (n * M + g * Mg) * P;
      const float* wg = w + g * Mg * CgK;
      const float* xg = dw ? x + (n * C + g * Cg) * IN : nullptr;
      float* dxg = dx ? dx + (n * C + g * Cg) * IN : nullptr;
      float* dwg = dw ? dw + g * Mg * CgK : nullptr;
      if (pw) {
        // The column matrix is x itself: dX = W^T dY and dW += dY x^T, no copies.
        if (dxg) sgemm(true, false, Cg, P, Mg, 1.f, wg, CgK, dyg, P, 0.f, dxg, P);
        if (dwg) sgemm(false, true, Mg, Cg, P, 1.f, dyg, P, xg, P, 1.f, dwg, CgK);
        continue;
      }
      for (int64_t r0 = 0; r0 < rows; r0 += tile) {
        const int64_t r1 = std::min(rows, r0 + tile), cols = (r1 - r0) * out2;
        if (dxg) {
          sgemm(true, false, CgK, cols, Mg, 1.f, wg, CgK, dyg + r0 * out2, P, 0.f, scratch, cols);
          col2im_rows_add(scratch, Cg, win, r0, r1, cols, dxg, threads);
        }
        if (dwg) {
          im2col_rows(xg, Cg, win, r0, r1, wcol, cols, threads);
          sgemm(false, true, Mg, CgK, cols, 1.f, dyg + r0 * out2, P, wcol, cols, 1.f, dwg, CgK);
        }
      }
    }
}

bool input_grad_is_conv(const ConvShape& s) {
  // A layer reading few channels (an RGB input) is cheaper through col2im: W^T dY then has
  // C*K rows, where the flipped convolution's im2col would have M*K.
  if (is_depthwise(s) || s.in_channels < 16) return false;
  // 1x1: conv_backward's dX = W^T dY reads W in place (sgemm transposes on the fly); the flipped
  // convolution needed a transposed copy of every 1x1 weight, per modified weight of the LRP
  // rules 60 MB of ResNet-50's derived data, re-made on every call once past the cap.
  if (is_pointwise(s.win)) return false;
  for (int i = 0; i < 3; ++i) {
    const int64_t reach = s.win.d[i] * (s.win.k[i] - 1);
    if (s.win.s[i] != 1 || s.win.pb[i] > reach || s.win.pe[i] > reach) return false;
  }
  return true;
}

ConvShape input_grad_conv_shape(const ConvShape& s) {
  ConvShape t = s;
  t.in_channels = s.out_channels;
  t.out_channels = s.in_channels;
  for (int i = 0; i < 3; ++i) {
    const int64_t reach = s.win.d[i] * (s.win.k[i] - 1);
    t.win.in[i] = s.win.out[i];
    t.win.out[i] = s.win.in[i];
    t.win.pb[i] = reach - s.win.pb[i];
    t.win.pe[i] = reach - s.win.pe[i];
  }
  return t;
}

void flip_conv_weight(const ConvShape& s, const float* w, float* wf, int threads) {
  const int64_t G = s.groups, Cg = s.in_channels / G, Mg = s.out_channels / G, K = s.win.k_size();
  parallel_for(
      s.in_channels, threads,
      [&](int64_t cb, int64_t ce) {
        for (int64_t oc = cb; oc < ce; ++oc) {
          const int64_t g = oc / Cg, c = oc % Cg;
          float* dst = wf + oc * Mg * K;
          for (int64_t m = 0; m < Mg; ++m) {
            const float* src = w + ((g * Mg + m) * Cg + c) * K;
            for (int64_t k = 0; k < K; ++k) dst[m * K + (K - 1 - k)] = src[k];
          }
        }
      },
      grain_for(Mg * K));
}

}  // namespace onnxplain::kernels
