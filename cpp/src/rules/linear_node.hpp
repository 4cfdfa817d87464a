// A linear node (OpKind::Linear) seen through its op: the data input, weight and bias, and the
// op's forward / VJP with any of them replaced. Every rule on linear ops (the LRP family, the
// pattern rules) is built from these two calls, so it works for Conv, Gemm, MatMul alike.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "rules/rule.hpp"

namespace onnxplain::rules {

/// The data input, weight and bias of a linear node, and its op's forward/VJP with any of them
/// replaced. The data input is the first present input that is neither weight nor bias.
class LinearNode {
 public:
  using Ptrs = std::vector<const Tensor*>;
  using OpKind = ops::OpKind;

  /// `with_output`: the node's forward output must be there (false in a rule's forward()).
  LinearNode(const NodeValues& v, const char* rule, bool with_output = true) : v_(v) {
    if (v.op->kind() != OpKind::Linear || v.op->weight_input() < 0)
      throw ShapeError(std::string("the ") + rule + " rule needs a linear op with a weight, but this op's kind is " +
                       ops::kind_name(v.op->kind()));
    w_ = v.op->weight_input();
    b_ = v.op->bias_input();
    for (std::size_t i = 0; i < v.in.size(); ++i)
      if (v.in[i] && static_cast<int>(i) != w_ && static_cast<int>(i) != b_) {
        d_ = static_cast<int>(i);
        break;
      }
    if (d_ < 0 || static_cast<std::size_t>(w_) >= v.in.size() || !v.in[static_cast<std::size_t>(w_)])
      throw ShapeError(std::string("the ") + rule + " rule found no data input or no weight on this linear op");
    if (b_ >= 0 && (static_cast<std::size_t>(b_) >= v.in.size() || !v.in[static_cast<std::size_t>(b_)])) b_ = -1;
    if (with_output && (v.out.empty() || !v.out[0]))
      throw ShapeError(std::string("the ") + rule + " rule needs the op's output");
  }
  const ops::Op& op() const { return *v_.op; }
  int data() const { return d_; }
  /// The data input has no negative entries (it comes from a rectifier, or pooling or routing of
  /// one: NodeValues::in_nonneg), so no scan is needed to know it.
  bool x_nonneg() const {
    const auto d = static_cast<std::size_t>(d_);
    return d < v_.in_nonneg.size() && v_.in_nonneg[d];
  }
  const Tensor& x() const { return *v_.in[static_cast<std::size_t>(d_)]; }
  const Tensor& w() const { return *v_.in[static_cast<std::size_t>(w_)]; }
  const Tensor* b() const { return b_ >= 0 ? v_.in[static_cast<std::size_t>(b_)] : nullptr; }
  const Tensor& y() const { return *v_.out[0]; }
  /// Weight and bias are graph constants (so a modified copy may be kept across calls).
  bool params_constant() const {
    auto is_const = [&](int i) {
      return i < 0 || (static_cast<std::size_t>(i) < v_.in_constant.size() && v_.in_constant[static_cast<std::size_t>(i)]);
    };
    return is_const(w_) && is_const(b_);
  }

  /// What this rule's forward() kept for the node (nullptr or empty: nothing).
  const std::vector<Tensor>* kept() const { return v_.kept; }
  /// The op stacks on channels (Op::stacks_on_channels).
  bool stacks() const { return v_.op->stacks_on_channels(); }
  /// The rule's forward() kept products for this node.
  bool kept_any() const { return v_.kept && !v_.kept->empty(); }

  /// The op's one-pass products op(x; W1, b1) and op(x; W2, b2) on the node's own inputs, (W1, W2)
  /// = (W+, W-) or γ's pair (Op::forward_sign_split); false where the op has no such kernel.
  bool forward_sign_split(Tensor& pos, Tensor& neg, ExecContext& ctx, const kernels::SignSplitMod& mod = {}) const {
    return v_.op->forward_sign_split(v_.in, pos, neg, ctx, mod);
  }
  /// VJP_{W1}(g1) + VJP_{W2}(g2) in one pass (Op::vjp_sign_split); false where not offered.
  bool vjp_sign_split(const Tensor& g1, const Tensor& g2, Tensor& gx, ExecContext& ctx,
                      const kernels::SignSplitMod& mod = {}) const {
    return v_.op->vjp_sign_split(v_.in, g1, g2, gx, ctx, mod);
  }

  Tensor forward(const Tensor& x, const Tensor& w, const Tensor* b, ExecContext& ctx) const {
    Ptrs in = inputs(x, w, b);
    std::vector<Tensor> out(std::max<std::size_t>(1, v_.node ? v_.node->outputs.size() : v_.out.size()));
    v_.op->forward(in, out, ctx);
    return out.at(0);
  }
  /// d(sum(gy * y))/dx for y = op(x, w, b); `y` is that branch's output (only its shape matters
  /// to a linear op's VJP).
  Tensor vjp(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Tensor& gy,
             ExecContext& ctx) const {
    Ptrs in = inputs(x, w, b);
    Ptrs out = v_.out;
    out[0] = &y;
    Ptrs gout(v_.out.size(), nullptr);
    gout[0] = &gy;
    std::vector<bool> need(in.size(), false);
    need[static_cast<std::size_t>(d_)] = true;
    std::vector<Tensor> gin(in.size());
    v_.op->vjp(in, out, gout, need, gin, ctx);
    return gin[static_cast<std::size_t>(d_)];
  }

 private:
  Ptrs inputs(const Tensor& x, const Tensor& w, const Tensor* b) const {
    Ptrs in = v_.in;
    in[static_cast<std::size_t>(d_)] = &x;
    in[static_cast<std::size_t>(w_)] = &w;
    if (b_ >= 0) in[static_cast<std::size_t>(b_)] = b;
    return in;
  }
  const NodeValues& v_;
  int d_ = -1, w_ = -1, b_ = -1;
};


/// Zeros for every needed input the rule left without relevance (called last: zero-filling an
/// activation-sized tensor only to overwrite it cost a pass over memory per layer).
inline void zero_missing(const NodeValues& v, const std::vector<bool>& need, std::vector<Tensor>& rin) {
  if (rin.size() < need.size()) rin.resize(need.size());
  for (std::size_t i = 0; i < need.size(); ++i)
    if (need[i] && i < v.in.size() && v.in[i] && !rin[i].raw())
      rin[i] = Tensor::zeros(DType::Float32, v.in[i]->shape());
}

}  // namespace onnxplain::rules
