#include "kernels/winograd.hpp"

#include <cstring>

#include <algorithm>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ONNXPLAIN_WINO_AVX512 1
#endif

#include "kernels/panel_gemm.hpp"
#include "kernels/parallel.hpp"
#include "kernels/scratch.hpp"

namespace onnxplain::kernels {
namespace {

// Transform matrices of F(m, 3) for cross-correlation (what ONNX Conv computes):
// y = A^T [(G g) . (B^T d)] per axis, d an (m+2)-tap input window, g the 3 taps.
template <int MT>
struct Wino;

template <>
struct Wino<4> {
  static constexpr int kA = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.f / 4, 0, 0},
                                    {-1.f / 6, -1.f / 6, -1.f / 6},
                                    {-1.f / 6, 1.f / 6, -1.f / 6},
                                    {1.f / 24, 1.f / 12, 1.f / 6},
                                    {1.f / 24, -1.f / 12, 1.f / 6},
                                    {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

  // B^T and A^T applied along one axis of n lanes, written out: a matrix product over BT/AT
  // multiplies by their zeros too (IEEE forbids dropping 0 * x). Half the arithmetic, but alone
  // no measurable gain: the transforms were bound by their loads and stores (see the row runs in
  // transform_input / transform_output). Same values up to rounding (shared sums).
  static void input_1d(const float* const in[6], float* const out[6], int n) {
    for (int l = 0; l < n; ++l) {
      const float d0 = in[0][l], d1 = in[1][l], d2 = in[2][l], d3 = in[3][l], d4 = in[4][l], d5 = in[5][l];
      out[0][l] = 4.f * d0 - 5.f * d2 + d4;
      out[1][l] = (d3 + d4) - 4.f * (d1 + d2);
      out[2][l] = (d4 - d3) + 4.f * (d1 - d2);
      out[3][l] = (d4 - d2) - 2.f * (d1 - d3);
      out[4][l] = (d4 - d2) + 2.f * (d1 - d3);
      out[5][l] = 4.f * d1 - 5.f * d3 + d5;
    }
  }
  static void output_1d(const float* const in[6], float* const out[4], float add, int n) {
    for (int l = 0; l < n; ++l) {
      const float a = in[1][l] + in[2][l], b = in[1][l] - in[2][l];
      const float c = in[3][l] + in[4][l], d = in[3][l] - in[4][l];
      out[0][l] = (in[0][l] + a + c) + add;
      out[1][l] = (b + 2.f * d) + add;
      out[2][l] = (a + 4.f * c) + add;
      out[3][l] = (b + 8.f * d + in[5][l]) + add;
    }
  }
};

// Output tile edge. F(4x4, 3x3) multiplies 4x less than the direct product; its transforms
// (entries up to 8 and 1/24) cost about one decimal digit of float32 rounding: outputs agree with
// a direct convolution to ~1e-5 of the layer's largest output (direct: ~1e-6). F(2x2) keeps
// the digit but saved about half as much time (bench/conv_layers.py, 256-512 channels).
constexpr int kTile = 4;

// Tiles per chunk: each chunk's transformed input and GEMM output (36 (C + M) floats per tile)
// should stay in cache, while every chunk rereads the transformed weight (36 M C floats). With
// up to 128 channels the weight is small and the chunk is kept near L2 size (16-32 tiles); wider
// layers need more tiles per pass over their weight (56-113 tiles). Read from
// bench/conv_layers.py: 64-128 channels at 112-224 px ran 1.3-1.7x faster than with the wide
// layers' chunk, 256-512 channels 1.3-1.6x slower with the narrow layers' one. On top, a chunk
// holds at least M C / (C + M) tiles, so that rereading the weight never costs more than the
// chunk's own traffic (the stacked 512 -> 1024 layer at 28x28 ran 1.3x faster, 64 -> 128 at 224
// 1.2x).
int64_t chunk_floats(int64_t c, int64_t m) { return std::max(c, m) <= 128 ? int64_t{1} << 16 : int64_t{1} << 20; }

template <int MT>
struct Plan {
  static constexpr int A = Wino<MT>::kA, AA = A * A;
  int64_t N, C, M, H, W, Ho, Wo, pt, pl, th, tw, T, Tc;
  bool relu = false;  // max(y, 0) as the output is written (a following Relu fused)
  explicit Plan(const ConvShape& s) {
    const Window3& w = s.win;
    N = s.batch, C = s.in_channels, M = s.out_channels;
    H = w.in[1], W = w.in[2], Ho = w.out[1], Wo = w.out[2], pt = w.pb[1], pl = w.pb[2];
    th = (Ho + MT - 1) / MT, tw = (Wo + MT - 1) / MT, T = N * th * tw;
    Tc = std::max<int64_t>({16, chunk_floats(C, M) / (AA * std::max(C, M)), M * C / std::max<int64_t>(1, C + M)});
    Tc = std::min(T, (Tc + 15) / 16 * 16);
  }
};

template <int MT>
void transform_weight(const ConvShape& s, const float* w, float* u, int threads) {
  using F = Wino<MT>;
  constexpr int A = F::kA;
  const int64_t M = s.out_channels, C = s.in_channels, Mp = panel_rows(M), panels = Mp / kPanelRows;
  // Panel by panel, channel by channel: the six rows of a panel are adjacent in every plane, so
  // each of the A*A planes is written as one sequential stream. Row-major order (m, then c) wrote
  // one float in six per plane and came back to each line five rows later: a cached-out weight
  // transform ran at 180 ns per (m, c) on a 1024 x 512 weight, twice the layer's own product.
  // The panel's rows are the lanes (8, the last two unused), innermost, so that G g G^T runs as
  // vector arithmetic: one (m, c) at a time it was 162 scalar multiply-adds per 9 weights, the
  // largest cost of an explanation whose transformed weights are not cached (DerivedCache).
  constexpr int L = 8;
  static_assert(kPanelRows <= L, "a panel's rows must fit the lanes");
  parallel_for(
      panels * C, threads,
      [&](int64_t b, int64_t e) {
        alignas(32) float g[9][L], t[A][3][L], o[A * A][L];
        for (int64_t q = b; q < e; ++q) {
          const int64_t panel = q / C, c = q % C;
          const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, M - panel * kPanelRows));
          for (int r = 0; r < L; ++r)
            for (int k = 0; k < 9; ++k) g[k][r] = r < rows ? w[((panel * kPanelRows + r) * C + c) * 9 + k] : 0.f;
          for (int i = 0; i < A; ++i)
            for (int j = 0; j < 3; ++j)
              for (int r = 0; r < L; ++r)
                t[i][j][r] = F::G[i][0] * g[j][r] + F::G[i][1] * g[3 + j][r] + F::G[i][2] * g[6 + j][r];
          for (int i = 0; i < A; ++i)
            for (int j = 0; j < A; ++j)
              for (int r = 0; r < L; ++r)
                o[i * A + j][r] = t[i][0][r] * F::G[j][0] + t[i][1][r] * F::G[j][1] + t[i][2][r] * F::G[j][2];
          // Rows past M are zero (their lanes are: g was).
          float* dst = u + panel * C * kPanelRows + c * kPanelRows;
          for (int xi = 0; xi < A * A; ++xi) std::memcpy(dst + xi * Mp * C, o[xi], sizeof(float) * kPanelRows);
        }
      },
      64);
}

