#include "kernels/small_conv.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/panel_gemm.hpp"
#include "kernels/scratch.hpp"

namespace onnxplain::kernels {

namespace {

// Column matrix of one unit of work (floats): a few panels of K x 16 that stay in L2 while the
// product streams the weight panels past them.
constexpr int64_t kUnitFloats = int64_t{48} << 10;
constexpr int64_t kMaxUnitPanels = 16;
// Padded input images kept per thread (floats), at least the ones one unit reads.
constexpr int64_t kWindowFloats = int64_t{64} << 10;
// Weight floats per group up to which small_conv_applies (256 KiB: in L2 beside a unit's panels).
constexpr int64_t kMaxWeightFloats = int64_t{64} << 10;
// Multiply-adds below which a layer runs on one thread: an OpenMP region costs a few
// microseconds, a conv on a 2x2 map at batch 1 takes less.
constexpr int64_t kParallelMacs = int64_t{1} << 18;

// The layer's geometry in the terms of the padded 2-D planes (axis 0 of Window3 is 1 here).
struct Geom {
  int64_t N, C, M, G, Cg, Mg, K, CgK, P, NC, IN;
  int64_t in1, in2, out2, s1, s2, pb1, pb2;
  int64_t Hp, Wp, plane, img;  // padded plane, one padded image (Cg planes)
  int L;                       // columns per contiguous run of a panel: 16, out2 (divides 16) or 1
  int64_t unit_panels, win_images;
  std::vector<int64_t> tap_off;  // offset of tap t from the window's top-left in a padded plane
};

Geom make_geom(const ConvShape& s) {
  const Window3& w = s.win;
  Geom g{};
  g.N = s.batch, g.C = s.in_channels, g.M = s.out_channels, g.G = s.groups;
  g.Cg = g.C / g.G, g.Mg = g.M / g.G, g.K = w.k_size(), g.CgK = g.Cg * g.K;
  g.P = w.out_size(), g.NC = g.N * g.P, g.IN = w.in_size();
  g.in1 = w.in[1], g.in2 = w.in[2], g.out2 = w.out[2], g.s1 = w.s[1], g.s2 = w.s[2];
  g.pb1 = w.pb[1], g.pb2 = w.pb[2];
  g.Hp = w.pb[1] + w.in[1] + w.pe[1];
  g.Wp = w.pb[2] + w.in[2] + w.pe[2];
  g.plane = g.Hp * g.Wp, g.img = g.Cg * g.plane;
  g.L = 1;
  if (g.s2 == 1) {
    if (g.out2 % kPanelCols == 0)
      g.L = kPanelCols;
    else if (kPanelCols % g.out2 == 0)
      g.L = static_cast<int>(g.out2);
  }
  g.unit_panels = std::clamp<int64_t>(kUnitFloats / std::max<int64_t>(1, g.CgK * kPanelCols), 1, kMaxUnitPanels);
  const int64_t unit_images = g.unit_panels * kPanelCols / g.P + 2;
  g.win_images = std::min(g.N, std::max(unit_images, kWindowFloats / std::max<int64_t>(1, g.img)));
  g.tap_off.resize(static_cast<std::size_t>(g.K));
  for (int64_t ky = 0; ky < w.k[1]; ++ky)
    for (int64_t kx = 0; kx < w.k[2]; ++kx)
      g.tap_off[static_cast<std::size_t>(ky * w.k[2] + kx)] = ky * w.d[1] * g.Wp + kx * w.d[2];
  return g;
}

// Images [n0, n1) of group grp, zero-padded, into win ([image][channel][Hp][Wp]).
void pad_images(const Geom& g, const float* x, int64_t grp, int64_t n0, int64_t n1, float* win) {
  const int64_t pe2 = g.Wp - g.pb2 - g.in2;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < g.Cg; ++c) {
      const float* src = x + (n * g.C + grp * g.Cg + c) * g.IN;
      float* dst = win + (n - n0) * g.img + c * g.plane;
      for (int64_t iy = 0; iy < g.Hp; ++iy, dst += g.Wp) {
        const int64_t sy = iy - g.pb1;
        if (sy < 0 || sy >= g.in1) {
          for (int64_t i = 0; i < g.Wp; ++i) dst[i] = 0.f;
          continue;
        }
        // Plain loops: rows of 4-32 floats, where a call to memcpy / memset per row cost as much
        // as the copy (an eighth of a 32-channel layer on 8x8 maps).
        const float* __restrict s_row = src + sy * g.in2;
        float* __restrict d_row = dst;
        for (int64_t i = 0; i < g.pb2; ++i) d_row[i] = 0.f;
        for (int64_t i = 0; i < g.in2; ++i) d_row[g.pb2 + i] = s_row[i];
        for (int64_t i = g.pb2 + g.in2; i < g.pb2 + g.in2 + pe2; ++i) d_row[i] = 0.f;
      }
    }
}

// One K x 16 panel of the column matrix: row c*K + t holds, for each run r of L columns, the L
// floats at base[r] + tap_off[t] of padded plane c. L is a compile-time constant so that each
// run is a fixed-size (vector) copy.
template <int L>
void build_panel(const Geom& g, const float* win, const int64_t* base, float* bq) {
  constexpr int R = kPanelCols / L;
  const int64_t* tap = g.tap_off.data();
  for (int64_t c = 0; c < g.Cg; ++c) {
    const float* xc = win + c * g.plane;
    for (int64_t t = 0; t < g.K; ++t, bq += kPanelCols) {
      const float* src = xc + tap[t];
      // A fixed-size memcpy is one or two vector moves; the equivalent loop stayed scalar (GCC
      // cannot rule out that bq and src overlap).
      for (int r = 0; r < R; ++r) std::memcpy(bq + r * L, src + base[r], sizeof(float) * L);
    }
  }
}

// Columns [j0, j1) of group grp (column j = image j / P, position j % P), j0 a multiple of 16:
// the padded window (reused while it covers the unit), the column panels, one panel product
// into tmp, then y = tmp + bias scattered back per image.
struct Worker {
  const Geom& g;
  const float* x;
  const float* packed;
  const float* bias;
  float* y;
  float* bbuf;  // unit_panels * 16 * CgK
  float* win;   // win_images * img
  float* tmp;   // Mg * unit_panels * 16
  int64_t win_grp = -1, win_n0 = 0, win_n1 = 0;

