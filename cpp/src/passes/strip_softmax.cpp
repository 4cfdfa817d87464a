// Explanations start from the logits (iNNvestigate's convention): a Softmax or LogSoftmax that
// produces a graph output is removed. Model.predict then returns logits; load with
// strip_softmax=False to keep probabilities.
#include "ops/op.hpp"
#include "passes/passes.hpp"

namespace onnxplain::passes {

void strip_softmax(Graph& g) {
  bool changed = false;
  for (int& o : g.outputs) {
    const Value& v = g.values[static_cast<std::size_t>(o)];
    if (v.producer < 0) continue;
    const Node& n = g.nodes[static_cast<std::size_t>(v.producer)];
    if (!n.op || n.op->kind() != ops::OpKind::Softmax || n.inputs.empty() || n.inputs[0] < 0) continue;
    g.notes.push_back("stripped " + Graph::node_context(n) + ": output '" + v.name + "' is now the logits '" +
                      g.values[static_cast<std::size_t>(n.inputs[0])].name + "'");
    o = n.inputs[0];
    changed = true;
  }
  if (changed) g.remove_dead_nodes();
}

}  // namespace onnxplain::passes
