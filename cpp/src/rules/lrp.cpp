// The LRP rule family, written against Zennit 0.5.1 (zennit/rules.py) term by term: each Zennit
// BasicHook runs one forward + VJP per (input modifier, parameter modifier) branch, sums the
// branch outputs into a denominator z, maps R to R / stab(z) and reduces sum(input * gradient).
// Here a branch is op->forward / op->vjp on the node's inputs with the data input, weight and
// bias replaced, so the rules work for any OpKind::Linear op (Conv, Gemm, MatMul, ...).
//
// Cost: Zennit runs every branch. A branch whose input is all zeros adds exactly zero to R_in
// and, when it carries no bias, to z, so it is skipped without changing a bit of the result.
// After a rectifier the input has no negative entries, so per layer z+ and α1β0 cost one forward
// + one VJP (Zennit: 2 + 2 and 4 + 4), α2β1 and γ two of each (Zennit: 4 + 4 and 5 + 5); ε
// reuses the forward pass's output (Zennit recomputes it). αβ (β != 0) and γ go further: their
// two branch products sum to the layer's output ((W+x + b+) + (W-x + b-), and W^γ± x + b^γ±
// to (2 + γ)(Wx + b)), so they are made in the forward pass in place of Wx (Rule::forward) and
// the layer costs four products in all, not five. On an op that stacks on channels
// (Op::stacks_on_channels, a convolution) a layer's two products (W+x and W-x for αβ, W^γ±x for
// γ, at any batch size; Wx and W+x for z+, for one image) run as one convolution over the
// stacked weights, sharing its pass over the input (im2col or Winograd transform), and αβ's and
// γ's two VJPs run as one VJP over the same stacked weights (K = 2M). An input with both signs
// (a first layer) takes αβ's and γ's four branches as two stacked forwards (on x+ and x-) and
// two stacked VJPs instead of four of each. The flat rule's all-ones weight makes every output
// channel alike, so it runs one channel. Branches masked out everywhere (γ's sign masks) or
// weighted by β = 0 are skipped too, and a modified weight is computed only when a branch that
// runs uses it. A cut left out on purpose: writing W+x+ + W-x- with |W| and |x| (one product
// fewer) cancels where a denominator is near zero, where Zennit multiplies R / eps by an exact
// zero weight and the |W| form would not give an exact zero.
#include "rules/lrp.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "kernels/parallel.hpp"
#include "rules/linear_node.hpp"

// No loop-carried dependences in the loop that follows (see for_stacked).
#if defined(__clang__)
#define ONNXPLAIN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define ONNXPLAIN_IVDEP _Pragma("GCC ivdep")
#else
#define ONNXPLAIN_IVDEP
#endif

namespace onnxplain::rules {
namespace {

using ops::OpKind;
using Ptrs = std::vector<const Tensor*>;

// ---- elementwise helpers -----------------------------------------------------------------------

template <class F>
Tensor map1(const Tensor& a, ExecContext& ctx, F f) {
  Tensor y = ctx.alloc(DType::Float32, a.shape());
  const float* pa = a.f32();
  float* py = y.f32();
  kernels::parallel_for(a.numel(), ctx.threads(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = f(pa[i]);
  });
  return y;
}

template <class F>
Tensor map2(const Tensor& a, const Tensor& b, ExecContext& ctx, F f) {
  if (a.shape() != b.shape())
    throw ShapeError("internal: elementwise operands of shapes " + shape_str(a.shape()) + " and " +
                     shape_str(b.shape()));
  Tensor y = ctx.alloc(DType::Float32, a.shape());
  const float* pa = a.f32();
  const float* pb = b.f32();
  float* py = y.f32();
  kernels::parallel_for(a.numel(), ctx.threads(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = f(pa[i], pb[i]);
  });
  return y;
}

template <class F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, ExecContext& ctx, F f) {
  if (a.shape() != b.shape() || a.shape() != c.shape())
    throw ShapeError("internal: elementwise operands of shapes " + shape_str(a.shape()) + ", " + shape_str(b.shape()) +
                     " and " + shape_str(c.shape()));
  Tensor y = ctx.alloc(DType::Float32, a.shape());
  const float* pa = a.f32();
  const float* pb = b.f32();
  const float* pc = c.f32();
  float* py = y.f32();
  kernels::parallel_for(a.numel(), ctx.threads(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = f(pa[i], pb[i], pc[i]);
  });
  return y;
}

Tensor filled(const Shape& s, float v, ExecContext& ctx) {
  Tensor y = ctx.alloc(DType::Float32, s);
  float* p = y.f32();
  kernels::parallel_for(y.numel(), ctx.threads(), [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
  return y;
}

Tensor clamp_min0(const Tensor& t, ExecContext& ctx) {
  return map1(t, ctx, [](float v) { return v > 0.f ? v : 0.f; });
}
Tensor clamp_max0(const Tensor& t, ExecContext& ctx) {
  return map1(t, ctx, [](float v) { return v < 0.f ? v : 0.f; });
}

/// x ⊙ g (g a VJP's output), written over g when nothing else holds its storage, so that a
/// layer's relevance does not take one more buffer of the input's size (at VGG-16's first layers,
/// 100 MB at batch 8). The same product either way.
Tensor times(const Tensor& x, Tensor g, ExecContext& ctx) {
  if (g.shape() != x.shape() || g.storage_ref().use_count() != 1)
    return map2(x, g, ctx, [](float a, float c) { return a * c; });
  const float* px = x.f32();
  float* pg = g.f32();
  kernels::parallel_for(g.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) pg[i] = px[i] * pg[i];
  });
  return g;
}

/// Whether t has any entry > 0 / < 0 (NaN counts as both, so it is never skipped).
struct Signs {
  bool pos = false;
  bool neg = false;
};
Signs signs_of(const Tensor& t, int threads) {
  const float* p = t.f32();
  const int64_t n = t.numel();
  // Blocks of 4096 scanned branch-free (vectorised), stopping once both signs are seen.
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  int pos = 0, neg = 0;
  kernels::parallel_for(
      blocks, threads,
      [&](int64_t b, int64_t e) {
        bool sp = false, sn = false;
        for (int64_t k = b; k < e && !(sp && sn); ++k) {
          const int64_t lo = k * kBlock, hi = std::min(n, lo + kBlock);
          int fp = 0, fn = 0;
          for (int64_t i = lo; i < hi; ++i) {
            fp |= !(p[i] <= 0.f);
            fn |= !(p[i] >= 0.f);
          }
          sp = sp || fp;
          sn = sn || fn;
        }
        if (sp) {
#pragma omp atomic write
          pos = 1;
        }
        if (sn) {
#pragma omp atomic write
          neg = 1;
        }
      },
      16);
  Signs s;
  s.pos = pos != 0;
  s.neg = neg != 0;
  return s;
}

/// R / stab(z), optionally only where mask(o) holds (Zennit's γ multiplies by the mask first).
Tensor normalized(const Tensor& r, const Tensor& z, float eps, ExecContext& ctx) {
  if (r.shape() != z.shape())
    throw ShapeError("relevance of shape " + shape_str(r.shape()) + " reaches an output of shape " +
                     shape_str(z.shape()));
  return map2(r, z, ctx, [eps](float rv, float zv) { return rv / stabilize(zv, eps); });
}

/// Base of the linear rules: only the data input receives relevance (weights and biases that are
/// graph inputs get zeros), and nothing arriving means zeros.
class LinearRule : public Rule {
 public:
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    const std::string n = name();
    LinearNode node(v, n.c_str());
    if (rin.size() < need.size()) rin.resize(need.size());
    const auto d = static_cast<std::size_t>(node.data());
    if (d >= need.size() || !need[d] || rout.empty() || !rout[0] || node.x().numel() == 0)
      return zero_missing(v, need, rin);
    if (rout[0]->shape() != node.y().shape())
      throw ShapeError("relevance of shape " + shape_str(rout[0]->shape()) + " reaches an output of shape " +
                       shape_str(node.y().shape()));
    Tensor r = relevance(node, *rout[0], ctx);
    if (r.shape() != node.x().shape())
      throw ShapeError("internal: the " + n + " rule produced shape " + shape_str(r.shape()) + " for an input of shape " +
                       shape_str(node.x().shape()));
    rin[d] = r;
    zero_missing(v, need, rin);
  }

 protected:
  virtual Tensor relevance(const LinearNode& node, const Tensor& r, ExecContext& ctx) const = 0;
};

/// Rule::reads for a linear rule that reads the data input, weight and bias and of the output
/// only its shape (the VJP's output shape, which no linear op's VJP reads); every value on an op
/// without a weight. A rule that reads y (ε, z^B) keeps the default instead.
void reads_inputs_only(const NodeValues& v, std::vector<char>& out) {
  if (v.op->kind() == OpKind::Linear && v.op->weight_input() >= 0) std::fill(out.begin(), out.end(), 0);
}