  void unit(int64_t grp, int64_t j0, int64_t j1) {
    const int64_t n_lo = j0 / g.P, n_hi = std::min(g.N, (j1 - 1) / g.P + 1);
    if (grp != win_grp || n_lo < win_n0 || n_hi > win_n1) {
      win_grp = grp, win_n0 = n_lo, win_n1 = std::min(g.N, n_lo + g.win_images);
      pad_images(g, x, grp, win_n0, win_n1, win);
    }
    const int64_t panels = (j1 - j0 + kPanelCols - 1) / kPanelCols;
    for (int64_t q = 0; q < panels; ++q) {
      int64_t base[kPanelCols];
      const int64_t jq = j0 + q * kPanelCols;
      for (int r = 0; r < kPanelCols / g.L; ++r) {
        const int64_t j = jq + r * g.L;
        if (j >= g.NC) {
          base[r] = 0;  // past the last column: any readable float, the product's column is not stored
          continue;
        }
        const int64_t n = j / g.P, p = j % g.P, oy = p / g.out2, ox = p % g.out2;
        base[r] = (n - win_n0) * g.img + oy * g.s1 * g.Wp + ox * g.s2;
      }
      float* bq = bbuf + q * g.CgK * kPanelCols;
      switch (g.L) {
        case 16: build_panel<16>(g, win, base, bq); break;
        case 8: build_panel<8>(g, win, base, bq); break;
        case 4: build_panel<4>(g, win, base, bq); break;
        case 2: build_panel<2>(g, win, base, bq); break;
        default: build_panel<1>(g, win, base, bq); break;
      }
    }
    const int64_t ldt = panels * kPanelCols;
    const float* a = packed + grp * panel_rows(g.Mg) * g.CgK;
    panel_gemm(g.Mg, j1 - j0, g.CgK, a, bbuf, tmp, ldt);
    for (int64_t j = j0; j < j1;) {
      const int64_t n = j / g.P, p0 = j % g.P, len = std::min(j1 - j, g.P - p0);
      for (int64_t m = 0; m < g.Mg; ++m) {
        const float b0 = bias ? bias[grp * g.Mg + m] : 0.f;
        const float* src = tmp + m * ldt + (j - j0);
        float* dst = y + (n * g.M + grp * g.Mg + m) * g.P + p0;
        for (int64_t i = 0; i < len; ++i) dst[i] = src[i] + b0;
      }
      j += len;
    }
  }

