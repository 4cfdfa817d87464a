// The reverse sweep: walks the graph backwards from a start tensor per graph output, asks each
// node's rule to map what reaches its outputs to its inputs, sums at fan-out, and returns what
// reaches the graph inputs. Every reverse method (gradients, LRP, Deep Taylor, DeepLIFT,
// PatternNet) is this one sweep with a different rule per node.
#pragma once

#include <functional>
#include <vector>

#include "rules/rule.hpp"
#include "runtime/model.hpp"

namespace onnxplain::runtime {

/// `values`: every value of a forward pass (Model::run with keep). `start[k]`: what enters graph
/// output k (an empty tensor = nothing). `rule_of(i)`: the rule for node i. Returns one tensor per
/// graph input, shaped like it (zeros where nothing arrives).
/// `kept`, when given, holds per node what the rule's forward() kept (rules::NodeValues::kept).
std::vector<Tensor> reverse_sweep(const Model& m, const std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const std::function<const rules::Rule&(std::size_t)>& rule_of, int threads,
                                  const std::vector<std::vector<Tensor>>* kept = nullptr);

/// Per value: written by a rectifier (Op::rectifier()), or by an op that keeps non-negativity
/// (Op::keeps_nonneg()) from float inputs that all have the flag: no entry is negative.
std::vector<char> nonneg_values(const Graph& g);

/// The forward-time view of node i for a rule's forward(): op, inputs and their flags.
void node_inputs(const Graph& g, std::size_t i, const std::vector<const Tensor*>& ins,
                 const std::vector<char>& nonneg, rules::NodeValues* nv);

}  // namespace onnxplain::runtime
