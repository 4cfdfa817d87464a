// Op instantiation, shape inference and constant folding: one walk in topological order.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <map>

#include "ops/op.hpp"
#include "passes/passes.hpp"

namespace onnxplain::passes {

namespace {
ops::NodeDesc describe(const Graph& g, const Node& n) {
  ops::NodeDesc d;
  d.name = n.name;
  d.op_type = n.op_type;
  d.domain = n.domain;
  d.attrs = &n.attrs;
  d.opset = g.opset();
  d.num_outputs = n.outputs.size();
  for (int in : n.inputs) {
    d.input_present.push_back(in >= 0);
    const Value* v = in >= 0 ? &g.values[static_cast<std::size_t>(in)] : nullptr;
    d.const_inputs.push_back(v && v->is_constant ? &v->constant : nullptr);
  }
  return d;
}

std::vector<ValueInfo> input_infos(const Graph& g, const Node& n) {
  std::vector<ValueInfo> infos;
  for (int in : n.inputs) {
    if (in < 0) {
      infos.emplace_back();
      continue;
    }
    const Value& v = g.values[static_cast<std::size_t>(in)];
    ValueInfo vi = v.info;
    if (v.is_constant) vi = ValueInfo::of(v.constant);
    infos.push_back(vi);
  }
  return infos;
}

// Adds the node's context to errors thrown by op code that did not add it itself.
template <class F>
void with_context(const Node& n, F&& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    std::string m = e.what();
    if (m.rfind("node '", 0) == 0) throw;
    throw ShapeError(Graph::node_context(n) + ": " + m);
  } catch (const ModelFormatError& e) {
    std::string m = e.what();
    if (m.rfind("node '", 0) == 0) throw;
    throw ModelFormatError(Graph::node_context(n) + ": " + m);
  } catch (const std::out_of_range&) {
    // Last line of defence; the arity check in instantiate() should make this unreachable.
    throw ModelFormatError(Graph::node_context(n) + " has inputs or outputs its op does not accept");
  }
}
}  // namespace

void instantiate(Graph& g, std::size_t i) {
  Node& n = g.nodes[i];
  const ops::OpDef* def = ops::find_op(n.op_type, n.domain);
  n.op.reset();
  if (!def) return;
  const int n_in = static_cast<int>(n.inputs.size());
  const int n_out = static_cast<int>(n.outputs.size());
  auto plural = [](int k, const char* w) { return std::to_string(k) + " " + w + (k == 1 ? "" : "s"); };
  if (n_in < def->min_inputs || n_in > def->max_inputs || n_out < 1 || n_out > def->max_outputs ||
      (n_out >= 1 && n.outputs[0] < 0))
    throw ModelFormatError(Graph::node_context(n) + " has " + plural(n_in, "input") + " and " + plural(n_out, "output") +
                           "; " + n.op_type + " takes " +
                           (def->min_inputs == def->max_inputs ? std::to_string(def->min_inputs)
                                                               : std::to_string(def->min_inputs) + " to " +
                                                                     std::to_string(def->max_inputs)) +
                           " inputs and 1" + (def->max_outputs > 1 ? " to " + std::to_string(def->max_outputs) : "") +
                           " output" + (def->max_outputs > 1 ? "s" : ""));
  for (int k = 0; k < def->min_inputs; ++k)
    if (n.inputs[static_cast<std::size_t>(k)] < 0)
      throw ModelFormatError(Graph::node_context(n) + ": required input " + std::to_string(k) + " is omitted");
  with_context(n, [&] { n.op = std::shared_ptr<ops::Op>(def->create(describe(g, n)).release()); });
}

static void infer_node(Graph& g, Node& n) {
  std::vector<ValueInfo> out;
  with_context(n, [&] { out = n.op->infer(input_infos(g, n)); });
  for (std::size_t k = 0; k < n.outputs.size() && k < out.size(); ++k) {
    int o = n.outputs[k];
    if (o < 0) continue;
    out[k].value = nullptr;
    g.values[static_cast<std::size_t>(o)].info = out[k];
  }
}

