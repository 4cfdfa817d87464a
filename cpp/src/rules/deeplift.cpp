#include "rules/deeplift.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/parallel.hpp"
#include "rules/linear_node.hpp"

namespace onnxplain::rules {
namespace {

constexpr float kNearZero = 1e-10f;

/// Elements of one half of a stacked tensor (the reference of element i is at i + half).
int64_t half_of(const Tensor& t, int64_t batch, const NodeValues& v) {
  if (t.rank() < 1 || t.dim(0) != batch)
    throw ShapeError(v.op->context() + ": DeepLIFT runs inputs and references stacked on axis 0 (batch " +
                     std::to_string(batch) + "), but this node sees shape " + shape_str(t.shape()) +
                     "; models whose values do not keep the batch on axis 0 are not supported");
  return t.numel() / 2;
}

Shape half_shape(const Tensor& t) {
  Shape s = t.shape();
  s[0] /= 2;
  return s;
}

/// The op's VJP for the data input 0 only.
Tensor vjp0(const NodeValues& v, const Tensor& g, ExecContext& ctx) {
  std::vector<const Tensor*> gout(v.out.size(), nullptr);
  gout[0] = &g;
  std::vector<bool> need(v.in.size(), false);
  need[0] = true;
  std::vector<Tensor> gin(v.in.size());
  v.op->vjp(v.in, v.out, gout, need, gin, ctx);
  return gin[0];
}

/// Whether pred(i) holds for some i in [0, n), scanned in parallel blocks that stop once found.
template <class P>
bool any_index(int64_t n, int threads, P pred) {
  int found = 0;
  kernels::parallel_for(n, threads, [&](int64_t b, int64_t e) {
    bool f = false;
    for (int64_t i = b; i < e && !f; ++i) f = pred(i);
    if (f) {
#pragma omp atomic write
      found = 1;
    }
  });
  return found != 0;
}

/// The shared start of the element-wise rules: false (zeros filled in) when input 0 gets nothing.
bool reaches_input0(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                    std::vector<Tensor>& rin) {
  if (rin.size() < need.size()) rin.resize(need.size());
  if (need.empty() || !need[0] || rout.empty() || !rout[0] || !v.in[0]) {
    zero_missing(v, need, rin);
    return false;
  }
  return true;
}

bool halves_equal(const Tensor& r) {
  const int64_t n = r.numel() / 2;
  return std::memcmp(r.f32(), r.f32() + n, sizeof(float) * static_cast<std::size_t>(n)) == 0;
}

std::pair<Tensor, Tensor> split_of(const DeepLiftContext& c, const Tensor& w, int threads);

Tensor clamp_sign(const Tensor& w, bool positive, int threads) {
  Tensor t(DType::Float32, w.shape());
  const float* p = w.f32();
  float* q = t.f32();
  kernels::parallel_for(w.numel(), threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) q[i] = positive ? std::max(p[i], 0.f) : std::min(p[i], 0.f);
  });
  return t;
}

