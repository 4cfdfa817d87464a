// Small helpers shared by the rewrite passes.
#pragma once

#include <algorithm>

#include "ir/graph.hpp"

namespace onnxplain::passes {

/// Removes nodes whose outputs were cleared by a pass (the "deleted" mark), keeping the order.
inline void erase_cleared_nodes(Graph& g) {
  g.nodes.erase(std::remove_if(g.nodes.begin(), g.nodes.end(), [](const Node& n) { return n.outputs.empty(); }),
                g.nodes.end());
  g.remove_dead_nodes();
}

/// The constant behind value v, or nullptr.
inline const Tensor* constant_of(const Graph& g, int v) {
  if (v < 0) return nullptr;
  const Value& val = g.values[static_cast<std::size_t>(v)];
  return val.is_constant ? &val.constant : nullptr;
}

/// Whether value v is read by exactly one node (and is not a graph output).
inline bool single_reader(const Graph& g, const std::vector<std::vector<int>>& consumers, int v) {
  return consumers[static_cast<std::size_t>(v)].size() == 1 && !g.is_graph_output(v);
}

}  // namespace onnxplain::passes
