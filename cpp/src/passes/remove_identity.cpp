// Identity and inference-mode Dropout only rename values; removing them keeps the reverse passes
// from having to route relevance through no-ops.
#include "passes/passes.hpp"
#include "passes/util.hpp"

namespace onnxplain::passes {

void remove_identity(Graph& g) {
  bool changed = false;
  for (auto& n : g.nodes) {
    if (!n.domain.empty() && n.domain != "ai.onnx") continue;
    if (n.op_type != "Identity" && n.op_type != "Dropout") continue;
    if (n.inputs.empty() || n.inputs[0] < 0 || n.outputs.empty()) continue;
    if (n.op_type == "Dropout") {
      // A used mask output, or a training_mode input, is left to the op (which refuses training).
      if (n.outputs.size() > 1 && n.outputs[1] >= 0) {
        bool mask_used = g.is_graph_output(n.outputs[1]);
        for (const auto& m : g.nodes)
          for (int in : m.inputs)
            if (in == n.outputs[1]) mask_used = true;
        if (mask_used) continue;
      }
      if (n.inputs.size() > 2 && n.inputs[2] >= 0) continue;
    }
    int in = n.inputs[0], out = n.outputs[0];
    Value& vin = g.values[static_cast<std::size_t>(in)];
    if (g.is_graph_output(out)) {
      // Keep the output's name: the producer of `in` now writes the output value directly.
      if (vin.producer < 0 || g.is_graph_output(in)) continue;
      Node& p = g.nodes[static_cast<std::size_t>(vin.producer)];
      for (int& o : p.outputs)
        if (o == in) o = out;
      g.replace_uses(in, out);
      g.values[static_cast<std::size_t>(out)].producer = vin.producer;
    } else {
      g.replace_uses(out, in);
    }
    n.outputs.clear();
    changed = true;
  }
  if (changed) {
    erase_cleared_nodes(g);
    g.toposort();
  }
}

}  // namespace onnxplain::passes