// Tiles go through the transforms eight at a time, the lane index innermost, so the arithmetic
// vectorises across tiles (one tile alone is a handful of scalar operations).
constexpr int kLanes = 8;

#ifdef ONNXPLAIN_WINO_AVX512
// Eight 6x6 windows side by side, each 4 columns on from the last (F(4x4, 3x3)): tap j of lane l
// is src[i W + 4 l + j], a stride-4 gather. Compilers emit it as pairs of scalar loads and
// shuffles (perf: most of the input transform on 64-channel layers); here each row is read as
// two 32-float runs (from column 0 and from column 2, both inside the windows) and the six
// stride-4 phases are picked out with one two-register permute each.
__attribute__((target("avx512f"))) void gather_run_avx512(const float* src, int64_t W, float (*d)[6][kLanes]) {
  // Eight lanes of each permute are kept (masked stores: d[i][j] holds eight floats).
  constexpr __mmask16 kLow8 = 0x00ff;
  const __m512i p0 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i p1 = _mm512_add_epi32(p0, one), p2 = _mm512_add_epi32(p1, one), p3 = _mm512_add_epi32(p2, one);
  for (int i = 0; i < 6; ++i) {
    const float* row = src + i * W;
    const __m512 a = _mm512_loadu_ps(row), b = _mm512_loadu_ps(row + 16);
    const __m512 a2 = _mm512_loadu_ps(row + 2), b2 = _mm512_loadu_ps(row + 18);
    _mm512_mask_storeu_ps(d[i][0], kLow8, _mm512_permutex2var_ps(a, p0, b));
    _mm512_mask_storeu_ps(d[i][1], kLow8, _mm512_permutex2var_ps(a, p1, b));
    _mm512_mask_storeu_ps(d[i][2], kLow8, _mm512_permutex2var_ps(a, p2, b));
    _mm512_mask_storeu_ps(d[i][3], kLow8, _mm512_permutex2var_ps(a, p3, b));
    _mm512_mask_storeu_ps(d[i][4], kLow8, _mm512_permutex2var_ps(a2, p2, b2));
    _mm512_mask_storeu_ps(d[i][5], kLow8, _mm512_permutex2var_ps(a2, p3, b2));
  }
}