  // Panels [i0, i1) of the list of all groups' panels (group-major), in units.
  void range(int64_t i0, int64_t i1) {
    const int64_t per_group = (g.NC + kPanelCols - 1) / kPanelCols;
    for (int64_t i = i0; i < i1;) {
      const int64_t grp = i / per_group, q = i % per_group;
      const int64_t e = std::min({i1, (grp + 1) * per_group, i + g.unit_panels});
      unit(grp, q * kPanelCols, std::min(g.NC, (e - grp * per_group) * kPanelCols));
      i = e;
    }
  }
};

}  // namespace

bool small_conv_applies(const ConvShape& s) {
  const Window3& w = s.win;
  if (s.groups > 1 && s.groups == s.in_channels) return false;  // depthwise
  if (w.in[0] != 1 || w.out[0] != 1 || w.k[0] != 1) return false;
  bool pointwise = true;
  for (int i = 0; i < 3; ++i) {
    if (w.pb[i] < 0 || w.pe[i] < 0 || w.s[i] < 1 || w.d[i] < 1) return false;
    pointwise = pointwise && w.k[i] == 1 && w.s[i] == 1 && w.pb[i] == 0 && w.pe[i] == 0;
  }
  // A 1x1 convolution's column matrix is its input: sgemm reads it in place.
  if (pointwise) return false;
  const int64_t P = w.out_size();
  // A weight beyond L2 is streamed from memory once per unit of columns (the units are sized for
  // the column matrix): ResNet-50's 512 -> 512 layers on 7x7 maps ran at 112 GF/s this way,
  // 1.7x onnxruntime, where sgemm's own blocking over K keeps pieces of the weight in cache.
  const int64_t weight_floats = s.out_channels / s.groups * (s.in_channels / s.groups) * w.k_size();
  if (weight_floats > kMaxWeightFloats) return false;
  return s.batch > 0 && P > 0 && P <= kSmallConvMaxPositions && s.out_channels > 0 && s.in_channels > 0;
}

bool small_conv_beats_winograd(const ConvShape& s) {
  if (!small_conv_applies(s)) return false;
  const Window3& w = s.win;
  const int64_t tiles = ((w.out[1] + 3) / 4) * ((w.out[2] + 3) / 4);
  return 2 * w.out_size() < tiles * 16;
}

int64_t small_conv_weight_floats(const ConvShape& s) {
  const int64_t Mg = s.out_channels / s.groups, CgK = s.in_channels / s.groups * s.win.k_size();
  return s.groups * panel_rows(Mg) * CgK;
}

void small_conv_pack_weight(const ConvShape& s, const float* w, float* packed) {
  const int64_t G = s.groups, Mg = s.out_channels / G, CgK = s.in_channels / G * s.win.k_size();
  const int64_t rows = panel_rows(Mg);
  for (int64_t grp = 0; grp < G; ++grp) {
    float* a = packed + grp * rows * CgK;
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t k = 0; k < CgK; ++k)
        a[panel_a_index(m, k, CgK)] = m < Mg ? w[(grp * Mg + m) * CgK + k] : 0.f;
  }
}

void small_conv_forward(const ConvShape& s, const float* x, const float* packed, const float* bias, float* y,
                        int threads) {
  const Geom g = make_geom(s);
  const int64_t items = g.G * ((g.NC + kPanelCols - 1) / kPanelCols);
  const int64_t unit_cols = g.unit_panels * kPanelCols;
  const auto scratch = static_cast<std::size_t>(unit_cols * g.CgK + g.win_images * g.img + g.Mg * unit_cols);
  auto run = [&](int64_t i0, int64_t i1) {
    float* buf = thread_scratch(scratch, ScratchSlot::ConvWorker);
    Worker wk{g, x, packed, bias, y, buf, buf + unit_cols * g.CgK, buf + unit_cols * g.CgK + g.win_images * g.img};
    wk.range(i0, i1);
  };
  const int64_t macs = g.NC * g.M * g.CgK;
  const int T = static_cast<int>(std::min<int64_t>({threads, items, std::max<int64_t>(1, macs / kParallelMacs)}));
  if (T <= 1) {
    run(0, items);
    return;
  }
  // One region per layer, each thread a contiguous run of panels (its images' padded copies are
  // made once and reused across its units).
#pragma omp parallel for num_threads(T) schedule(static)
  for (int t = 0; t < T; ++t) run(items * t / T, items * (t + 1) / T);
}

}  // namespace onnxplain::kernels
