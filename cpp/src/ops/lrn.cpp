// LRN — https://onnx.ai/onnx/operators/onnx__LRN.html (opsets 1, 13; 13 only adds bfloat16).
// Local response normalisation across channels (AlexNet, CaffeNet, GoogLeNet) of X (N, C, D...):
//   s[n, c, d] = bias + alpha / size * sum_{c' = c - lo}^{c + hi} X[n, c', d]^2 (channels outside
//                [0, C) skipped), lo = floor((size - 1) / 2), hi = ceil((size - 1) / 2),
//   Y = X * s^-beta.
// size is required (> 0); alpha 1e-4, beta 0.75, bias 1 by default. Dividing alpha by size is
// what torch.nn.functional.local_response_norm does too (it averages the window, padding with
// zeros), and for odd sizes the windows agree; for an even size the spec's window reaches one
// channel further up than down, torch's one further down (onnxruntime refuses even sizes and
// inputs of rank != 4; here any size > 0 and rank >= 2 follow the spec). Each window is summed
// afresh (size terms), where onnxruntime slides a running sum over the channels: the results agree
// to rounding on finite inputs, but there a NaN or inf (inf - inf) spreads to every later channel
// of its pixel, while here it reaches only the outputs whose window holds it.
// VJP (t = g * Y / s = g X s^(-beta-1)): dX[c] = g[c] s[c]^-beta
//   - 2 alpha beta / size * X[c] * sum over the outputs c' whose window holds c (c - hi <= c' <=
//   c + lo) of t[c'].
// Kind: Normalization (LRP composites pass relevance through it, as Zennit and iNNvestigate
// treat local normalisation layers; the gradient family and DeepLIFT use the exact VJP, so
// DeepLIFT's contributions sum to the difference only up to LRN's nonlinearity, as in Captum).
// Spatially pointwise (the window runs over channels only), so occlusion's local forward passes it.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class LRN final : public Op {
 public:
  explicit LRN(const NodeDesc& d)
      : Op(d),
        size_(d.attrs->require_int("size")),
        alpha_(d.attrs->get_float("alpha", 1e-4f)),
        beta_(d.attrs->get_float("beta", 0.75f)),
        bias_(d.attrs->get_float("bias", 1.f)) {
    if (size_ <= 0) fail_format("size must be positive, got " + std::to_string(size_));
    lo_ = (size_ - 1) / 2;
    hi_ = size_ - 1 - lo_;
  }
  OpKind kind() const override { return OpKind::Normalization; }
  // Y = X * s^-beta with s >= bias > 0 keeps every sign.
  bool keeps_nonneg() const override { return bias_ > 0.f && alpha_ >= 0.f; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/false);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype));
    if (x.has_rank && x.rank() < 2)
      fail_shape("X must have rank >= 2 (N, C, ...), got shape " + shape_str(x.shape));
    ValueInfo o = x;
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Geometry geo = geometry(x);
    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float* px = x.f32();
    float* py = out[0].f32();
    const int64_t C = geo.C, inner = geo.inner;
    for_blocks(geo, ctx.threads(), [&](int64_t n, int64_t j0, int64_t m, float* s) {
      const int64_t base = n * C * inner + j0;
      scales(px + base, C, inner, m, s);
      for (int64_t c = 0; c < C; ++c) {
        const float* xc = px + base + c * inner;
        const float* sc = s + c * m;
        float* yc = py + base + c * inner;
        for (int64_t j = 0; j < m; ++j) yc[j] = xc[j] * std::pow(sc[j], -beta_);
      }
    });
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    const Geometry geo = geometry(x);
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    const float* px = x.f32();
    const float* pg = g.f32();
    float* pd = gin[0].f32();
    const int64_t C = geo.C, inner = geo.inner;
    const float k = 2.f * alpha_ * beta_ / static_cast<float>(size_);
    for_blocks(geo, ctx.threads(), [&](int64_t n, int64_t j0, int64_t m, float* s) {
      const int64_t base = n * C * inner + j0;
      scales(px + base, C, inner, m, s);
      // s becomes s^-beta, and t = g x s^(-beta-1) goes to the second half of the scratch.
      float* t = s + C * m;
      for (int64_t c = 0; c < C; ++c) {
        const float* xc = px + base + c * inner;
        const float* gc = pg + base + c * inner;
        float* sc = s + c * m;
        float* tc = t + c * m;
        for (int64_t j = 0; j < m; ++j) {
          const float p = std::pow(sc[j], -beta_);
          tc[j] = gc[j] * xc[j] * p / sc[j];
          sc[j] = p;
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        const float* xc = px + base + c * inner;
        const float* gc = pg + base + c * inner;
        const float* sc = s + c * m;
        float* dc = pd + base + c * inner;
        const int64_t a = std::max<int64_t>(0, c - hi_), b = std::min<int64_t>(C - 1, c + lo_);
        // The window sum accumulates in dc itself, row by row (contiguous, vectorised).
        std::fill(dc, dc + m, 0.f);
        for (int64_t q = a; q <= b; ++q) {
          const float* tq = t + q * m;
          for (int64_t j = 0; j < m; ++j) dc[j] += tq[j];
        }
        for (int64_t j = 0; j < m; ++j) dc[j] = gc[j] * sc[j] - k * xc[j] * dc[j];
      }
    });
  }

 private:
  struct Geometry {
    int64_t N = 0, C = 0, inner = 0, blk = 0, nblk = 0;
  };

  Geometry geometry(const Tensor& x) const {
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    if (x.rank() < 2) fail_shape("X must have rank >= 2 (N, C, ...), got shape " + shape_str(x.shape()));
    Geometry g;
    g.N = x.dim(0);
    g.C = x.dim(1);
    g.inner = g.N * g.C == 0 ? 0 : x.numel() / (g.N * g.C);
    // Work items: (image, block of positions); a block spans every channel, so its scratch
    // (s and t, 2 C blk floats) stays in cache.
    g.blk = std::min<int64_t>(std::max<int64_t>(g.inner, 1), 256);
    g.nblk = g.inner == 0 ? 0 : (g.inner + g.blk - 1) / g.blk;
    return g;
  }

  // f(n, first position, positions, scratch of 2 C m floats) for every work item, in parallel.
  template <class F>
  void for_blocks(const Geometry& g, int threads, const F& f) const {
    const int64_t items = g.N * g.nblk;
    if (items == 0 || g.C == 0) return;
    const int64_t per_item = 4 * g.C * g.blk * size_;  // rough work per item, for the grain
    kernels::parallel_for(
        items, threads,
        [&](int64_t b, int64_t e) {
          std::vector<float> scratch(static_cast<std::size_t>(2 * g.C * g.blk));
          for (int64_t w = b; w < e; ++w) {
            const int64_t n = w / g.nblk, j0 = (w % g.nblk) * g.blk;
            f(n, j0, std::min(g.blk, g.inner - j0), scratch.data());
          }
        },
        std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(per_item, 1)));
  }

  // s[c * m + j] = bias + alpha / size * (sum of x^2 over c's window) for positions j < m of one
  // image (x at its first position of channel 0, rows `inner` apart).
  void scales(const float* x, int64_t C, int64_t inner, int64_t m, float* s) const {
    const float k = alpha_ / static_cast<float>(size_);
    for (int64_t c = 0; c < C; ++c) {
      float* sc = s + c * m;
      std::fill(sc, sc + m, 0.f);
      const int64_t a = std::max<int64_t>(0, c - lo_), b = std::min<int64_t>(C - 1, c + hi_);
      for (int64_t q = a; q <= b; ++q) {
        const float* xq = x + q * inner;
        for (int64_t j = 0; j < m; ++j) sc[j] += xq[j] * xq[j];
      }
      for (int64_t j = 0; j < m; ++j) sc[j] = bias_ + k * sc[j];
    }
  }

  int64_t size_;
  float alpha_, beta_, bias_;
  int64_t lo_ = 0, hi_ = 0;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(LRN, LRN)