void instantiate_and_fold(Graph& g) {
  // Report every unsupported op at once, before anything else can fail.
  // An op whose version in effect at the model's opset is one onnxplain does not implement counts
  // as unsupported too (with what to do), so that load(backend="auto") can hand it to onnxruntime.
  std::map<std::string, UnsupportedOp> missing;
  std::map<std::string, std::string> detail;
  for (auto& n : g.nodes) {
    std::string why;
    if (ops::find_op(n.op_type, n.domain)) {
      const ops::OpVersions* vs = g.opset() > 0 ? ops::op_versions(n.op_type) : nullptr;
      const int64_t v = vs ? vs->in_effect(g.opset()) : 0;
      if (vs && v == 0)
        throw ModelFormatError(Graph::node_context(n) + ": " + n.op_type + " does not exist at ai.onnx opset " +
                               std::to_string(g.opset()) + ", which the model imports (it was added in opset " +
                               std::to_string(std::min(vs->implemented.empty() ? INT64_MAX : vs->implemented.front(),
                                                       vs->missing.empty() ? INT64_MAX : vs->missing.front())) +
                               "); re-export the model at a newer opset");
      if (!vs || vs->implements(v)) continue;
      why = " version " + std::to_string(v) + " (in effect at opset " + std::to_string(g.opset()) + "): " + vs->advice;
    }
    std::string key = n.domain + "/" + n.op_type;
    auto& u = missing[key];
    u.op_type = n.op_type;
    u.domain = n.domain;
    u.node_names.push_back(n.name);
    if (!why.empty()) detail[key] = why;
  }
  if (!missing.empty()) {
    std::string msg = "the model uses ops onnxplain does not support:";
    std::vector<UnsupportedOp> list;
    for (auto& kv : missing) {
      const auto& u = kv.second;
      msg += "\n  " + (u.domain.empty() ? std::string() : u.domain + ".") + u.op_type;
      const auto d = detail.find(kv.first);
      if (d != detail.end()) msg += d->second;
      msg += " (" + std::to_string(u.node_names.size()) + " node" + (u.node_names.size() > 1 ? "s" : "") + ": ";
      for (std::size_t k = 0; k < u.node_names.size() && k < 5; ++k) msg += (k ? ", " : "") + ("'" + u.node_names[k] + "'");
      if (u.node_names.size() > 5) msg += ", ...";
      msg += ")";
      list.push_back(u);
    }
    msg += "\nRun `onnxplain inspect MODEL` for the list of supported ops; re-export the model without "
           "these ops or open an issue asking for them.";
    throw UnsupportedModelError(msg, list);
  }

  for (const auto& n : g.nodes)
    for (int in : n.inputs) {
      auto it = in >= 0 ? g.unusable.find(in) : g.unusable.end();
      if (it != g.unusable.end()) throw ModelFormatError(Graph::node_context(n) + " reads " + it->second);
    }

  ExecContext ctx(1);
  bool folded_any = false;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    instantiate(g, i);
    infer_node(g, n);
    bool all_const = n.op->foldable();
    std::vector<Tensor> dtype_only(n.inputs.size());  // stand-ins for inputs read for dtype/shape only
    std::vector<const Tensor*> ins;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      const int in = n.inputs[k];
      if (in < 0) {
        ins.push_back(nullptr);
        continue;
      }
      const Value& v = g.values[static_cast<std::size_t>(in)];
      if (v.is_constant) {
        ins.push_back(&v.constant);
      } else if (n.op->input_use(k) == ops::Op::InputUse::DType) {
        dtype_only[k] = Tensor(v.info.dtype, {0});
        ins.push_back(&dtype_only[k]);
      } else if (n.op->input_use(k) == ops::Op::InputUse::Shape && v.info.has_rank && v.info.fully_known()) {
        dtype_only[k] = Tensor(v.info.dtype, v.info.shape, nullptr, nullptr);
        ins.push_back(&dtype_only[k]);
      } else {
        all_const = false;
      }
    }
    if (!all_const) continue;
    std::vector<Tensor> outs(n.outputs.size());
    with_context(n, [&] { n.op->forward(ins, outs, ctx); });
    for (std::size_t k = 0; k < n.outputs.size(); ++k) {
      int o = n.outputs[k];
      if (o < 0) continue;
      Value& v = g.values[static_cast<std::size_t>(o)];
      v.is_constant = true;
      v.constant = outs[k];
      v.info = ValueInfo(outs[k].dtype(), outs[k].shape());
      v.producer = -1;
    }
    n.outputs.clear();  // marks the node as folded; removed below
    folded_any = true;
  }
  if (folded_any) {
    std::vector<Node> kept;
    for (auto& n : g.nodes)
      if (!n.outputs.empty()) kept.push_back(std::move(n));
    g.nodes = std::move(kept);
    g.remove_dead_nodes();
  }
}

void infer_shapes(Graph& g) {
  for (auto& n : g.nodes)
    if (n.op) infer_node(g, n);
}

}  // namespace onnxplain::passes
