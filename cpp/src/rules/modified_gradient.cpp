#include "rules/modified_gradient.hpp"

#include <algorithm>

#include "kernels/parallel.hpp"

namespace onnxplain::rules {
namespace {

Tensor rectified(const Tensor& r, ExecContext& ctx) {
  Tensor y = ctx.alloc(DType::Float32, r.shape());
  const float* p = r.f32();
  float* q = y.f32();
  kernels::parallel_for(r.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) q[i] = p[i] > 0.f ? p[i] : 0.f;
  });
  return y;
}

class DeconvNet final : public Rule {
 public:
  std::string name() const override { return "deconvnet"; }
  // Only what flows back is rectified: no forward value is read.
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    (void)v;
    std::fill(in.begin(), in.end(), 0);
    std::fill(out.begin(), out.end(), 0);
  }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    if (!need.empty() && need[0]) rin[0] = rectified(*rout.at(0), ctx);
    (void)v;
  }
};

class GuidedBackprop final : public Rule {
 public:
  std::string name() const override { return "guided_backprop"; }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    Tensor r = rectified(*rout.at(0), ctx);
    std::vector<const Tensor*> g{&r};
    v.op->vjp(v.in, v.out, g, need, rin, ctx);
  }
};

}  // namespace

RulePtr deconvnet_rule() { return std::make_shared<DeconvNet>(); }
RulePtr guided_backprop_rule() { return std::make_shared<GuidedBackprop>(); }

}  // namespace onnxplain::rules