// The inverse for eight whole 4x4 output tiles side by side: row i of the run is
// o[i][j][l] at column 4 l + j, 32 floats written as two 16-float stores.
__attribute__((target("avx512f"))) void scatter_run_avx512(const float (*o)[4][kLanes], float* y, int64_t Wo) {
  // Output column q = 4 l + j takes lane l of o[i][j]; o[i][0..1] is one 16-float register
  // (first operand), o[i][2..3] the other (indices from 16).
  alignas(64) int lo[16], hi[16];
  for (int q = 0; q < 16; ++q) {
    const int l = q / 4, j = q % 4;
    lo[q] = (j < 2 ? j * kLanes : 16 + (j - 2) * kLanes) + l;
    hi[q] = lo[q] + 4;
  }
  const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
  for (int i = 0; i < 4; ++i) {
    const __m512 p = _mm512_loadu_ps(o[i][0]), q = _mm512_loadu_ps(o[i][2]);
    _mm512_storeu_ps(y + i * Wo, _mm512_permutex2var_ps(p, ilo, q));
    _mm512_storeu_ps(y + i * Wo + 16, _mm512_permutex2var_ps(p, ihi, q));
  }
}

bool has_avx512() {
  static const bool yes = [] {
    if (const char* v = std::getenv("ONNXPLAIN_GENERIC_KERNELS"); v && *v) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}
#endif

// Image, first row and first column (in output coordinates) of tile t.
template <int MT>
inline void tile_origin(const Plan<MT>& p, int64_t t, int64_t* n, int64_t* y0, int64_t* x0) {
  const int64_t per_img = p.th * p.tw, r = t % per_img;
  *n = t / per_img;
  *y0 = (r / p.tw) * MT;
  *x0 = (r % p.tw) * MT;
}

// v[xi] for the tiles [t0, t1) of every channel in [c0, c1): per transform entry xi, the C x tc
// matrix (channel, tile - t0) in panel_gemm's right-operand layout, written there directly so the
// product never copies it. A group of eight lanes is half a panel row (t0 is a multiple of 16);
// a last partial group is written with zero lanes, and a last panel's columns past it are left
// unwritten (panel_gemm allows that: they only reach product columns no one reads).
template <int MT>
void transform_input(const Plan<MT>& p, const float* x, int64_t t0, int64_t t1, int64_t c0, int64_t c1, float* v) {
  using F = Wino<MT>;
  constexpr int A = F::kA;
  const int64_t CT = p.C * panel_cols(t1 - t0), HW = p.H * p.W;
  for (int64_t tb = t0; tb < t1; tb += kLanes) {
    const int nl = static_cast<int>(std::min<int64_t>(kLanes, t1 - tb));
    int64_t base[kLanes], ys[kLanes], xs[kLanes];
    bool inside[kLanes];
    for (int l = 0; l < nl; ++l) {
      int64_t n, y0, x0;
      tile_origin(p, tb + l, &n, &y0, &x0);
      ys[l] = y0 - p.pt;
      xs[l] = x0 - p.pl;
      base[l] = n * p.C * HW;
      inside[l] = ys[l] >= 0 && xs[l] >= 0 && ys[l] + A <= p.H && xs[l] + A <= p.W;
    }
    // Eight tiles side by side in one tile row: lane l's window starts 4 l columns on, so each
    // (i, j) is a stride-4 run of one input row, loaded lanes-innermost (vectorisable), instead
    // of lane by lane. Where the run touches the padding (the first and last groups of a row,
    // the first and last tile rows: 30% of the groups at 224 px) its rows are first copied into
    // a zero-padded strip, so the same loads serve.
    bool run = nl == kLanes, inside_all = true;
    for (int l = 0; l < nl && run; ++l) {
      run = base[l] == base[0] && ys[l] == ys[0] && xs[l] == xs[0] + MT * l;
      inside_all = inside_all && inside[l];
    }
    constexpr int64_t kSpan = MT * (kLanes - 1) + A, kStrip = (kSpan + 15) / 16 * 16;
    const int64_t xa = std::max<int64_t>(0, xs[0]), xb = std::min<int64_t>(p.W, xs[0] + kSpan);
    for (int64_t c = c0; c < c1; ++c) {
      float d[A][A][kLanes];
      if (run) {
        const float* xc = x + base[0] + c * HW;
        const float* src0 = xc + ys[0] * p.W + xs[0];
        int64_t stride = p.W;
        float strip[A][kStrip];
        if (!inside_all) {
          for (int i = 0; i < A; ++i) {
            std::fill(strip[i], strip[i] + kStrip, 0.f);
            const int64_t yy = ys[0] + i;
            if (yy >= 0 && yy < p.H && xb > xa)
              std::copy(xc + yy * p.W + xa, xc + yy * p.W + xb, strip[i] + (xa - xs[0]));
          }
          src0 = strip[0];
          stride = kStrip;
        }
        bool done = false;
#ifdef ONNXPLAIN_WINO_AVX512
        if constexpr (MT == 4) {
          if (has_avx512()) gather_run_avx512(src0, stride, d), done = true;
        }
#endif
        for (int i = 0; i < A && !done; ++i) {
          const float* row = src0 + i * stride;
          for (int j = 0; j < A; ++j)
            for (int l = 0; l < kLanes; ++l) d[i][j][l] = row[MT * l + j];
        }
      } else {
        for (int l = 0; l < kLanes; ++l) {
          if (l >= nl) {
            for (int i = 0; i < A; ++i)
              for (int j = 0; j < A; ++j) d[i][j][l] = 0.f;
            continue;
          }
          const float* xc = x + base[l] + c * HW;
          if (inside[l]) {
            const float* src = xc + ys[l] * p.W + xs[l];
            for (int i = 0; i < A; ++i)
              for (int j = 0; j < A; ++j) d[i][j][l] = src[i * p.W + j];
          } else {
            for (int i = 0; i < A; ++i)
              for (int j = 0; j < A; ++j) {
                const int64_t yy = ys[l] + i, xx = xs[l] + j;
                d[i][j][l] = yy >= 0 && yy < p.H && xx >= 0 && xx < p.W ? xc[yy * p.W + xx] : 0.f;
              }
          }
        }
      }
      // e = B^T d (down each column j), then r = e B (along each row i).
      float e[A][A][kLanes];
      for (int j = 0; j < A; ++j) {
        const float* col[A] = {d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]};
        float* ecol[A] = {e[0][j], e[1][j], e[2][j], e[3][j], e[4][j], e[5][j]};
        F::input_1d(col, ecol, kLanes);
      }
      float r[A][A][kLanes];
      for (int i = 0; i < A; ++i) {
        const float* row[A] = {e[i][0], e[i][1], e[i][2], e[i][3], e[i][4], e[i][5]};
        float* rrow[A] = {r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5]};
        F::input_1d(row, rrow, kLanes);
      }
      float* vt = v + panel_b_index(c, tb - t0, p.C);
      // Stores with a fixed count (the zero lanes of a partial group included): with a variable
      // one GCC emitted `rep movs`, whose start-up cost for 8 floats was 40% of this function.
      for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
          float* dst = vt + (i * A + j) * CT;
          for (int l = 0; l < kLanes; ++l) dst[l] = r[i][j][l];
        }
    }
  }
}