/// Whether the proportional rule can take y from the terms instead of reading it: a sum of two
/// terms x0 + x1 or x0 - x1, both of the output's shape, which give y bit for bit as the op
/// computed it (one IEEE addition). Then y is not kept for the reverse pass, and a rectifier after
/// the sum is fused into it in the kept forward too (Model::KeepQuery).
bool sum_recomputable(const NodeValues& v) {
  if (v.op->kind() != OpKind::Sum || v.in.size() != 2 || !v.in[0] || !v.in[1] || v.out.empty() || !v.out[0])
    return false;
  const Tensor& y = *v.out[0];
  for (const Tensor* t : v.in)
    if (t->dtype() != DType::Float32 || t->shape() != y.shape()) return false;
  return y.dtype() == DType::Float32 && v.op->sum_sign(0) == 1.f &&
         (v.op->sum_sign(1) == 1.f || v.op->sum_sign(1) == -1.f);
}

/// R_in_i = x_i ⊙ VJP_i(R / stab(y)) for every needed input: Zennit's Norm, and ε on ops that
/// have no weight (the same formula with ε as the stabilizer).
void proportional(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                  std::vector<Tensor>& rin, float eps, ExecContext& ctx) {
  if (rin.size() < need.size()) rin.resize(need.size());
  if (rout.empty() || !rout[0] || v.out.empty() || !v.out[0]) return zero_missing(v, need, rin);
  const Tensor& y = *v.out[0];
  const Tensor& r = *rout[0];
  const bool recompute = sum_recomputable(v);
  // Terms of a sum with the output's shape: x_i ⊙ (sign_i ⊙ R / stab(y)) in one pass for all of
  // them, the same products as through the VJP below (which copies the cotangent to each).
  std::vector<std::size_t> direct;
  std::vector<bool> rest = need;
  if (r.shape() == y.shape() && r.dtype() == DType::Float32 && y.dtype() == DType::Float32)
    for (std::size_t i = 0; i < need.size() && i < v.in.size(); ++i)
      if (need[i] && v.in[i] && v.op->sum_sign(i) != 0.f && v.in[i]->dtype() == DType::Float32 &&
          v.in[i]->shape() == y.shape()) {
        direct.push_back(i);
        rest[i] = false;
      }
  if (recompute && direct.empty() && r.shape() == y.shape())
    return zero_missing(v, need, rin);  // y is not kept: nothing may read it
  if (!direct.empty()) {
    std::vector<const float*> xs;
    std::vector<float*> outs;
    std::vector<float> signs;
    for (std::size_t i : direct) {
      rin[i] = ctx.alloc(DType::Float32, y.shape());
      xs.push_back(v.in[i]->f32());
      outs.push_back(rin[i].f32());
      signs.push_back(v.op->sum_sign(i));
    }
    const float* pr = r.f32();
    const float* py = recompute ? nullptr : y.f32();
    const float* x0 = recompute ? v.in[0]->f32() : nullptr;
    const float* x1 = recompute ? v.in[1]->f32() : nullptr;
    const bool minus = recompute && v.op->sum_sign(1) < 0.f;
    constexpr int64_t kBlock = 1024;
    const int64_t n = y.numel(), blocks = (n + kBlock - 1) / kBlock;
    kernels::parallel_for(blocks, ctx.threads(), [&](int64_t b0, int64_t b1) {
      float sb[kBlock];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t e0 = b * kBlock, len = std::min(kBlock, n - e0);
        if (!recompute) {
          for (int64_t e = 0; e < len; ++e) sb[e] = pr[e0 + e] / stabilize(py[e0 + e], eps);
        } else if (minus) {
          for (int64_t e = 0; e < len; ++e) sb[e] = pr[e0 + e] / stabilize(x0[e0 + e] - x1[e0 + e], eps);
        } else {
          for (int64_t e = 0; e < len; ++e) sb[e] = pr[e0 + e] / stabilize(x0[e0 + e] + x1[e0 + e], eps);
        }
        for (std::size_t k = 0; k < xs.size(); ++k) {
          const float* px = xs[k] + e0;
          float* po = outs[k] + e0;
          if (signs[k] == 1.f) {
            for (int64_t e = 0; e < len; ++e) po[e] = px[e] * sb[e];
          } else {
            const float sg = signs[k];
            for (int64_t e = 0; e < len; ++e) po[e] = px[e] * (sg * sb[e]);
          }
        }
      }
    }, std::max<int64_t>(1, kernels::kParallelGrain / kBlock));
    if (std::find(rest.begin(), rest.end(), true) == rest.end()) return;
  }
  Tensor s = normalized(r, y, eps, ctx);
  Ptrs gout(v.out.size(), nullptr);
  gout[0] = &s;
  std::vector<Tensor> gin(v.in.size());
  v.op->vjp(v.in, v.out, gout, rest, gin, ctx);
  for (std::size_t i = 0; i < rest.size() && i < v.in.size(); ++i) {
    if (!rest[i] || !v.in[i]) continue;
    if (gin[i].shape() != v.in[i]->shape())
      throw ShapeError("internal: the VJP returned shape " + shape_str(gin[i].shape()) + " for input " +
                       std::to_string(i) + " of shape " + shape_str(v.in[i]->shape()));
    rin[i] = map2(*v.in[i], gin[i], ctx, [](float a, float b) { return a * b; });
  }
}

// ---- ε ------------------------------------------------------------------------------------------

class EpsilonRule final : public LinearRule {
 public:
  explicit EpsilonRule(float eps) : eps_(eps) {}
  std::string name() const override { return eps_ == 0.f ? "z" : "epsilon"; }
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)in;
    if (sum_recomputable(v)) out[0] = 0;
  }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    // On an op without a weight, Zennit's Epsilon (NoMod) is the proportional rule.
    if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0) return proportional(v, rout, need, rin, eps_, ctx);
    LinearRule::backward(v, rout, need, rin, ctx);
  }

 protected:
  // z is the forward pass's own output: the same op on the same inputs.
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    Tensor s = normalized(r, n.y(), eps_, ctx);
    Tensor g = n.vjp(n.x(), n.w(), n.b(), n.y(), s, ctx);
    s = Tensor();
    return times(n.x(), std::move(g), ctx);
  }

 private:
  float eps_;
};

// ---- the sign-split rules: αβ (z+ = α1β0) and γ -------------------------------------------------

/// A weight and bias modified by one elementwise function (Zennit's ParamMod), computed on first
/// use: a branch that is skipped never pays for its weight (a dense layer's weight costs as
/// much to modify as the layer costs to run).
class ModParams {
 public:
  virtual ~ModParams() = default;
  virtual const Tensor& w() = 0;
  virtual const Tensor* b() = 0;  // nullptr when the op has no bias
};

/// Modified constant weights and biases kept across calls, per rule object (one per Explainer):
/// modifying a large dense weight costs as much as running the layer, on every explanation.
/// Keyed by the constant's storage; the entry holds the original tensor too, so that storage
/// cannot be freed and its address reused while the entry exists.
class ParamCache {
 public:
  struct Entry {
    Tensor orig_w, orig_b, w, b;
    bool has_w = false, has_b = false;
  };
  Entry& entry(const void* w, const void* b, int tag) {
    std::lock_guard<std::mutex> lock(mu_);
    return map_[std::make_tuple(w, b, tag)];
  }
  std::mutex& mutex() { return mu_; }

 private:
  std::mutex mu_;
  std::map<std::tuple<const void*, const void*, int>, Entry> map_;
};

template <class F>
class ModParamsOf final : public ModParams {
 public:
  ModParamsOf(const LinearNode& n, F f, ExecContext& ctx, ParamCache* cache, int tag)
      : n_(n), f_(f), ctx_(ctx), cache_(n.params_constant() ? cache : nullptr), tag_(tag) {}
  const Tensor& w() override {
    if (!w_done_) {
      if (cache_) {
        ParamCache::Entry& e = cache_->entry(n_.w().raw(), n_.b() ? n_.b()->raw() : nullptr, tag_);
        std::lock_guard<std::mutex> lock(cache_->mutex());
        if (!e.has_w) e.orig_w = n_.w(), e.w = map1(n_.w(), ctx_, f_).frozen(), e.has_w = true;
        w_ = e.w;
      } else {
        w_ = map1(n_.w(), ctx_, f_);
      }
      w_done_ = true;
    }
    return w_;
  }
  const Tensor* b() override {
    if (!n_.b()) return nullptr;
    if (!b_done_) {
      if (cache_) {
        ParamCache::Entry& e = cache_->entry(n_.w().raw(), n_.b()->raw(), tag_);
        std::lock_guard<std::mutex> lock(cache_->mutex());
        if (!e.has_b) e.orig_b = *n_.b(), e.b = map1(*n_.b(), ctx_, f_).frozen(), e.has_b = true;
        b_ = e.b;
      } else {
        b_ = map1(*n_.b(), ctx_, f_);
      }
      b_done_ = true;
    }
    return &b_;
  }

 private:
  const LinearNode& n_;
  F f_;
  ExecContext& ctx_;
  ParamCache* cache_;
  int tag_;
  Tensor w_, b_;
  bool w_done_ = false, b_done_ = false;
};

