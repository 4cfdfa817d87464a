// A rule maps what flows back into one node's outputs (a cotangent for gradients, relevance for
// LRP) to its inputs. Rules are op-agnostic: they see the op only through its kind, its
// forward() and vjp(), and for linear ops which inputs are the weight and bias (DESIGN.md, rules).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/graph.hpp"
#include "ops/op.hpp"

namespace onnxplain::rules {

/// One node as the reverse sweep hands it to a rule: its op and forward values.
struct NodeValues {
  const Node* node = nullptr;
  const ops::Op* op = nullptr;
  std::vector<const Tensor*> in;   // forward inputs (nullptr for omitted optional inputs)
  std::vector<const Tensor*> out;  // forward outputs
  std::vector<char> in_constant;   // per input: a constant of the graph (weights, biases)
  std::vector<char> in_nonneg;     // per input: no entry is negative (runtime::nonneg_values)
  const std::vector<Tensor>* kept = nullptr;  // what this rule's forward() kept (backward only)
};

class Rule {
 public:
  virtual ~Rule() = default;
  virtual std::string name() const = 0;
  /// Optionally computes the node's outputs during the forward pass (v.out is empty then) from
  /// products the backward pass needs anyway, keeping those in `keep` (handed back as v.kept).
  /// The sign-split rules get W+x and W-x there and sum them to the output, so the plain forward
  /// product is not computed on top. Returns false to let the op's own forward run.
  virtual bool forward(const NodeValues& v, std::vector<Tensor>& out, std::vector<Tensor>& keep,
                       ExecContext& ctx) const {
    (void)v, (void)out, (void)keep, (void)ctx;
    return false;
  }
  /// Whether forward() may ever return true (the runtime skips the hook otherwise).
  virtual bool has_forward() const { return false; }
  /// Which of the node's forward values backward() reads beyond their shapes: `in[k]` / `out[k]`
  /// arrive set (to v.in.size() / v.out.size() entries) and a rule clears those it never reads,
  /// so the runtime frees them once the forward pass is done with them (a value whose data is
  /// freed still has its shape: Tensor with no storage). Asked once after the node's forward
  /// (v.kept as backward will see it) and once before the sweep; the answer must depend only on
  /// the node, the shapes and v.kept, so that both agree. By default every value is read.
  virtual void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const {
    (void)v, (void)in, (void)out;
  }
  /// `rout[k]`: what flows into output k (nullptr = nothing). Fills rin[i] for each i with need[i].
  virtual void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                        std::vector<Tensor>& rin, ExecContext& ctx) const = 0;
};

using RulePtr = std::shared_ptr<const Rule>;

/// The plain vector-Jacobian product (every gradient method, and LRP's treatment of routing ops).
class GradientRule final : public Rule {
 public:
  std::string name() const override { return "gradient"; }
  void reads(const NodeValues& v, std::vector<char>& in, std::vector<char>& out) const override {
    v.op->vjp_reads(v.in_constant, in, out);
  }
  void backward(const NodeValues& v, const std::vector<const Tensor*>& rout, const std::vector<bool>& need,
                std::vector<Tensor>& rin, ExecContext& ctx) const override {
    v.op->vjp(v.in, v.out, rout, need, rin, ctx);
  }
};

}  // namespace onnxplain::rules
