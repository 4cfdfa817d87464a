// tf2onnx writes every Keras Dense layer, and skl2onnx every MLP layer, as MatMul + Add(bias).
// The reverse passes must see weight and bias of one layer (LRP's epsilon rule divides by the
// full pre-activation z = Wx + b), so the pair becomes one MatMul node with a bias input.
#include "ops/op.hpp"
#include "passes/passes.hpp"
#include "passes/util.hpp"

namespace onnxplain::passes {

void fuse_matmul_add(Graph& g) {
  auto consumers = g.consumers();
  bool changed = false;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& mm = g.nodes[i];
    if (mm.op_type != "MatMul" || !mm.op || mm.op->kind() != ops::OpKind::Linear) continue;
    if (mm.inputs.size() != 2 || mm.outputs.size() != 1) continue;
    const Tensor* w = constant_of(g, mm.inputs[1]);
    if (!w || w->rank() != 2) continue;
    int y = mm.outputs[0];
    if (!single_reader(g, consumers, y)) continue;
    Node& add = g.nodes[static_cast<std::size_t>(consumers[static_cast<std::size_t>(y)][0])];
    if (add.op_type != "Add" || add.inputs.size() != 2 || add.outputs.empty()) continue;
    int other = add.inputs[0] == y ? add.inputs[1] : add.inputs[0];
    if (add.inputs[0] == add.inputs[1]) continue;
    const Tensor* b = constant_of(g, other);
    if (!b || b->dtype() != DType::Float32) continue;
    const int64_t n_out = w->dim(1);
    // Only a bias along the last axis that does not change the output's shape.
    bool along_last = b->numel() == n_out && b->rank() >= 1 && b->dim(b->rank() - 1) == n_out;
    const ValueInfo& yi = g.values[static_cast<std::size_t>(y)].info;
    if (!along_last || !yi.has_rank || b->rank() > yi.rank()) continue;
    int bias = g.add_constant(g.values[static_cast<std::size_t>(other)].name + "_bias", b->reshaped({n_out}));
    mm.inputs.push_back(bias);
    mm.outputs = add.outputs;
    add.outputs.clear();
    instantiate(g, i);
    changed = true;
  }
  if (changed) {
    erase_cleared_nodes(g);
    infer_shapes(g);
  }
}

}  // namespace onnxplain::passes