template <class F>
ModParamsOf<F> mod_params(const LinearNode& n, F f, ExecContext& ctx, ParamCache* cache = nullptr, int tag = 0) {
  return ModParamsOf<F>(n, f, ctx, cache, tag);
}

/// One Zennit branch: an input modifier and a parameter modifier, with or without the bias
/// (zero_bias). `x_zero`: the input is all zeros, so the branch adds only its bias to z and
/// nothing to R_in.
struct Branch {
  const Tensor* x = nullptr;
  ModParams* p = nullptr;
  bool bias = true;
  bool x_zero = false;
  Tensor out;  // this branch's forward output, when computed
  const Tensor* b() const { return bias ? p->b() : nullptr; }
};

/// z = sum of the branch outputs in Zennit's order ((0 + o_0) + o_1 + ...); branches with a zero
/// input and no bias add exact zeros and are not run. Empty when no branch runs.
Tensor branch_sum(const LinearNode& n, std::vector<Branch>& br, ExecContext& ctx) {
  Tensor z;
  for (Branch& b : br) {
    if (!b.out.raw()) {  // not computed in the forward pass already
      if (b.x_zero && !(b.bias && n.b())) continue;
      b.out = n.forward(*b.x, b.p->w(), b.b(), ctx);
    }
    if (b.out.shape() != n.y().shape())
      throw ShapeError("internal: a modified forward gave shape " + shape_str(b.out.shape()) + ", the op's output is " +
                       shape_str(n.y().shape()));
    z = z.raw() ? map2(z, b.out, ctx, [](float a, float c) { return a + c; }) : b.out;
  }
  return z;
}

/// Drops z and the branch outputs summed into it once s = R / stab(z) is made: from there on a
/// branch's output is only the VJP's output shape, which n.y() gives, and the layer's
/// temporaries are one buffer fewer.
void release_sum(std::vector<Branch>& br, Tensor& z) {
  z = Tensor();
  for (Branch& b : br) b.out = Tensor();
}

/// acc += x ⊙ VJP(s) of the branch (acc empty: starts at 0 + ...). Zero-input branches add exact
/// zeros and are skipped.
void add_branch_relevance(const LinearNode& n, Branch& b, const Tensor& s, Tensor& acc, ExecContext& ctx) {
  if (b.x_zero) return;
  const Tensor& y = b.out.raw() ? b.out : n.y();
  Tensor t = times(*b.x, n.vjp(*b.x, b.p->w(), b.b(), y, s, ctx), ctx);
  acc = acc.raw() ? map2(acc, t, ctx, [](float a, float c) { return a + c; }) : t;
}

struct SignSplit {
  Tensor xp, xn;  // x.clamp(min=0), x.clamp(max=0)
  bool xp_zero = false, xn_zero = false;
};
SignSplit split(const LinearNode& n, ExecContext& ctx) {
  SignSplit s;
  const Tensor& x = n.x();
  // After a rectifier the scan is skipped: "has positives" is then assumed, which at worst runs
  // a branch whose zero input adds exact zeros (what skipping it would give).
  Signs sg;
  if (n.x_nonneg())
    sg.pos = true;
  else
    sg = signs_of(x, ctx.threads());
  s.xp_zero = !sg.pos;
  s.xn_zero = !sg.neg;
  // A non-negative input is its own positive part (clamp(min=0) changes no value of it), a
  // non-positive one its own negative part. x- is read only when it has entries (its branches
  // never carry the bias), so without negatives it is not computed.
  s.xp = sg.neg ? clamp_min0(x, ctx) : x;
  s.xn = sg.neg && sg.pos ? clamp_max0(x, ctx) : x;
  return s;
}

/// Two modified weights side by side along the weight's axis 0 (and the biases likewise), kept
/// across calls like ModParamsOf: for ops that stack on channels, one forward then gives both
/// products from a single pass over the input.
template <class F1, class F2>
class StackedParams final : public ModParams {
 public:
  StackedParams(const LinearNode& n, F1 f1, F2 f2, ExecContext& ctx, ParamCache* cache, int tag)
      : n_(n), f1_(f1), f2_(f2), ctx_(ctx), cache_(n.params_constant() ? cache : nullptr), tag_(tag) {}
  const Tensor& w() override {
    if (!w_.raw()) w_ = get(n_.w(), true);
    return w_;
  }
  const Tensor* b() override {
    if (!n_.b()) return nullptr;
    if (!b_.raw()) b_ = get(*n_.b(), false);
    return &b_;
  }

 private:
  Tensor stack(const Tensor& t) const {
    Shape sh = t.shape();
    sh.at(0) *= 2;
    Tensor y = ctx_.alloc(DType::Float32, sh);
    const float* src = t.f32();
    float* dst = y.f32();
    const int64_t m = t.numel();
    kernels::parallel_for(m, ctx_.threads(), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        dst[i] = f1_(src[i]);
        dst[m + i] = f2_(src[i]);
      }
    });
    return y;
  }
  Tensor get(const Tensor& t, bool weight) {
    if (!cache_) return stack(t);
    ParamCache::Entry& e = cache_->entry(n_.w().raw(), n_.b() ? n_.b()->raw() : nullptr, tag_);
    std::lock_guard<std::mutex> lock(cache_->mutex());
    if (weight && !e.has_w) e.orig_w = t, e.w = stack(t).frozen(), e.has_w = true;
    if (!weight && !e.has_b) e.orig_b = t, e.b = stack(t).frozen(), e.has_b = true;
    return weight ? e.w : e.b;
  }
  const LinearNode& n_;
  F1 f1_;
  F2 f2_;
  ExecContext& ctx_;
  ParamCache* cache_;
  int tag_;
  Tensor w_, b_;
};

/// Entries per sample of a tensor whose axis 0 is the batch (0 for an empty batch).
int64_t per_sample(const Tensor& y) { return y.dim(0) > 0 ? y.numel() / y.dim(0) : 0; }

/// Calls f(i, off) for every entry i of a tensor shaped like y (batch axis first), `off` being
/// where entry i's first half lies in the same shape stacked on axis 1 ([N, 2M, ...]); the second
/// half is at off + per, per = y's entries per sample. f must write only entries of its own i
/// (or off) and read no entry another call writes: the loop over one sample's run is marked
/// free of loop-carried dependences so that it vectorises. With the sample wrap tested per entry
/// it did not, and γ's two divisions per entry ran scalar (7% of VGG-16 εγbox at batch 1).
template <class F>
void for_stacked(const Tensor& y, ExecContext& ctx, F f) {
  if (y.numel() == 0) return;
  const int64_t per = per_sample(y);
  kernels::parallel_for(y.numel(), ctx.threads(), [&](int64_t lo, int64_t hi) {
    for (int64_t i0 = lo; i0 < hi;) {
      const int64_t b = i0 / per, run = std::min(hi - i0, per - (i0 - b * per));
      const int64_t shift = b * per;  // off = b * 2 per + j = i + b * per within sample b
      const int64_t end = i0 + run;
      ONNXPLAIN_IVDEP
      for (int64_t i = i0; i < end; ++i) f(i, i + shift);
      i0 = end;
    }
  });
}

Shape stacked_shape(const Tensor& y) {
  Shape sh = y.shape();
  sh.at(1) *= 2;
  return sh;
}

// ---- dense layers in blocks of output neurons -------------------------------------------------

/// A linear op that does not stack on channels (a dense layer) as blocks of output neurons:
/// neuron j is the matrix weight's slice j along Op::weight_neuron_axis and entry j of the
/// output's last axis, and the bias broadcasts numpy-style (one value, or one per neuron along
/// its last axis). A product with a modified weight then runs block by block on that block's
/// modified slice, made when needed, so no modified copy of the weight exists whole or is kept:
/// VGG-16's first dense layer has a 411 MB weight, and αβ's W+ and W- kept per explainer took
/// 0.9 GB at batch 8. Blocks are as large as fit in kBlockBytes (a weight that fits is one block),
/// in multiples of 16 neurons (whole panels per thread): sgemm on a few rows against a narrow
/// block of a long weight runs far below its speed, and every block costs parallel regions
/// (the modification, the split product), which on a loaded machine cost more than the work
/// (VGG-16's dense layers, αβ at batch 8: 8 MiB blocks took 6x as long as 64 MiB ones).
/// Weights under kMinBytes keep their copies (modifying them per call would cost more than their
/// product at small batches).
class NeuronBlocks {
 public:
  static constexpr int64_t kBlockBytes = int64_t{64} << 20, kMinBytes = int64_t{1} << 20;

  /// False where the layout differs from the above, or the weight is small.
  static bool applies(const LinearNode& n) {
    const ops::Op& op = n.op();
    if (n.stacks() || op.neuron_groups() != 1) return false;
    const Tensor& w = n.w();
    if (w.rank() != 2 || w.numel() * 4 < kMinBytes) return false;
    const int a = op.weight_neuron_axis(2);
    if (a != 0 && a != 1) return false;
    const int64_t m = w.dim(a);
    const Tensor& x = n.x();
    if (x.rank() < 1 || op.out_neuron_axis(x.rank()) != x.rank() - 1) return false;
    if (const Tensor* b = n.b()) {
      if (b->numel() != 1 && !(b->numel() == m && b->rank() >= 1 && b->dim(b->rank() - 1) == m)) return false;
    }
    return m > 0;
  }

