// skl2onnx classifiers end in ZipMap (a sequence of maps) and an int64 label branch; neither is a
// tensor an explanation can start from. Keep the probability tensor, drop the labels.
#include <algorithm>

#include "passes/passes.hpp"

namespace onnxplain::passes {

void prune_outputs(Graph& g) {
  for (int& o : g.outputs) {
    const Value& v = g.values[static_cast<std::size_t>(o)];
    if (v.producer < 0) continue;
    const Node& n = g.nodes[static_cast<std::size_t>(v.producer)];
    if (n.op_type == "ZipMap" && !n.inputs.empty() && n.inputs[0] >= 0) {
      g.notes.push_back("output '" + v.name + "' (ZipMap) replaced by its probability tensor '" +
                        g.values[static_cast<std::size_t>(n.inputs[0])].name + "'");
      o = n.inputs[0];
    }
  }
  std::vector<int> kept;
  for (int o : g.outputs) {
    const Value& v = g.values[static_cast<std::size_t>(o)];
    if (v.info.dtype == DType::Int64) continue;
    if (std::find(kept.begin(), kept.end(), o) == kept.end()) kept.push_back(o);
  }
  if (!kept.empty() && kept.size() != g.outputs.size()) {
    for (int o : g.outputs)
      if (std::find(kept.begin(), kept.end(), o) == kept.end())
        g.notes.push_back("integer output '" + g.values[static_cast<std::size_t>(o)].name +
                          "' dropped (class labels cannot be explained; use the scores)");
    g.outputs = kept;
  }
  g.remove_dead_nodes();
}

}  // namespace onnxplain::passes
