#include "rules/deeplift.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/parallel.hpp"
#include "rules/linear_node.hpp"

namespace onnxplain::rules {
namespace {

constexpr float kNearZero = 1e-10f;

/// Elements of the input half of a stacked tensor (the reference of element i is at i + half).
int64_t half_of(const Tensor& t, int64_t batch, const NodeValues& v) {
  if (t.rank() < 1 || t.dim(0) != batch)
    throw ShapeError(v.op->context() + ": DeepLIFT runs inputs and references stacked on axis 0 (batch " +
                     std::to_string(batch) + "), but this node sees shape " + shape_str(t.shape()) +
                     "; models whose values do not keep the batch on axis 0 are not supported");
  return t.numel() / 2;
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

class RescaleRule final : public Rule {
 public:
  explicit RescaleRule(int64_t batch) : batch_(batch) {}
  std::string name() const override { return "deeplift.rescale"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (rin.size() < need.size()) rin.resize(need.size());
    if (need.empty() || !need[0] || rout.empty() || !rout[0] || !v.in[0]) return zero_missing(v, need, rin);
    const Tensor& x = *v.in[0];
    const Tensor& y = *v.out[0];
    if (x.shape() != y.shape())
      throw ShapeError(v.op->context() + ": the Rescale rule needs an element-wise op (input " + shape_str(x.shape()) +
                       ", output " + shape_str(y.shape()) + ")");
    const int64_t n = half_of(x, batch_, v);
    // The gradient, for the entries whose input barely moved from the reference.
    Tensor g = vjp0(v, *rout[0], ctx);
    const float* px = x.f32();
    const float* py = y.f32();
    const float* pr = rout[0]->f32();
    float* pg = g.f32();
    kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float dx = px[i] - px[i + n];
        if (std::fabs(dx) >= kNearZero) pg[i] = pr[i] * ((py[i] - py[i + n]) / dx);
      }
    });
    std::fill(pg + n, pg + 2 * n, 0.f);
    rin[0] = g;
    zero_missing(v, need, rin);
  }

 private:
  int64_t batch_;
};

class MaxPoolRule final : public Rule {
 public:
  explicit MaxPoolRule(int64_t batch) : batch_(batch) {}
  std::string name() const override { return "deeplift.maxpool"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (rin.size() < need.size()) rin.resize(need.size());
    if (need.empty() || !need[0] || rout.empty() || !rout[0] || !v.in[0]) return zero_missing(v, need, rin);
    const Tensor& x = *v.in[0];
    const Tensor& y = *v.out[0];
    const Tensor& r = *rout[0];
    const int64_t m = half_of(x, batch_, v), n = half_of(y, batch_, v);
    const float* py = y.f32();
    const float* pr = r.f32();
    // Δy split at the cross maximum c: the input half carries r·(c − y_ref) to the input's
    // argmax, the reference half r·(y − c) to the reference's.
    Tensor gs(DType::Float32, y.shape());
    float* q = gs.f32();
    kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float c = std::max(py[i], py[i + n]);
        q[i] = pr[i] * (c - py[i + n]);
        q[i + n] = pr[i] * (py[i] - c);
      }
    });
    const Tensor u = vjp0(v, gs, ctx);
    Tensor g = vjp0(v, r, ctx);  // the plain gradient, where the input did not move
    const float* px = x.f32();
    const float* pu = u.f32();
    float* pg = g.f32();
    kernels::parallel_for(m, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float dx = px[i] - px[i + m];
        if (std::fabs(dx) >= kNearZero) pg[i] = (pu[i] + pu[i + m]) / dx;
      }
    });
    std::fill(pg + m, pg + 2 * m, 0.f);
    rin[0] = g;
    zero_missing(v, need, rin);
  }

 private:
  int64_t batch_;
};

class RefuseRule final : public Rule {
 public:
  explicit RefuseRule(std::string why) : why_(std::move(why)) {}
  std::string name() const override { return "refuse"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>&, const std::vector<bool>&,
                std::vector<Tensor>&, ExecContext&) const override {
    throw InvalidArgument(v.op->context() + ": " + why_);
  }

 private:
  std::string why_;
};

}  // namespace

RulePtr deeplift_rescale_rule(int64_t batch) { return std::make_shared<RescaleRule>(batch); }
RulePtr deeplift_maxpool_rule(int64_t batch) { return std::make_shared<MaxPoolRule>(batch); }
RulePtr refuse_rule(std::string why) { return std::make_shared<RefuseRule>(std::move(why)); }

}  // namespace onnxplain::rules