// y for the tiles [t0, t1) of every output channel in [m0, m1), from mo[xi, m, t - t0] (rows of
// panel_cols(t1 - t0) floats).
template <int MT>
void transform_output(const Plan<MT>& p, const float* mo, const float* bias, int64_t t0, int64_t t1, int64_t m0,
                      int64_t m1, float* y) {
  using F = Wino<MT>;
  constexpr int A = F::kA;
  const int64_t tc = panel_cols(t1 - t0), MTc = p.M * tc, P = p.Ho * p.Wo;
  for (int64_t tb = t0; tb < t1; tb += kLanes) {
    const int nl = static_cast<int>(std::min<int64_t>(kLanes, t1 - tb));
    int64_t base[kLanes], ys[kLanes], xs[kLanes];
    for (int l = 0; l < nl; ++l) {
      int64_t n;
      tile_origin(p, tb + l, &n, &ys[l], &xs[l]);
      base[l] = n * p.M * P;
    }
    bool row_run = nl == kLanes;
    for (int l = 0; l < nl && row_run; ++l)
      row_run = base[l] == base[0] && ys[l] == ys[0] && xs[l] == xs[0] + MT * l && ys[l] + MT <= p.Ho &&
                xs[l] + MT <= p.Wo;
    for (int64_t m = m0; m < m1; ++m) {
      const float b0 = bias ? bias[m] : 0.f;
      const float* mt = mo + m * tc + (tb - t0);
      float in[A][A][kLanes];
      for (int k = 0; k < A; ++k)
        for (int j = 0; j < A; ++j) {
          const float* src = mt + (k * A + j) * MTc;
          if (nl == kLanes)  // fixed count: one vector load, no per-lane test
            for (int l = 0; l < kLanes; ++l) in[k][j][l] = src[l];
          else
            for (int l = 0; l < kLanes; ++l) in[k][j][l] = l < nl ? src[l] : 0.f;
        }
      // e = A^T in (down each column j), then o = e A + bias (along each row i).
      float e[MT][A][kLanes];
      for (int j = 0; j < A; ++j) {
        const float* col[A] = {in[0][j], in[1][j], in[2][j], in[3][j], in[4][j], in[5][j]};
        float* ecol[MT] = {e[0][j], e[1][j], e[2][j], e[3][j]};
        F::output_1d(col, ecol, 0.f, kLanes);
      }
      float o[MT][MT][kLanes];
      for (int i = 0; i < MT; ++i) {
        const float* row[A] = {e[i][0], e[i][1], e[i][2], e[i][3], e[i][4], e[i][5]};
        float* orow[MT] = {o[i][0], o[i][1], o[i][2], o[i][3]};
        F::output_1d(row, orow, b0, kLanes);
      }
      if (p.relu)
        for (int i = 0; i < MT; ++i)
          for (int j = 0; j < MT; ++j)
            for (int l = 0; l < kLanes; ++l) o[i][j][l] = o[i][j][l] < 0.f ? 0.f : o[i][j][l];
      if (row_run) {
        // Eight whole tiles side by side: each output row is one run of 4 * 8 floats, stored
        // with fixed counts (the bounds checks per entry were most of this function's time).
        float* ym = y + base[0] + m * P + ys[0] * p.Wo + xs[0];
#ifdef ONNXPLAIN_WINO_AVX512
        if constexpr (MT == 4) {
          if (has_avx512()) {
            scatter_run_avx512(o, ym, p.Wo);
            continue;
          }
        }
#endif
        for (int i = 0; i < MT; ++i)
          for (int l = 0; l < kLanes; ++l)
            for (int j = 0; j < MT; ++j) ym[i * p.Wo + MT * l + j] = o[i][j][l];
        continue;
      }
      for (int l = 0; l < nl; ++l) {
        float* ym = y + base[l] + m * P;
        for (int i = 0; i < MT && ys[l] + i < p.Ho; ++i)
          for (int j = 0; j < MT && xs[l] + j < p.Wo; ++j) ym[(ys[l] + i) * p.Wo + xs[l] + j] = o[i][j][l];
      }
    }
  }
}