class NonlinearRule final : public Rule {
 public:
  explicit NonlinearRule(DeepLiftContextPtr c) : c_(std::move(c)) {}
  std::string name() const override { return "deeplift"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (!reaches_input0(v, rout, need, rin)) return;
    const Tensor& x = *v.in[0];
    const Tensor& y = *v.out[0];
    if (x.shape() != y.shape())
      throw ShapeError(v.op->context() + ": DeepLIFT's nonlinear rules need an element-wise op (input " +
                       shape_str(x.shape()) + ", output " + shape_str(y.shape()) + ")");
    const int64_t n = half_of(x, c_->batch, v);
    const float* px = x.f32();
    const float* py = y.f32();
    const float* pr = rout[0]->f32();
    auto it = c_->dz_pos.find(v.node);
    // f'(x), only where some input (or, for RevealCancel, some part) barely moved from the
    // reference: an element-wise VJP on ones.
    const float* pp0 = it != c_->dz_pos.end() ? it->second.f32() : nullptr;
    const bool tiny = any_index(n, ctx.threads(), [&](int64_t i) {
      const float dx = px[i] - px[i + n];
      return std::fabs(dx) < kNearZero || (pp0 && (std::fabs(pp0[i]) < kNearZero || std::fabs(dx - pp0[i]) < kNearZero));
    });
    Tensor slope;
    if (tiny) {
      Tensor ones(DType::Float32, y.shape());
      std::fill(ones.f32(), ones.f32() + ones.numel(), 1.f);
      slope = vjp0(v, ones, ctx);
    }
    const float* ps = tiny ? slope.f32() : nullptr;
    Tensor out(DType::Float32, x.shape());
    float* q = out.f32();
    if (it == c_->dz_pos.end()) {
      // Rescale: one multiplier Δy/Δx for both parts.
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float dx = px[i] - px[i + n];
          const float s = std::fabs(dx) >= kNearZero ? (py[i] - py[i + n]) / dx : ps[i];
          q[i] = pr[i] * s;
          q[i + n] = pr[i + n] * s;
        }
      });
    } else {
      // RevealCancel: f at z₀ + Δz+ and z₀ + Δz- in one call on the stacked shape.
      const float* pp = it->second.f32();
      if (it->second.numel() != n)
        throw ShapeError(v.op->context() + ": internal: RevealCancel's positive part has " +
                         std::to_string(it->second.numel()) + " entries for " + std::to_string(n));
      Tensor shifted(DType::Float32, x.shape());
      float* sh = shifted.f32();
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float dz = px[i] - px[i + n];
          sh[i] = px[i + n] + pp[i];
          sh[i + n] = px[i + n] + (dz - pp[i]);
        }
      });
      std::vector<const Tensor*> in = v.in;
      in[0] = &shifted;
      std::vector<Tensor> fo(v.out.size());
      v.op->forward(in, fo, ctx);
      const float* pf = fo.at(0).f32();
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float fr = py[i + n], fx = py[i], fp = pf[i], fn = pf[i + n];
          const float dzp = pp[i], dzn = (px[i] - px[i + n]) - pp[i];
          const float dyp = 0.5f * ((fp - fr) + (fx - fn)), dyn = 0.5f * ((fn - fr) + (fx - fp));
          const float mp = std::fabs(dzp) >= kNearZero ? dyp / dzp : ps[i];
          const float mn = std::fabs(dzn) >= kNearZero ? dyn / dzn : ps[i];
          // The multiplier of y as a whole (its consumers treat both parts alike).
          q[i] = pr[i] * mp;
          q[i + n] = pr[i] * mn;
        }
      });
    }
    rin[0] = out;
    zero_missing(v, need, rin);
  }

 private:
  DeepLiftContextPtr c_;
};