  NeuronBlocks(const LinearNode& n, int threads) : n_(n) {
    axis_ = n.op().weight_neuron_axis(2);
    m_ = n.w().dim(axis_);
    k_ = n.w().dim(1 - axis_);
    const int64_t fit = kBlockBytes / std::max<int64_t>(1, 4 * k_) / 16 * 16;
    block_ = std::min(m_, std::max<int64_t>(16 * std::max(threads, 1), fit));
  }
  int64_t neurons() const { return m_; }
  int64_t block() const { return block_; }

  /// f(W) for neurons [j0, j1), shaped as the weight with j1 - j0 neurons.
  template <class F>
  Tensor weight(int64_t j0, int64_t j1, F f, ExecContext& ctx) const {
    const Tensor& w = n_.w();
    const int64_t mc = j1 - j0, K = k_, M = m_;
    const float* src = w.f32();
    if (axis_ == 0) {
      Tensor y = ctx.alloc(DType::Float32, {mc, K});
      float* dst = y.f32();
      const float* s0 = src + j0 * K;
      kernels::parallel_for(mc * K, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = f(s0[i]);
      });
      return y;
    }
    Tensor y = ctx.alloc(DType::Float32, {K, mc});
    float* dst = y.f32();
    kernels::parallel_for(K, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k)
        for (int64_t c = 0; c < mc; ++c) dst[k * mc + c] = f(src[k * M + j0 + c]);
    });
    return y;
  }
  /// f(b) for neurons [j0, j1) (all of a one-value bias); empty without a bias.
  template <class F>
  Tensor bias(int64_t j0, int64_t j1, F f, ExecContext& ctx) const {
    const Tensor* b = n_.b();
    if (!b) return Tensor();
    if (b->numel() == 1) return map1(*b, ctx, f);
    Shape sh = b->shape();
    sh.back() = j1 - j0;
    Tensor y = ctx.alloc(DType::Float32, sh);
    const float* src = b->f32() + j0;
    float* dst = y.f32();
    for (int64_t c = 0; c < j1 - j0; ++c) dst[c] = f(src[c]);
    return y;
  }

 private:
  const LinearNode& n_;
  int axis_ = 0;
  int64_t m_ = 0, k_ = 0, block_ = 0;
};

/// Columns [j0, j0 + mc) of `full` (last axis M) from `part` (last axis mc), or into it.
void scatter_columns(Tensor& full, const Tensor& part, int64_t j0, ExecContext& ctx) {
  const int64_t M = full.dim(full.rank() - 1), mc = part.dim(part.rank() - 1);
  const int64_t rows = M > 0 ? full.numel() / M : 0;
  float* pf = full.f32();
  const float* pp = part.f32();
  kernels::parallel_for(rows, ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::copy(pp + r * mc, pp + (r + 1) * mc, pf + r * M + j0);
  }, std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(mc, 1)));
}
Tensor gather_columns(const Tensor& full, int64_t j0, int64_t j1, ExecContext& ctx) {
  const int64_t M = full.dim(full.rank() - 1), mc = j1 - j0;
  Shape sh = full.shape();
  sh.back() = mc;
  Tensor part = ctx.alloc(DType::Float32, sh);
  const int64_t rows = M > 0 ? full.numel() / M : 0;
  const float* pf = full.f32();
  float* pp = part.f32();
  kernels::parallel_for(rows, ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::copy(pf + r * M + j0, pf + r * M + j1, pp + r * mc);
  }, std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(mc, 1)));
  return part;
}

/// o1 = op(x; f1(W), f1(b)) and o2 = op(x; f2(W), f2(b)) on the node's own input, block by block
/// (NeuronBlocks::applies must hold).
template <class F1, class F2>
void blocked_pair_forward(const LinearNode& n, F1 f1, F2 f2, Tensor& o1, Tensor& o2, ExecContext& ctx) {
  const NeuronBlocks nb(n, ctx.threads());
  const int64_t M = nb.neurons();
  for (int64_t j0 = 0; j0 < M; j0 += nb.block()) {
    const int64_t j1 = std::min(M, j0 + nb.block());
    for (int k = 0; k < 2; ++k) {
      const Tensor w = k == 0 ? nb.weight(j0, j1, f1, ctx) : nb.weight(j0, j1, f2, ctx);
      const Tensor b = k == 0 ? nb.bias(j0, j1, f1, ctx) : nb.bias(j0, j1, f2, ctx);
      Tensor part = n.forward(n.x(), w, b.raw() ? &b : nullptr, ctx);
      if (part.rank() < 1 || part.dim(part.rank() - 1) != j1 - j0)
        throw ShapeError("internal: a block of " + std::to_string(j1 - j0) + " neurons gave output " +
                         shape_str(part.shape()));
      Tensor& o = k == 0 ? o1 : o2;
      if (!o.raw()) {
        if (j1 == M) {  // one block: the product itself
          o = part;
          continue;
        }
        Shape sh = part.shape();
        sh.back() = M;
        o = ctx.alloc(DType::Float32, sh);
      }
      scatter_columns(o, part, j0, ctx);
    }
  }
}

/// VJP_{f1(W)}(s1) + VJP_{f2(W)}(s2) with respect to the data input, block by block
/// (NeuronBlocks::applies must hold; s1 and s2 shaped like the output).
template <class F1, class F2>
Tensor blocked_pair_vjp(const LinearNode& n, F1 f1, F2 f2, const Tensor& s1, const Tensor& s2, ExecContext& ctx) {
  const NeuronBlocks nb(n, ctx.threads());
  const int64_t M = nb.neurons();
  Tensor gx;
  for (int64_t j0 = 0; j0 < M; j0 += nb.block()) {
    const int64_t j1 = std::min(M, j0 + nb.block());
    for (int k = 0; k < 2; ++k) {
      const Tensor& s = k == 0 ? s1 : s2;
      const Tensor w = k == 0 ? nb.weight(j0, j1, f1, ctx) : nb.weight(j0, j1, f2, ctx);
      const Tensor b = k == 0 ? nb.bias(j0, j1, f1, ctx) : nb.bias(j0, j1, f2, ctx);
      const Tensor sp = j1 - j0 == M ? s : gather_columns(s, j0, j1, ctx);
      Tensor g = n.vjp(n.x(), w, b.raw() ? &b : nullptr, sp, sp, ctx);
      if (!gx.raw()) {
        gx = std::move(g);
      } else if (gx.storage_ref().use_count() == 1) {  // ours alone (the op's fresh output): sum in place
        float* pg = gx.f32();
        const float* pq = g.f32();
        kernels::parallel_for(gx.numel(), ctx.threads(), [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) pg[i] += pq[i];
        });
      } else {
        gx = map2(gx, g, ctx, [](float a, float c) { return a + c; });
      }
    }
  }
  return gx;
}

/// The two products a sign-split rule needs for an input without negative entries, computed in
/// the forward pass in place of the plain product: o1 = op(x; p1), o2 = op(x; p2), and the
/// node's output from them by `combine(a, b)` per entry (x- is zero there, so these are all the
/// branches that run). Where the op stacks on channels both come from one forward over the
/// stacked parameters (sharing im2col or the Winograd input transform) and keep = {[o1; o2]} in
/// that stacked layout ([N, 2M, ...], read with for_stacked); elsewhere keep = {o1, o2}.
/// `first_is_output`: the output is o1 itself (z+: o1 = Wx), a view for one image.
/// Returns false (the op's own forward runs) where the input may have negative entries, or with
/// `only_stacked` where the products cannot share a pass.
template <class F1, class F2, class C>
bool split_forward(const NodeValues& v, const char* rule, F1 f1, F2 f2, ParamCache& cache, int tags[3], C combine,
                   bool first_is_output, bool only_stacked, std::vector<Tensor>& out, std::vector<Tensor>& keep,
                   ExecContext& ctx) {
  if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0) return false;
  LinearNode n(v, rule, false);
  if (!n.x_nonneg()) return false;
  // When the output is o1 itself, more than one image would need o1 copied out of the stacked
  // result: a pass over memory that a 1x1 convolution (nothing shared) does not win back
  // (ResNet-50 z+ at batch 8 measured slower); one image gets it as a view.
  const bool stack = v.op->stacks_on_channels() && n.x().rank() >= 2 && (!first_is_output || n.x().dim(0) == 1);
  if (!stack && only_stacked) return false;
  out.resize(std::max<std::size_t>(1, v.node->outputs.size()));
  if (stack) {
    StackedParams<F1, F2> sp(n, f1, f2, ctx, &cache, tags[2]);
    const Tensor both = n.forward(n.x(), sp.w(), sp.b(), ctx);
    Shape half = both.shape();
    if (half.size() < 2 || half[1] % 2 != 0) throw ShapeError("internal: a stacked forward gave shape " + shape_str(half));
    half[1] /= 2;
    if (first_is_output && half[0] == 1) {
      out[0] = both.view(half, 0);
    } else {
      Tensor y = ctx.alloc(DType::Float32, half);
      const int64_t per = per_sample(y);
      const float* pb = both.f32();
      float* py = y.f32();
      for_stacked(y, ctx, [&](int64_t i, int64_t off) { py[i] = combine(pb[off], pb[off + per]); });
      out[0] = y;
    }
    keep = {both};
    return true;
  }
  Tensor o1, o2;
  if (NeuronBlocks::applies(n)) {
    blocked_pair_forward(n, f1, f2, o1, o2, ctx);
  } else {
    auto p1 = mod_params(n, f1, ctx, &cache, tags[0]);
    auto p2 = mod_params(n, f2, ctx, &cache, tags[1]);
    o1 = n.forward(n.x(), p1.w(), p1.b(), ctx);
    o2 = n.forward(n.x(), p2.w(), p2.b(), ctx);
  }
  if (o1.shape() != o2.shape()) throw ShapeError("internal: the two modified forwards differ in shape");
  out[0] = first_is_output ? o1 : map2(o1, o2, ctx, combine);
  keep = {o1, o2};
  return true;
}