// mo[xi] = U[xi] V[xi] for a chunk of tc tiles (every operand in panel layout, rows of
// panel_cols(tc) floats).
template <int MT>
void product(const Plan<MT>& p, int xi, int64_t tc, const float* u, const float* v, float* mo) {
  const int64_t tcp = panel_cols(tc);
  panel_gemm(p.M, tc, p.C, u + xi * panel_rows(p.M) * p.C, v + xi * p.C * tcp, mo + xi * p.M * tcp, tcp);
}

template <int MT>
void conv_tiles(const Plan<MT>& p, const float* x, const float* u, const float* bias, float* y, int64_t t0, int64_t t1,
                float* v, float* mo) {
  constexpr int AA = Plan<MT>::AA;
  transform_input(p, x, t0, t1, 0, p.C, v);
  for (int xi = 0; xi < AA; ++xi) product(p, xi, t1 - t0, u, v, mo);
  transform_output(p, mo, bias, t0, t1, 0, p.M, y);
}

template <int MT>
void run(const ConvShape& s, const float* x, const float* u, const float* bias, float* y, int threads, bool relu) {
  Plan<MT> p(s);
  p.relu = relu;
  constexpr int AA = Plan<MT>::AA;
  const int64_t chunks = (p.T + p.Tc - 1) / p.Tc;
  const int64_t tcp = panel_cols(p.Tc);
  const auto need = static_cast<std::size_t>(AA * (p.C + p.M) * tcp);
  if (threads > 1 && chunks >= 2 * threads) {
    // Each thread transforms, multiplies and writes back whole chunks.
#pragma omp parallel num_threads(threads)
    {
      float* buf = thread_scratch(need, ScratchSlot::Winograd);
#pragma omp for schedule(dynamic, 1)
      for (int64_t k = 0; k < chunks; ++k) {
        const int64_t t0 = k * p.Tc, t1 = std::min(p.T, t0 + p.Tc);
        conv_tiles(p, x, u, bias, y, t0, t1, buf, buf + AA * p.C * tcp);
      }
    }
    return;
  }
  // Few tiles: the transforms split over channels and the AA independent GEMMs over threads.
  float* v = thread_scratch(need, ScratchSlot::Winograd);
  float* mo = v + AA * p.C * tcp;
  for (int64_t t0 = 0; t0 < p.T; t0 += p.Tc) {
    const int64_t t1 = std::min(p.T, t0 + p.Tc), tc = t1 - t0;
    parallel_for(
        p.C, threads, [&](int64_t c0, int64_t c1) { transform_input(p, x, t0, t1, c0, c1, v); },
        std::max<int64_t>(1, kParallelGrain / (tc * AA)));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int xi = 0; xi < AA; ++xi) product(p, xi, tc, u, v, mo);
    parallel_for(
        p.M, threads, [&](int64_t m0, int64_t m1) { transform_output(p, mo, bias, t0, t1, m0, m1, y); },
        std::max<int64_t>(1, kParallelGrain / (tc * AA)));
  }
}

}  // namespace