class MaxPoolRule final : public Rule {
 public:
  explicit MaxPoolRule(DeepLiftContextPtr c) : c_(std::move(c)) {}
  std::string name() const override { return "deeplift.maxpool"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (rin.size() < need.size()) rin.resize(need.size());
    // The inputs that get multipliers: every needed float input (MaxPool has one, a variadic Max
    // or Min up to N; the op's VJP routes each output to its winner among them).
    std::vector<std::size_t> idx;
    for (std::size_t j = 0; j < need.size() && j < v.in.size(); ++j)
      if (need[j] && v.in[j] && v.in[j]->dtype() == DType::Float32) idx.push_back(j);
    if (idx.empty() || rout.empty() || !rout[0]) return zero_missing(v, need, rin);
    const Tensor& y = *v.out[0];
    const Tensor& r = *rout[0];
    const int64_t n = half_of(y, c_->batch, v);
    const float* py = y.f32();
    const bool low = v.op->selects_min();
    std::vector<int64_t> m(idx.size());
    std::vector<Tensor> outs(idx.size());
    std::vector<char> tiny(idx.size());
    bool any_tiny = false;
    for (std::size_t k = 0; k < idx.size(); ++k) {
      const Tensor& x = *v.in[idx[k]];
      m[k] = half_of(x, c_->batch, v);
      outs[k] = Tensor(DType::Float32, x.shape());
      const float* px = x.f32();
      const int64_t mk = m[k];
      tiny[k] = any_index(mk, ctx.threads(), [&](int64_t i) { return std::fabs(px[i] - px[i + mk]) < kNearZero; });
      any_tiny = any_tiny || tiny[k];
    }
    // The op's VJP for the inputs in idx.
    auto vjp_sel = [&](const Tensor& g) {
      std::vector<const Tensor*> gout(v.out.size(), nullptr);
      gout[0] = &g;
      std::vector<bool> nd(v.in.size(), false);
      for (std::size_t j : idx) nd[j] = true;
      std::vector<Tensor> gin(v.in.size());
      v.op->vjp(v.in, v.out, gout, nd, gin, ctx);
      return gin;
    };
    // One part's multipliers rr (n entries) to part `part` of every input: Δy split at the cross
    // extreme c (the larger of y and y_ref for a maximum, the smaller for a minimum), c − y_ref
    // through the input's winner and y − c through the reference's.
    auto one = [&](const float* rr, int64_t part) {
      Tensor gs(DType::Float32, y.shape());
      float* q = gs.f32();
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float c = low ? std::min(py[i], py[i + n]) : std::max(py[i], py[i + n]);
          q[i] = rr[i] * (c - py[i + n]);
          q[i + n] = rr[i] * (py[i] - c);
        }
      });
      const std::vector<Tensor> u = vjp_sel(gs);
      std::vector<Tensor> gg;
      if (any_tiny) {  // the plain gradient, where an input did not move
        Tensor gx = Tensor::zeros(DType::Float32, y.shape());
        std::memcpy(gx.f32(), rr, sizeof(float) * static_cast<std::size_t>(n));
        gg = vjp_sel(gx);
      }
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const int64_t mk = m[k];
        const float* px = v.in[idx[k]]->f32();
        const float* pu = u[idx[k]].f32();
        const float* pg = tiny[k] ? gg[idx[k]].f32() : nullptr;
        float* dst = outs[k].f32() + part * mk;
        kernels::parallel_for(mk, ctx.threads(), [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            const float dx = px[i] - px[i + mk];
            dst[i] = std::fabs(dx) >= kNearZero ? (pu[i] + pu[i + mk]) / dx : pg[i];
          }
        });
      }
    };
    one(r.f32(), 0);
    if (halves_equal(r)) {
      for (std::size_t k = 0; k < idx.size(); ++k)
        std::memcpy(outs[k].f32() + m[k], outs[k].f32(), sizeof(float) * static_cast<std::size_t>(m[k]));
    } else {
      one(r.f32() + n, 1);
    }
    for (std::size_t k = 0; k < idx.size(); ++k) rin[idx[k]] = outs[k];
    zero_missing(v, need, rin);
  }

 private:
  DeepLiftContextPtr c_;
};

class LinearRevealCancelRule final : public Rule {
 public:
  explicit LinearRevealCancelRule(DeepLiftContextPtr c) : c_(std::move(c)) {}
  std::string name() const override { return "deeplift.reveal_cancel"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    LinearNode node(v, "deeplift");
    if (rin.size() < need.size()) rin.resize(need.size());
    const auto d = static_cast<std::size_t>(node.data());
    if (d >= need.size() || !need[d] || rout.empty() || !rout[0]) return zero_missing(v, need, rin);
    const Tensor& r = *rout[0];
    const Tensor& x = node.x();
    const int64_t m = half_of(x, c_->batch, v), n = half_of(r, c_->batch, v);
    const Tensor xh = x.view(half_shape(x), 0);
    const Tensor mp = r.view(half_shape(r), 0), mn = r.view(half_shape(r), n);
    if (halves_equal(r)) {
      // Both parts alike: one VJP on the input half (the op is linear: half the work of both).
      const Tensor gh = node.vjp(xh, node.w(), node.b(), mp, mp, ctx);
      Tensor out(DType::Float32, x.shape());
      std::memcpy(out.f32(), gh.f32(), sizeof(float) * static_cast<std::size_t>(m));
      std::memcpy(out.f32() + m, gh.f32(), sizeof(float) * static_cast<std::size_t>(m));
      rin[d] = out;
      return zero_missing(v, need, rin);
    }
    const auto [wp, wn] = split_of(*c_, node.w(), ctx.threads());
    // Terms w_ij Δx_i > 0 take M+: Δx_i >= 0 with W+, Δx_i < 0 with W-; the others M-.
    Tensor a = node.vjp(xh, wp, nullptr, mp, mp, ctx);
    const Tensor a2 = node.vjp(xh, wn, nullptr, mn, mn, ctx);
    Tensor b = node.vjp(xh, wp, nullptr, mn, mn, ctx);
    const Tensor b2 = node.vjp(xh, wn, nullptr, mp, mp, ctx);
    Tensor out(DType::Float32, x.shape());
    const float* px = x.f32();
    const float *pa = a.f32(), *pa2 = a2.f32(), *pb = b.f32(), *pb2 = b2.f32();
    float* q = out.f32();
    kernels::parallel_for(m, ctx.threads(), [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        const float mult = px[i] - px[i + m] >= 0.f ? pa[i] + pa2[i] : pb[i] + pb2[i];
        q[i] = mult;
        q[i + m] = mult;
      }
    });
    rin[d] = out;
    zero_missing(v, need, rin);
  }

 private:
  DeepLiftContextPtr c_;
};