/// The two products of αβ ({W+x + b+, W-x + b-}) or of γ (mod.gamma: {W^γ+ x + b^γ+,
/// W^γ- x + b^γ-}) for an input without negative entries, from the op's one-pass kernel
/// (Op::forward_sign_split: a dense layer on one row reads its weight once instead of once per
/// product), kept like split_forward's separate pair, the output from them by `combine`. False
/// where the op offers none (split_forward then runs).
template <class C>
bool sign_split_forward(const NodeValues& v, const char* rule, const kernels::SignSplitMod& mod, C combine,
                        std::vector<Tensor>& out, std::vector<Tensor>& keep, ExecContext& ctx) {
  if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0 || v.op->stacks_on_channels()) return false;
  LinearNode n(v, rule, false);
  if (!n.x_nonneg()) return false;
  Tensor o1, o2;
  if (!n.forward_sign_split(o1, o2, ctx, mod)) return false;
  out.resize(std::max<std::size_t>(1, v.node->outputs.size()));
  out[0] = map2(o1, o2, ctx, combine);
  keep = {o1, o2};
  return true;
}

/// The kept products of split_forward made separately, {o1, o2}.
bool kept_pair(const LinearNode& n) {
  const std::vector<Tensor>* k = n.kept();
  return k && k->size() == 2 && n.x_nonneg() && (*k)[0].shape() == n.y().shape() && (*k)[1].shape() == n.y().shape();
}

/// The kept products of split_forward made in one stacked pass, [o1; o2] (nullptr if not).
const float* kept_stacked(const LinearNode& n) {
  const std::vector<Tensor>* k = n.kept();
  if (!k || k->size() != 1 || !n.x_nonneg() || n.y().rank() < 2 || (*k)[0].shape() != stacked_shape(n.y()))
    return nullptr;
  return (*k)[0].f32();
}

/// x ⊙ (VJP_{W1}(s1) + VJP_{W2}(s2)) for an input without negative entries on an op that stacks
/// on channels, as x ⊙ VJP_{[W1;W2]}([s1;s2]): one product over twice the output channels
/// instead of two, so one col2im or Winograd output transform and one x ⊙ g pass, and a GEMM
/// with K = 2M. [s1;s2] is written per sample (halves along axis 1), so any batch size works.
/// `s_of(i, off, s1, s2)` writes s1 and s2 for entry i of the node's output (off: as for_stacked).
template <class F1, class F2, class S>
Tensor stacked_vjp_relevance(const LinearNode& n, F1 f1, F2 f2, ParamCache& cache, int tag, S s_of,
                             ExecContext& ctx) {
  StackedParams<F1, F2> sp(n, f1, f2, ctx, &cache, tag);
  Tensor s = ctx.alloc(DType::Float32, stacked_shape(n.y()));
  const int64_t per = per_sample(n.y());
  float* ps = s.f32();
  for_stacked(n.y(), ctx, [&](int64_t i, int64_t off) { s_of(i, off, ps[off], ps[off + per]); });
  Tensor g = n.vjp(n.x(), sp.w(), sp.b(), s, s, ctx);
  s = Tensor();
  return times(n.x(), std::move(g), ctx);
}

/// The sign-split rules' four branches for an input with entries of both signs, on an op that
/// stacks on channels, with S = [W1; W2] (W1 = W+ / W^γ+, W2 = W- / W^γ-) and b = [b1; b2]:
///   A = op(x+; S, b) = [W1 x+ + b1; W2 x+ + b2],  B = op(x-; S) = [W1 x-; W2 x-]
///   z1 = A_1 + B_2 (branches (x+, W1, b1), (x-, W2)),  z2 = A_2 + B_1 ((x+, W2, b2), (x-, W1))
///   R_in = x+ ⊙ VJP_S([u; v]) + x- ⊙ VJP_S([v; u]),  (u, v) = coef(i, z1, z2)
/// which is Σ over the branches of x± ⊙ VJP_W(u or v) regrouped by input: two stacked
/// forwards and two stacked VJPs instead of four of each. A zero x+ still gives A (its bias);
/// a zero x- skips B and the second VJP (exact zeros).
template <class F1, class F2, class Coef>
Tensor mixed_sign_relevance(const LinearNode& n, const SignSplit& xs, F1 f1, F2 f2, ParamCache& cache, int tag,
                            Coef coef, ExecContext& ctx) {
  StackedParams<F1, F2> sp(n, f1, f2, ctx, &cache, tag);
  const Tensor& y = n.y();
  const Tensor A = n.forward(xs.xp, sp.w(), sp.b(), ctx);
  const Tensor B = xs.xn_zero ? Tensor() : n.forward(xs.xn, sp.w(), nullptr, ctx);
  const Shape sh = stacked_shape(y);
  if (A.shape() != sh || (B.raw() && B.shape() != sh))
    throw ShapeError("internal: a stacked forward gave shape " + shape_str(A.shape()) + ", expected " + shape_str(sh));
  const int64_t per = per_sample(y);
  Tensor s1 = ctx.alloc(DType::Float32, sh);
  Tensor s2 = B.raw() ? ctx.alloc(DType::Float32, sh) : Tensor();
  {
    const float* pa = A.f32();
    const float* pb = B.raw() ? B.f32() : nullptr;
    float* p1 = s1.f32();
    float* p2 = s2.raw() ? s2.f32() : nullptr;
    for_stacked(y, ctx, [&](int64_t i, int64_t off) {
      const float z1 = pb ? pa[off] + pb[off + per] : pa[off];
      const float z2 = pb ? pa[off + per] + pb[off] : pa[off + per];
      float u, v;
      coef(i, z1, z2, u, v);
      p1[off] = u, p1[off + per] = v;
      if (p2) p2[off] = v, p2[off + per] = u;
    });
  }
  Tensor acc;
  if (!xs.xp_zero) {
    acc = times(xs.xp, n.vjp(xs.xp, sp.w(), sp.b(), s1, s1, ctx), ctx);
    s1 = Tensor();
  }
  if (s2.raw()) {
    const Tensor g = n.vjp(xs.xn, sp.w(), sp.b(), s2, s2, ctx);
    acc = acc.raw() ? map3(acc, xs.xn, g, ctx, [](float r, float a, float c) { return r + a * c; })
                    : map2(xs.xn, g, ctx, [](float a, float c) { return a * c; });
  }
  return acc.raw() ? acc : Tensor::zeros(DType::Float32, n.x().shape());
}

// αβ's parameter modifiers, as types (not function pointers) so that the loops that apply them
// per call (NeuronBlocks) inline them: through a pointer, VGG-16's first dense layer took 0.5 s.
struct Same {
  float operator()(float v) const { return v; }
};
struct PosPart {
  float operator()(float v) const { return v > 0.f ? v : 0.f; }
};
struct NegPart {
  float operator()(float v) const { return v < 0.f ? v : 0.f; }
};