bool winograd_applies(const ConvShape& s) {
  const Window3& w = s.win;
  if (s.groups != 1 || w.k[0] != 1 || w.in[0] != 1 || w.k[1] != 3 || w.k[2] != 3) return false;
  for (int i = 1; i < 3; ++i)
    if (w.s[i] != 1 || w.d[i] != 1) return false;
  // With fewer channels the (M x C) * (C x tiles) products are too thin to run near peak and the
  // transforms dominate; measured on AVX2 by bench/conv_layers.py (when the products still ran
  // through OpenBLAS; panel_gemm only made them faster): a win from 64 channels at any size
  // (with cache-sized chunks, chunk_floats).
  // With few tiles (a 7x7 map at batch 1 is 4 tiles) the products read the transformed weight,
  // 4x the weight, for too few columns: memory-bound, slower than the direct product. From 16
  // tiles (14x14 at batch 1) it pays: equal for one 512-channel layer, 2x faster for the stacked
  // products of the LRP rules (1024 channels).
  const int64_t narrow = std::min(s.in_channels, s.out_channels);
  const int64_t tiles = s.batch * ((w.out[1] + kTile - 1) / kTile) * ((w.out[2] + kTile - 1) / kTile);
  // 32-channel layers (the small CNNs at batch 64) gain from 256 tiles on, 1.1-1.3x over the
  // direct small-map product (kernels/small_conv.hpp); with fewer the transforms and the split
  // over threads cost more (8 x 16x16 maps: 2x slower).
  return (tiles >= 16 && narrow >= 64) || (tiles >= 256 && narrow >= 32);
}

int64_t winograd_weight_floats(const ConvShape& s) {
  constexpr int64_t a = Wino<kTile>::kA;
  return a * a * panel_rows(s.out_channels) * s.in_channels;
}

void winograd_transform_weight(const ConvShape& s, const float* w, float* u, int threads) {
  transform_weight<kTile>(s, w, u, threads);
}

void winograd_conv(const ConvShape& s, const float* x, const float* u, const float* bias, float* y, int threads,
                   bool relu) {
  if (s.batch == 0 || s.out_channels == 0) return;
  run<kTile>(s, x, u, bias, y, threads, relu);
}

}  // namespace onnxplain::kernels