class RefuseRule final : public Rule {
 public:
  RefuseRule(std::string why, bool unless_linear) : why_(std::move(why)), unless_linear_(unless_linear) {}
  std::string name() const override { return "refuse"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (unless_linear_) {
      // A product with at most one non-constant operand (x * 0.5, x / std) is linear in it:
      // multipliers pass as through the VJP.
      int varying = 0;
      for (std::size_t i = 0; i < v.in.size(); ++i)
        varying += v.in[i] && v.in[i]->dtype() == DType::Float32 &&
                   !(i < v.in_constant.size() && v.in_constant[i]);
      if (varying <= 1) {
        v.op->vjp(v.in, v.out, rout, need, rin, ctx);
        return;
      }
    }
    throw InvalidArgument(v.op->context() + ": " + why_);
  }

 private:
  std::string why_;
  bool unless_linear_;
};

}  // namespace

namespace {
std::pair<Tensor, Tensor> split_of(const DeepLiftContext& c, const Tensor& w, int threads) {
  if (c.sign_split) return c.sign_split(w);
  return weight_sign_split(w, threads);
}
}  // namespace

Tensor deeplift_positive_part(const NodeValues& v, const DeepLiftContext& dctx, ExecContext& ctx) {
  LinearNode node(v, "deeplift", false);
  const Tensor& x = node.x();
  const int64_t m = half_of(x, dctx.batch, v);
  Tensor dp(DType::Float32, half_shape(x)), dn(DType::Float32, half_shape(x));
  const float* px = x.f32();
  float* pp = dp.f32();
  float* pn = dn.f32();
  kernels::parallel_for(m, ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float d = px[i] - px[i + m];
      pp[i] = d > 0.f ? d : 0.f;
      pn[i] = d < 0.f ? d : 0.f;
    }
  });
  const auto [wp, wn] = split_of(dctx, node.w(), ctx.threads());
  Tensor z = node.forward(dp, wp, nullptr, ctx);
  const Tensor z2 = node.forward(dn, wn, nullptr, ctx);
  float* pz = z.f32();
  const float* pz2 = z2.f32();
  kernels::parallel_for(z.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) pz[i] += pz2[i];
  });
  return z;
}

std::pair<Tensor, Tensor> weight_sign_split(const Tensor& w, int threads) {
  return {clamp_sign(w, true, threads).frozen(), clamp_sign(w, false, threads).frozen()};
}

RulePtr deeplift_nonlinear_rule(DeepLiftContextPtr ctx) { return std::make_shared<NonlinearRule>(std::move(ctx)); }
RulePtr deeplift_maxpool_rule(DeepLiftContextPtr ctx) { return std::make_shared<MaxPoolRule>(std::move(ctx)); }
RulePtr deeplift_linear_rule(DeepLiftContextPtr ctx) { return std::make_shared<LinearRevealCancelRule>(std::move(ctx)); }
RulePtr refuse_rule(std::string why, bool unless_linear) {
  return std::make_shared<RefuseRule>(std::move(why), unless_linear);
}

}  // namespace onnxplain::rules