/// αβ (Zennit AlphaBeta; ZPlus is α = 1, β = 0 with the same branches):
///   positive part: (x+, W+, b+), (x-, W-, no bias)    z_p, s_p = R / stab(z_p)
///   negative part: (x+, W-, b-), (x-, W+, no bias)    z_n, s_n = R / stab(z_n)
///   R_in = α (x+ VJP_{W+}(s_p) + x- VJP_{W-}(s_p)) − β (x+ VJP_{W-}(s_n) + x- VJP_{W+}(s_n)).
class AlphaBetaRule final : public LinearRule {
 public:
  AlphaBetaRule(float alpha, float beta, float stab, std::string name)
      : alpha_(alpha), beta_(beta), stab_(stab), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  // x, W and b; never y (z comes from the branches' own products).
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)in;
    reads_inputs_only(v, out);
  }
  // With β != 0 both W+x and W-x are needed, and their sum is the output: the forward pass makes
  // them instead of Wx (four products per layer instead of five). With β = 0 W-x is never used.
  // With β = 0 (z+) only W+x is needed beside Wx: both come from one stacked pass where the op
  // allows it, the output being the Wx half.
  bool has_forward() const override { return true; }
  bool forward(const NodeValues& v, std::vector<Tensor>& out, std::vector<Tensor>& keep,
               ExecContext& ctx) const override {
    if (beta_ == 0.f) {
      int tags[3] = {0, 1, 4};
      return split_forward(v, name_.c_str(), same, pos_part, cache_, tags, [](float p, float) { return p; }, true,
                           true, out, keep, ctx);
    }
    if (sign_split_forward(v, name_.c_str(), {}, [](float p, float q) { return p + q; }, out, keep, ctx)) return true;
    int tags[3] = {1, 2, 3};
    return split_forward(v, name_.c_str(), pos_part, neg_part, cache_, tags, [](float p, float q) { return p + q; },
                         false, false, out, keep, ctx);
  }

 protected:
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    if (const float* pk = kept_stacked(n)) {
      const float* pr = r.f32();
      const int64_t per = per_sample(n.y());
      const float a = alpha_, mb = -beta_, eps = stab_;
      if (beta_ == 0.f) {
        // z+ after a rectifier: R_in = x ⊙ VJP_{W+}(R / stab(W+x + b+)), W+x + b+ the kept second half.
        Tensor s1 = ctx.alloc(DType::Float32, n.y().shape());
        float* ps = s1.f32();
        for_stacked(n.y(), ctx, [&](int64_t i, int64_t off) { ps[i] = pr[i] / stabilize(pk[off + per], eps); });
        // W+ and b+ are the second halves of the forward's stacked [W; W+], [b; b+]: one
        // modified copy per weight, not that and W+ again.
        StackedParams<Same, PosPart> sp(n, same, pos_part, ctx, &cache_, 4);
        const Tensor wp = sp.w().view(n.w().shape(), n.w().numel());
        const Tensor bp = n.b() ? sp.b()->view(n.b()->shape(), n.b()->numel()) : Tensor();
        Tensor g = n.vjp(n.x(), wp, n.b() ? &bp : nullptr, s1, s1, ctx);
        s1 = Tensor();
        if (a == 1.f) return times(n.x(), std::move(g), ctx);  // into g's own storage where it can
        return map2(n.x(), g, ctx, [a](float x, float c) { return a * (x * c); });
      }
      // x- = 0: R_in = x ⊙ (VJP_{W+}(α R / stab(W+x + b+)) + VJP_{W-}(−β R / stab(W-x + b-))).
      return stacked_vjp_relevance(
          n, pos_part, neg_part, cache_, 3,
          [=](int64_t i, int64_t off, float& s1, float& s2) {
            s1 = a * (pr[i] / stabilize(pk[off], eps));
            s2 = mb * (pr[i] / stabilize(pk[off + per], eps));
          },
          ctx);
    }
    if (beta_ != 0.f && kept_pair(n)) {
      // x- = 0: R_in = x ⊙ (VJP_{W+}(α R / stab(z+)) + VJP_{W-}(−β R / stab(z-))), one pass over
      // the weight where the op has the kernel (else the branches below, two passes).
      const float a = alpha_, mb = -beta_, eps = stab_;
      const Tensor s1 = map2(r, (*n.kept())[0], ctx, [=](float rv, float z) { return a * (rv / stabilize(z, eps)); });
      const Tensor s2 = map2(r, (*n.kept())[1], ctx, [=](float rv, float z) { return mb * (rv / stabilize(z, eps)); });
      Tensor g;
      if (n.vjp_sign_split(s1, s2, g, ctx)) return times(n.x(), std::move(g), ctx);
      if (NeuronBlocks::applies(n)) return times(n.x(), blocked_pair_vjp(n, pos_part, neg_part, s1, s2, ctx), ctx);
    }
    const SignSplit xs = split(n, ctx);
    if (beta_ != 0.f && n.stacks() && !n.kept_any()) {
      const float* pr = r.f32();
      const float a = alpha_, mb = -beta_, eps = stab_;
      return mixed_sign_relevance(
          n, xs, pos_part, neg_part, cache_, 3,
          [=](int64_t i, float zp, float zn, float& u, float& v) {
            u = a * (pr[i] / stabilize(zp, eps));
            v = mb * (pr[i] / stabilize(zn, eps));
          },
          ctx);
    }
    auto wp = mod_params(n, pos_part, ctx, &cache_, 1);
    auto wn = mod_params(n, neg_part, ctx, &cache_, 2);
    // W+x + b+ and W-x + b-, when the forward pass made them separately (an input after a
    // rectifier, on an op that does not stack); z+ keeps nothing there.
    const bool kept = beta_ != 0.f && kept_pair(n);
    const Tensor kept_pos = kept ? (*n.kept())[0] : Tensor();
    std::vector<Branch> pos{{&xs.xp, &wp, true, xs.xp_zero, kept_pos}, {&xs.xn, &wn, false, xs.xn_zero, {}}};
    Tensor rp = part(n, pos, r, ctx);
    Tensor out = scale(rp, alpha_, n, ctx);
    if (beta_ != 0.f) {
      std::vector<Branch> neg{{&xs.xp, &wn, true, xs.xp_zero, kept ? (*n.kept())[1] : Tensor()},
                              {&xs.xn, &wp, false, xs.xn_zero, {}}};
      Tensor rn = part(n, neg, r, ctx);
      const float beta = beta_;
      if (rn.raw()) out = map2(out, rn, ctx, [beta](float a, float c) { return a - beta * c; });
    }
    return out;
  }

 private:
  /// x+ VJP(s) + x- VJP(s) over the branches; empty when every branch has a zero input.
  Tensor part(const LinearNode& n, std::vector<Branch>& br, const Tensor& r, ExecContext& ctx) const {
    Tensor acc;
    if (br[0].x_zero && br[1].x_zero) return acc;
    Tensor z = branch_sum(n, br, ctx);
    Tensor s = normalized(r, z, stab_, ctx);
    release_sum(br, z);
    for (Branch& b : br) add_branch_relevance(n, b, s, acc, ctx);
    return acc;
  }
  static Tensor scale(const Tensor& t, float a, const LinearNode& n, ExecContext& ctx) {
    if (!t.raw()) return Tensor::zeros(DType::Float32, n.x().shape());
    if (a == 1.f) return t;
    return map1(t, ctx, [a](float v) { return a * v; });
  }
  static constexpr Same same{};
  static constexpr PosPart pos_part{};
  static constexpr NegPart neg_part{};
  float alpha_, beta_, stab_;
  std::string name_;
  mutable ParamCache cache_;
};

/// Generalized γ (Zennit Gamma), with W^γ± = W + γ W±, b^γ± = b + γ b±:
///   where y > 0: branches (x+, W^γ+, b^γ+), (x-, W^γ-, no bias), s = R / stab(their sum)
///   where y < 0: branches (x+, W^γ-, b^γ-), (x-, W^γ+, no bias), s = R / stab(their sum)
///   R_in = Σ_branches x± ⊙ VJP(s masked), y the op's own output; y = 0 gets no relevance.
/// W^γ+ = W + γW+ (up) and W^γ- = W + γW- (down), the same for the bias.
struct GammaMod {
  float g;
  bool up;
  float operator()(float v) const { return v + g * (up ? (v > 0.f ? v : 0.f) : (v < 0.f ? v : 0.f)); }
};

/// y from γ's two products: ((W^γ+ x + b^γ+) + (W^γ- x + b^γ-)) * k, k = 1 / (2 + γ).
struct GammaCombine {
  float k;
  float operator()(float p, float q) const { return (p + q) * k; }
};

