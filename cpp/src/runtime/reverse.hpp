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

using RuleOf = std::function<const rules::Rule&(std::size_t)>;

/// `values`: every value of a forward pass (Model::run with keep; values no rule reads may have
/// their shape only). `start[k]`: what enters graph output k (an empty tensor = nothing).
/// `rule_of(i)`: the rule for node i. Returns one tensor per graph input, shaped like it (zeros
/// where nothing arrives). `kept`, when given, holds per node what the rule's forward() kept
/// (rules::NodeValues::kept). The sweep frees, as it passes, each value after the last node whose
/// rule reads it (Rule::reads), and each node's kept products after its rule ran: `values` and
/// `kept` are left with shapes only, so the caller must not read their data afterwards.
std::vector<Tensor> reverse_sweep(const Model& m, std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const RuleOf& rule_of, int threads, std::vector<std::vector<Tensor>>* kept = nullptr);
/// The same on values the caller keeps (nothing of theirs is freed).
std::vector<Tensor> reverse_sweep(const Model& m, const std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const RuleOf& rule_of, int threads,
                                  const std::vector<std::vector<Tensor>>* kept = nullptr);

/// A Model::run keep filter for a forward pass whose values go to reverse_sweep with these rules
/// and a start on the graph outputs flagged in `started`: after node i it marks what node i's
/// rule will read (Rule::reads, with what its forward kept in (*kept)[i]), if the sweep will run
/// node i at all. `kept` must outlive the filter (it is read as the forward pass fills it).
Model::KeepFilter reverse_keep_filter(const Model& m, const RuleOf& rule_of,
                                      const std::vector<std::vector<Tensor>>* kept, const std::vector<char>& started);

/// The Model::run keep query that goes with that filter: whether the sweep reads the data of
/// value v, node i's output read only by node i + 1, through the rule of node i or of node i + 1
/// (Rule::reads on the shapes given; with what node i's forward kept; yes where node i + 1's rule
/// has a forward of its own, which a fused node would skip).
Model::KeepQuery reverse_read_query(const Model& m, const RuleOf& rule_of,
                                    const std::vector<std::vector<Tensor>>* kept, const std::vector<char>& started);

/// Per value: written by a rectifier (Op::rectifier()), or by an op that keeps non-negativity
/// (Op::keeps_nonneg()) from float inputs that all have the flag: no entry is negative.
std::vector<char> nonneg_values(const Graph& g);

/// The forward-time view of node i for a rule's forward(): op, inputs and their flags.
void node_inputs(const Graph& g, std::size_t i, const std::vector<const Tensor*>& ins,
                 const std::vector<char>& nonneg, rules::NodeValues* nv);

}  // namespace onnxplain::runtime
