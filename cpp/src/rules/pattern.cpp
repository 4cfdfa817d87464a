#include "rules/pattern.hpp"

#include <cstring>
#include <mutex>

#include "kernels/parallel.hpp"
#include "rules/linear_node.hpp"

namespace onnxplain::rules {
namespace {

class PatternRule final : public Rule {
 public:
  PatternRule(std::string name, Tensor a_pos, Tensor a_neg)
      : name_(std::move(name)), pos_(std::move(a_pos)), neg_(std::move(a_neg)) {
    if (neg_.numel() && neg_.shape() != pos_.shape())
      throw InvalidArgument("pattern rule: a+ " + shape_str(pos_.shape()) + " and a- " + shape_str(neg_.shape()) +
                            " differ in shape");
  }
  std::string name() const override { return name_; }

  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    LinearNode node(v, "pattern");
    if (rin.size() < need.size()) rin.resize(need.size());
    const auto d = static_cast<std::size_t>(node.data());
    if (d >= need.size() || !need[d] || rout.empty() || !rout[0] || node.x().numel() == 0)
      return zero_missing(v, need, rin);
    const Tensor& r = *rout[0];
    const Tensor& y = node.y();
    if (r.shape() != y.shape())
      throw ShapeError("relevance of shape " + shape_str(r.shape()) + " reaches an output of shape " +
                       shape_str(y.shape()));
    if (node.w().shape() != pos_.shape())
      throw ShapeError("the pattern " + shape_str(pos_.shape()) + " does not fit the weight " +
                       shape_str(node.w().shape()));
    if (!neg_.numel()) {
      rin[d] = node.vjp(node.x(), pos_, nullptr, y, r, ctx);
      return zero_missing(v, need, rin);
    }
    // Which components the signal reaches: after a ReLU nothing arrives where y <= 0.
    const float* pr = r.f32();
    const float* py = y.f32();
    const int64_t n = r.numel();
    int any_pos = 0, any_neg = 0;
    kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
      int fp = 0, fn = 0;
      for (int64_t i = b; i < e; ++i) {
        const int nz = pr[i] != 0.f;
        fp |= nz & (py[i] > 0.f);
        fn |= nz & !(py[i] > 0.f);
      }
      if (fp) {
#pragma omp atomic write
        any_pos = 1;
      }
      if (fn) {
#pragma omp atomic write
        any_neg = 1;
      }
    });
    if (!any_neg) {
      rin[d] = node.vjp(node.x(), pos_, nullptr, y, r, ctx);
      return zero_missing(v, need, rin);
    }
    if (!any_pos) {
      rin[d] = node.vjp(node.x(), neg_, nullptr, y, r, ctx);
      return zero_missing(v, need, rin);
    }
    const int ao = v.op->out_neuron_axis(y.rank());
    const int aw = v.op->weight_neuron_axis(pos_.rank());
    if (v.op->stacks_on_channels() && aw == 0 && ao >= 0) {
      // One VJP over [a+; a-] with the signal split into the two halves of the stacked output.
      int64_t outer = 1, inner = 1;
      for (int k = 0; k < y.rank(); ++k) {
        if (k < ao) outer *= y.dim(k);
        if (k > ao) inner *= y.dim(k);
      }
      const int64_t M = y.dim(ao);
      Shape s = y.shape();
      s[static_cast<std::size_t>(ao)] = 2 * M;
      Tensor g(DType::Float32, s);
      float* pg = g.f32();
      kernels::parallel_for(outer * M, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t row = b; row < e; ++row) {
          const int64_t o = row / M, j = row % M;
          const float* rr = pr + row * inner;
          const float* yy = py + row * inner;
          float* gp = pg + (o * 2 * M + j) * inner;
          float* gn = pg + (o * 2 * M + M + j) * inner;
          for (int64_t i = 0; i < inner; ++i) {
            const bool on = yy[i] > 0.f;
            gp[i] = on ? rr[i] : 0.f;
            gn[i] = on ? 0.f : rr[i];
          }
        }
      }, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, inner)));
      rin[d] = node.vjp(node.x(), stacked(), nullptr, g, g, ctx);
      return zero_missing(v, need, rin);
    }
    Tensor gp(DType::Float32, r.shape()), gn(DType::Float32, r.shape());
    float* qp = gp.f32();
    float* qn = gn.f32();
    kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const bool on = py[i] > 0.f;
        qp[i] = on ? pr[i] : 0.f;
        qn[i] = on ? 0.f : pr[i];
      }
    });
    Tensor a = node.vjp(node.x(), pos_, nullptr, y, gp, ctx);
    const Tensor b = node.vjp(node.x(), neg_, nullptr, y, gn, ctx);
    float* pa = a.f32();
    const float* pb = b.f32();
    kernels::parallel_for(a.numel(), ctx.threads(), [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) pa[i] += pb[i];
    });
    rin[d] = a;
    zero_missing(v, need, rin);
  }

 private:
  /// [a+; a-] along axis 0, made on first use (only ops that stack on channels need it; a dense
  /// layer's would double the memory its patterns take).
  const Tensor& stacked() const {
    std::call_once(stacked_once_, [this] {
      Shape s = pos_.shape();
      s[0] *= 2;
      Tensor t(DType::Float32, s);
      std::memcpy(t.f32(), pos_.f32(), pos_.nbytes());
      std::memcpy(t.f32() + pos_.numel(), neg_.f32(), neg_.nbytes());
      stacked_ = t.frozen();
    });
    return stacked_;
  }
  std::string name_;
  Tensor pos_, neg_;
  mutable Tensor stacked_;
  mutable std::once_flag stacked_once_;
};

}  // namespace

RulePtr pattern_rule(const std::string& name, Tensor a_pos, Tensor a_neg) {
  return std::make_shared<PatternRule>(name, std::move(a_pos), std::move(a_neg));
}

}  // namespace onnxplain::rules