class GammaRule final : public LinearRule {
 public:
  GammaRule(float gamma, float stab) : gamma_(gamma), stab_(stab) {}
  std::string name() const override { return "gamma"; }
  // The branches' products W^γ± x + b^γ± sum to (2 + γ)(Wx + b): the forward pass makes them and
  // takes the output from them, instead of Wx on top (four products per layer instead of five).
  bool has_forward() const override { return true; }
  bool forward(const NodeValues& v, std::vector<Tensor>& out, std::vector<Tensor>& keep,
               ExecContext& ctx) const override {
    if (sign_split_forward(v, "gamma", kernels::SignSplitMod{true, gamma_}, combine(), out, keep, ctx)) return true;
    int tags[3] = {1, 2, 3};
    return split_forward(v, "gamma", up(), down(), cache_, tags, combine(), false, false, out, keep, ctx);
  }
  // The sign masks need y, except where the forward kept both products in one stacked tensor:
  // y is their combine() there, recomputed bit for bit, so the output itself can be freed.
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)in;
    reads_inputs_only(v, out);
    if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0 || out.empty()) return;
    try {
      if (kept_stacked(LinearNode(v, "gamma"))) return;
    } catch (const ShapeError&) {  // backward will say what is wrong with the node
    }
    out[0] = 1;
  }

 protected:
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    if (const float* pk = kept_stacked(n)) {
      // x- = 0: R_in = x ⊙ (VJP_{W^γ+}([y > 0] R / stab(z+)) + VJP_{W^γ-}([y < 0] R / stab(z-))),
      // y = combine(z+, z-) as the forward computed it (the output's data may be freed).
      const float* pr = r.f32();
      const int64_t per = per_sample(n.y());
      const float eps = stab_;
      const auto y_of = combine();
      return stacked_vjp_relevance(
          n, up(), down(), cache_, 3,
          [=](int64_t i, int64_t off, float& s1, float& s2) {
            const float y = y_of(pk[off], pk[off + per]);
            s1 = (y > 0.f ? pr[i] : 0.f) / stabilize(pk[off], eps);
            s2 = (y < 0.f ? pr[i] : 0.f) / stabilize(pk[off + per], eps);
          },
          ctx);
    }
    if (kept_pair(n)) {
      // x- = 0: both VJPs in one pass over the weight where the op has the kernel (a dense layer
      // on one row), else block by block for a large dense weight, no modified copy kept; other
      // layers go on below (the masked cotangents are small there).
      const float eps = stab_;
      Tensor s1 = ctx.alloc(DType::Float32, r.shape()), s2 = ctx.alloc(DType::Float32, r.shape());
      {
        const float* pr = r.f32();
        const float* py = n.y().f32();
        const float* p1 = (*n.kept())[0].f32();
        const float* p2 = (*n.kept())[1].f32();
        float* q1 = s1.f32();
        float* q2 = s2.f32();
        kernels::parallel_for(r.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            q1[i] = (py[i] > 0.f ? pr[i] : 0.f) / stabilize(p1[i], eps);
            q2[i] = (py[i] < 0.f ? pr[i] : 0.f) / stabilize(p2[i], eps);
          }
        });
      }
      Tensor g;
      if (n.vjp_sign_split(s1, s2, g, ctx, kernels::SignSplitMod{true, gamma_})) return times(n.x(), std::move(g), ctx);
      if (NeuronBlocks::applies(n)) return times(n.x(), blocked_pair_vjp(n, up(), down(), s1, s2, ctx), ctx);
    }
    const SignSplit xs = split(n, ctx);
    if (n.stacks() && !n.kept_any()) {
      const float* pr = r.f32();
      const float* py = n.y().f32();
      const float eps = stab_;
      return mixed_sign_relevance(
          n, xs, up(), down(), cache_, 3,
          [=](int64_t i, float zu, float zd, float& u, float& v) {
            u = (py[i] > 0.f ? pr[i] : 0.f) / stabilize(zu, eps);
            v = (py[i] < 0.f ? pr[i] : 0.f) / stabilize(zd, eps);
          },
          ctx);
    }
    auto wu = mod_params(n, up(), ctx, &cache_, 1);
    auto wd = mod_params(n, down(), ctx, &cache_, 2);
    const Signs ys = signs_of(n.y(), ctx.threads());
    Tensor acc;
    const bool kept = kept_pair(n);
    std::vector<Branch> pos{{&xs.xp, &wu, true, xs.xp_zero, kept ? (*n.kept())[0] : Tensor()},
                            {&xs.xn, &wd, false, xs.xn_zero, {}}};
    std::vector<Branch> neg{{&xs.xp, &wd, true, xs.xp_zero, kept ? (*n.kept())[1] : Tensor()},
                            {&xs.xn, &wu, false, xs.xn_zero, {}}};
    // Zennit's reducer order: x+ g0 + x- g1 + x+ g2 + x- g3.
    if (ys.pos) part(n, pos, r, [](float y) { return y > 0.f; }, acc, ctx);
    if (ys.neg) part(n, neg, r, [](float y) { return y < 0.f; }, acc, ctx);
    return acc.raw() ? acc : Tensor::zeros(DType::Float32, n.x().shape());
  }

 private:
  template <class M>
  void part(const LinearNode& n, std::vector<Branch>& br, const Tensor& r, M mask, Tensor& acc,
            ExecContext& ctx) const {
    if (br[0].x_zero && br[1].x_zero) return;
    Tensor z = branch_sum(n, br, ctx);
    const Tensor& y = n.y();
    Tensor s = ctx.alloc(DType::Float32, r.shape());
    const float* pr = r.f32();
    const float* pz = z.f32();
    const float* py = y.f32();
    float* ps = s.f32();
    const float eps = stab_;
    kernels::parallel_for(s.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ps[i] = (mask(py[i]) ? pr[i] : 0.f) / stabilize(pz[i], eps);
    });
    release_sum(br, z);
    for (Branch& b : br) add_branch_relevance(n, b, s, acc, ctx);
  }
  /// The node's output from its two products, (W^γ+x + b^γ+ + W^γ-x + b^γ-) / (2 + γ).
  GammaCombine combine() const { return GammaCombine{1.f / (2.f + gamma_)}; }
  GammaMod up() const { return GammaMod{gamma_, true}; }
  GammaMod down() const { return GammaMod{gamma_, false}; }
  float gamma_, stab_;
  mutable ParamCache cache_;
};

// ---- input-independent rules: w² and flat ------------------------------------------------------

/// R_in = VJP_{W'}(R / stab(W' 1 + b')) on an all-ones input (Zennit's reducer takes the gradient
/// alone, not input × gradient).
Tensor ones_rule(const LinearNode& n, const Tensor& w, const Tensor* b, const Tensor& r, float stab, ExecContext& ctx) {
  const Tensor ones = filled(n.x().shape(), 1.f, ctx);
  Tensor z = n.forward(ones, w, b, ctx);
  Tensor s = normalized(r, z, stab, ctx);
  return n.vjp(ones, w, b, z, s, ctx);
}

/// Zennit WSquare: every parameter squared, the bias included.
class WSquareRule final : public LinearRule {
 public:
  explicit WSquareRule(float stab) : stab_(stab) {}
  std::string name() const override { return "wsquare"; }
  // Independent of x: only its shape is used (the products run on an all-ones input).
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    reads_inputs_only(v, out);
    if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0) return;
    try {
      in[static_cast<std::size_t>(LinearNode(v, "wsquare", false).data())] = 0;
    } catch (const ShapeError&) {  // backward will say what is wrong with the node
    }
  }

 protected:
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    auto sq = [](float v) { return v * v; };
    const Tensor w2 = map1(n.w(), ctx, sq);
    Tensor b2;
    if (n.b()) b2 = map1(*n.b(), ctx, sq);
    return ones_rule(n, w2, n.b() ? &b2 : nullptr, r, stab_, ctx);
  }

 private:
  float stab_;
};

/// Zennit Flat: every weight 1, the bias zero (zero_bias), so z counts each output's inputs.
class FlatRule final : public LinearRule {
 public:
  explicit FlatRule(float stab) : stab_(stab) {}
  std::string name() const override { return "flat"; }
  // x is passed to the VJP (only its shape matters, but the op gets the tensor); y is not read.
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)in;
    reads_inputs_only(v, out);
  }

 protected:
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    if (n.stacks() && n.x().rank() >= 2 && n.w().rank() >= 1 && r.rank() >= 2 && r.dim(1) == n.w().dim(0))
      return per_position(n, r, ctx);
    const Tensor w1 = filled(n.w().shape(), 1.f, ctx);
    return ones_rule(n, w1, nullptr, r, stab_, ctx);
  }

 private:
  // On an op that stacks on channels every output channel has the same all-ones weight, so z is
  // the same in every channel (and sample), and the VJP over M equal weights is the VJP of one
  // weight applied to the channel sum of R / stab(z): one output channel instead of M (the first
  // layer's M = 64 products became one).
  Tensor per_position(const LinearNode& n, const Tensor& r, ExecContext& ctx) const {
    Shape w1s = n.w().shape();
    w1s[0] = 1;
    const Tensor w1 = filled(w1s, 1.f, ctx);
    Shape x1s = n.x().shape();
    x1s[0] = 1;
    const Tensor z1 = n.forward(filled(x1s, 1.f, ctx), w1, nullptr, ctx);  // [1, 1, ...]
    const int64_t N = r.dim(0), M = r.dim(1), P = z1.numel();
    if (N * M * P != r.numel())
      throw ShapeError("internal: the flat rule's one-channel output " + shape_str(z1.shape()) +
                       " does not match the relevance " + shape_str(r.shape()));
    Shape s1s = r.shape();
    s1s[1] = 1;
    Tensor s1 = ctx.alloc(DType::Float32, s1s);
    const float* pr = r.f32();
    const float* pz = z1.f32();
    float* ps = s1.f32();
    const float eps = stab_;
    // Blocks of positions, channels outer: M sequential streams of a block, not M strided reads.
    constexpr int64_t kBlock = 1024;
    const int64_t blocks = (P + kBlock - 1) / kBlock;
    kernels::parallel_for(N * blocks, ctx.threads(), [&](int64_t lo, int64_t hi) {
      for (int64_t k = lo; k < hi; ++k) {
        const int64_t b = k / blocks, q0 = (k - b * blocks) * kBlock, q1 = std::min(P, q0 + kBlock);
        float* out = ps + b * P;
        std::fill(out + q0, out + q1, 0.f);
        for (int64_t m = 0; m < M; ++m) {
          const float* rm = pr + (b * M + m) * P;
          for (int64_t q = q0; q < q1; ++q) out[q] += rm[q];
        }
        for (int64_t q = q0; q < q1; ++q) out[q] /= stabilize(pz[q], eps);
      }
    }, std::max<int64_t>(1, kernels::kParallelGrain / (kBlock * std::max<int64_t>(M, 1))));
    return n.vjp(n.x(), w1, nullptr, s1, s1, ctx);
  }

  float stab_;
};

// ---- z^B ----------------------------------------------------------------------------------------

/// `v` (low or high) broadcast to x's shape, accepting what Zennit's expand() accepts and one
/// sample's shape: a scalar; the same rank with dims 1 or equal (a larger first dim is cut to the
/// batch, as Zennit's cut_batch_dim); a lower rank aligned to the right (numpy) or, failing that,
/// to the left (Zennit appends trailing singleton dims); or one sample's number of values in any
/// shape (low/high given for the model input when a Flatten precedes the first layer).
Tensor broadcast_bound(const Tensor& v, const Tensor& x, const char* what, ExecContext& ctx) {
  if (v.dtype() != DType::Float32) throw ShapeError(std::string(what) + " must be float32");
  const Shape& xs = x.shape();
  const auto rank = xs.size();
  if (v.numel() == 1) return filled(xs, v.f32()[0], ctx);
  // A source shape of x's rank: dims 1 or equal, or a larger first dim of which the first
  // x.dim(0) entries are used. Returns an empty tensor when it does not broadcast.
  auto try_shape = [&](const Shape& s, bool cut) -> Tensor {
    if (s.size() != rank) return Tensor();
    for (std::size_t k = 0; k < rank; ++k)
      if (s[k] != 1 && s[k] != xs[k] && !(cut && k == 0 && s[0] > xs[0])) return Tensor();
    Tensor y = ctx.alloc(DType::Float32, xs);
    std::vector<int64_t> st(rank, 0);  // source strides, 0 on broadcast axes
    int64_t acc = 1;
    for (std::size_t k = rank; k-- > 0;) {
      st[k] = s[k] == 1 ? 0 : acc;
      acc *= s[k];
    }
    const float* src = v.f32();
    float* dst = y.f32();
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0, n = y.numel(); i < n; ++i) {
      int64_t off = 0;
      for (std::size_t k = 0; k < rank; ++k) off += idx[k] * st[k];
      dst[i] = src[off];
      for (std::size_t k = rank; k-- > 0;) {
        if (++idx[k] < xs[k]) break;
        idx[k] = 0;
      }
    }
    return y;
  };
  const Shape& s = v.shape();
  if (x.numel() == 0) return ctx.alloc(DType::Float32, xs);
  if (s.size() <= rank) {
    Shape right(rank - s.size(), 1);  // numpy: aligned to the right
    right.insert(right.end(), s.begin(), s.end());
    Tensor y = try_shape(right, s.size() == rank);
    if (y.raw()) return y;
    Shape left = s;  // Zennit's expand: trailing singleton dims appended (no cut then)
    left.resize(rank, 1);
    y = try_shape(left, false);
    if (y.raw()) return y;
  }
  if (rank >= 1 && xs[0] > 0 && v.numel() == x.numel() / xs[0]) {
    Shape one(xs);
    one[0] = 1;
    return try_shape(one, false);  // v's values reread in one sample's shape
  }
  throw ShapeError(std::string("zbox: ") + what + " of shape " + shape_str(s) + " does not broadcast to the input " +
                   shape_str(xs) + " of this layer (give a scalar, an array shaped like one sample, or like the batch)");
}

/// Zennit ZBox: z = W x + b − (W+ L + b+) − (W- H + b-) (the biases cancel but are computed, as
/// Zennit does), s = R / stab(z), R_in = x VJP_W(s) − (L VJP_{W+}(s) + H VJP_{W-}(s)).
class ZBoxRule final : public LinearRule {
 public:
  ZBoxRule(Tensor low, Tensor high, float stab) : low_(std::move(low)), high_(std::move(high)), stab_(stab) {}
  std::string name() const override { return "zbox"; }

 protected:
  Tensor relevance(const LinearNode& n, const Tensor& r, ExecContext& ctx) const override {
    const Tensor L = broadcast_bound(low_, n.x(), "low", ctx);
    const Tensor H = broadcast_bound(high_, n.x(), "high", ctx);
    const Tensor wp = clamp_min0(n.w(), ctx), wn = clamp_max0(n.w(), ctx);
    Tensor bp, bn;
    if (n.b()) {
      bp = clamp_min0(*n.b(), ctx);
      bn = clamp_max0(*n.b(), ctx);
    }
    const Tensor* pbp = n.b() ? &bp : nullptr;
    const Tensor* pbn = n.b() ? &bn : nullptr;
    const Tensor o1 = n.forward(L, wp, pbp, ctx);
    const Tensor o2 = n.forward(H, wn, pbn, ctx);
    Tensor z = ctx.alloc(DType::Float32, n.y().shape());
    {
      const float* p0 = n.y().f32();
      const float* p1 = o1.f32();
      const float* p2 = o2.f32();
      float* pz = z.f32();
      kernels::parallel_for(z.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pz[i] = p0[i] - (p1[i] + p2[i]);
      });
    }
    Tensor s = normalized(r, z, stab_, ctx);
    const Tensor g0 = n.vjp(n.x(), n.w(), n.b(), n.y(), s, ctx);
    const Tensor g1 = n.vjp(L, wp, pbp, o1, s, ctx);
    const Tensor g2 = n.vjp(H, wn, pbn, o2, s, ctx);
    Tensor out = ctx.alloc(DType::Float32, n.x().shape());
    const float* px = n.x().f32();
    const float* pl = L.f32();
    const float* ph = H.f32();
    const float* q0 = g0.f32();
    const float* q1 = g1.f32();
    const float* q2 = g2.f32();
    float* po = out.f32();
    kernels::parallel_for(out.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) po[i] = px[i] * q0[i] - (pl[i] * q1[i] + ph[i] * q2[i]);
    });
    return out;
  }

 private:
  Tensor low_, high_;
  float stab_;
};

// ---- other kinds --------------------------------------------------------------------------------

/// Zennit Pass: what reaches the output goes to the data input unchanged.
class PassRule final : public Rule {
 public:
  std::string name() const override { return "pass"; }
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)v;
    std::fill(in.begin(), in.end(), 0);
    std::fill(out.begin(), out.end(), 0);
  }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    (void)ctx;
    if (rin.size() < need.size()) rin.resize(need.size());
    if (!need.empty() && need[0] && !rout.empty() && rout[0] && !v.in.empty() && v.in[0]) {
      if (rout[0]->shape() != v.in[0]->shape())
        throw ShapeError("the pass rule needs an output shaped like the input, got output " +
                         shape_str(rout[0]->shape()) + " for input " + shape_str(v.in[0]->shape()));
      rin[0] = *rout[0];
    }
    zero_missing(v, need, rin);
  }
};

class NormRule final : public Rule {
 public:
  explicit NormRule(float stab) : stab_(stab) {}
  std::string name() const override { return "norm"; }
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)in;
    if (sum_recomputable(v)) out[0] = 0;
  }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    proportional(v, rout, need, rin, stab_, ctx);
  }

 private:
  float stab_;
};

}  // namespace

RulePtr epsilon_rule(float epsilon) { return std::make_shared<EpsilonRule>(epsilon); }
RulePtr zplus_rule(float stabilizer) { return std::make_shared<AlphaBetaRule>(1.f, 0.f, stabilizer, "zplus"); }
RulePtr alpha_beta_rule(float alpha, float beta, float stabilizer) {
  return std::make_shared<AlphaBetaRule>(alpha, beta, stabilizer, "alpha_beta");
}
RulePtr gamma_rule(float gamma, float stabilizer) { return std::make_shared<GammaRule>(gamma, stabilizer); }
RulePtr wsquare_rule(float stabilizer) { return std::make_shared<WSquareRule>(stabilizer); }
RulePtr flat_rule(float stabilizer) { return std::make_shared<FlatRule>(stabilizer); }
RulePtr zbox_rule(const Tensor& low, const Tensor& high, float stabilizer) {
  if (low.dtype() != DType::Float32 || high.dtype() != DType::Float32)
    throw InvalidArgument("zbox: low and high must be float arrays or scalars");
  return std::make_shared<ZBoxRule>(low, high, stabilizer);
}
RulePtr pass_rule() { return std::make_shared<PassRule>(); }
RulePtr norm_rule(float stabilizer) { return std::make_shared<NormRule>(stabilizer); }

}  // namespace onnxplain::rules
