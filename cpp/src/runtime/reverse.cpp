#include "runtime/reverse.hpp"

#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"
#include "runtime/profile.hpp"

namespace onnxplain::runtime {
namespace {

/// a + b into a fresh tensor: accumulated tensors may alias forward values or other cotangents
/// (routing VJPs return views), so nothing is added in place.
Tensor add(const Tensor& a, const Tensor& b, ExecContext& ctx) {
  if (a.shape() != b.shape())
    throw ShapeError("internal: relevance of shape " + shape_str(b.shape()) + " reaches a value of shape " +
                     shape_str(a.shape()));
  Tensor y = ctx.alloc(DType::Float32, a.shape());
  const float* pa = a.f32();
  const float* pb = b.f32();
  float* py = y.f32();
  kernels::parallel_for(a.numel(), ctx.threads(), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = pa[i] + pb[i];
  });
  return y;
}

}  // namespace

std::vector<char> nonneg_values(const Graph& g) {
  std::vector<char> r(g.values.size(), 0);
  for (const Node& n : g.nodes) {  // in topological order
    if (!n.op) continue;
    bool nonneg = n.op->rectifier();
    if (!nonneg && n.op->keeps_nonneg()) {
      bool any = false, all = true;
      for (int in : n.inputs) {
        if (in < 0 || g.values[static_cast<std::size_t>(in)].info.dtype != DType::Float32) continue;
        any = true;
        all = all && r[static_cast<std::size_t>(in)];
      }
      nonneg = any && all;
    }
    if (nonneg)
      for (int o : n.outputs)
        if (o >= 0 && g.values[static_cast<std::size_t>(o)].info.dtype == DType::Float32) r[static_cast<std::size_t>(o)] = 1;
  }
  return r;
}

void node_inputs(const Graph& g, std::size_t i, const std::vector<const Tensor*>& ins,
                 const std::vector<char>& nonneg, rules::NodeValues* nv) {
  const Node& n = g.nodes[i];
  nv->node = &n;
  nv->op = n.op.get();
  nv->in = ins;
  nv->out.clear();
  nv->in_constant.clear();
  nv->in_nonneg.clear();
  nv->kept = nullptr;
  for (int in : n.inputs) {
    const auto u = static_cast<std::size_t>(in);
    nv->in_constant.push_back(in >= 0 && g.values[u].is_constant);
    nv->in_nonneg.push_back(in >= 0 && nonneg[u]);
  }
}

namespace {

/// Values that depend on a graph input (float ones): only those carry anything back.
std::vector<char> active_values(const Graph& g) {
  std::vector<char> active(g.values.size(), 0);
  for (int v : g.inputs) active[static_cast<std::size_t>(v)] = g.values[static_cast<std::size_t>(v)].info.dtype == DType::Float32;
  for (const Node& n : g.nodes) {
    bool any = false;
    for (int in : n.inputs) any = any || (in >= 0 && active[static_cast<std::size_t>(in)]);
    for (int o : n.outputs)
      if (o >= 0) active[static_cast<std::size_t>(o)] = any && g.values[static_cast<std::size_t>(o)].info.dtype == DType::Float32;
  }
  return active;
}

/// Per node: whether a sweep started on the flagged outputs runs its rule (something reaches one
/// of its outputs and one of its inputs is active), as the sweep's own test decides it.
std::vector<char> running_nodes(const Graph& g, const std::vector<char>& active, const std::vector<char>& started) {
  std::vector<char> reach(g.values.size(), 0), runs(g.nodes.size(), 0);
  for (std::size_t k = 0; k < g.outputs.size() && k < started.size(); ++k)
    if (started[k]) reach[static_cast<std::size_t>(g.outputs[k])] = 1;
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool any = false, any_need = false;
    for (int o : n.outputs) any = any || (o >= 0 && reach[static_cast<std::size_t>(o)]);
    for (int in : n.inputs) any_need = any_need || (in >= 0 && active[static_cast<std::size_t>(in)]);
    if (!any || !any_need) continue;
    runs[i] = 1;
    for (int in : n.inputs)
      if (in >= 0 && active[static_cast<std::size_t>(in)]) reach[static_cast<std::size_t>(in)] = 1;
  }
  return runs;
}

/// Node i as its rule sees it: inputs and outputs from `values`, what its forward kept.
void node_view(const Graph& g, std::size_t i, const std::vector<Tensor>& values, const std::vector<char>& nonneg,
               const std::vector<std::vector<Tensor>>* kept, std::vector<const Tensor*>& ins, rules::NodeValues* nv) {
  const Node& n = g.nodes[i];
  ins.clear();
  for (int in : n.inputs) ins.push_back(in >= 0 ? &values[static_cast<std::size_t>(in)] : nullptr);
  node_inputs(g, i, ins, nonneg, nv);
  if (kept && i < kept->size()) nv->kept = &(*kept)[i];
  for (int o : n.outputs) nv->out.push_back(o >= 0 ? &values[static_cast<std::size_t>(o)] : nullptr);
}

/// f(v) for every value of node i whose data its rule reads (Rule::reads).
template <class F>
void rule_reads(const Graph& g, std::size_t i, const rules::Rule& rule, const rules::NodeValues& nv, F f) {
  const Node& n = g.nodes[i];
  std::vector<char> in(n.inputs.size(), 1), out(n.outputs.size(), 1);
  rule.reads(nv, in, out);
  for (std::size_t k = 0; k < n.inputs.size(); ++k)
    if (n.inputs[k] >= 0 && (k >= in.size() || in[k])) f(static_cast<std::size_t>(n.inputs[k]));
  for (std::size_t k = 0; k < n.outputs.size(); ++k)
    if (n.outputs[k] >= 0 && (k >= out.size() || out[k])) f(static_cast<std::size_t>(n.outputs[k]));
}

}  // namespace

Model::KeepFilter reverse_keep_filter(const Model& m, const RuleOf& rule_of,
                                      const std::vector<std::vector<Tensor>>* kept, const std::vector<char>& started) {
  const Graph* g = &m.graph();
  auto runs = std::make_shared<const std::vector<char>>(running_nodes(*g, active_values(*g), started));
  auto nonneg = std::make_shared<const std::vector<char>>(nonneg_values(*g));
  return [g, rule_of, kept, runs, nonneg](std::size_t i, const std::vector<Tensor>& values, std::vector<char>& later) {
    if (!(*runs)[i]) return;
    std::vector<const Tensor*> ins;
    rules::NodeValues nv;
    node_view(*g, i, values, *nonneg, kept, ins, &nv);
    rule_reads(*g, i, rule_of(i), nv, [&](std::size_t v) { later[v] = 1; });
  };
}

Model::KeepQuery reverse_read_query(const Model& m, const RuleOf& rule_of,
                                    const std::vector<std::vector<Tensor>>* kept, const std::vector<char>& started) {
  const Graph* g = &m.graph();
  auto runs = std::make_shared<const std::vector<char>>(running_nodes(*g, active_values(*g), started));
  auto nonneg = std::make_shared<const std::vector<char>>(nonneg_values(*g));
  return [g, rule_of, kept, runs, nonneg](std::size_t i, int v, const std::vector<Tensor>& values) {
    bool read = false;
    for (std::size_t j = i; j <= i + 1 && j < g->nodes.size() && !read; ++j) {
      if (!(*runs)[j]) continue;
      const rules::Rule& rule = rule_of(j);
      if (j > i && rule.has_forward()) return true;
      std::vector<const Tensor*> ins;
      rules::NodeValues nv;
      node_view(*g, j, values, *nonneg, kept, ins, &nv);
      rule_reads(*g, j, rule, nv, [&](std::size_t u) { read = read || u == static_cast<std::size_t>(v); });
    }
    return read;
  };
}

std::vector<Tensor> reverse_sweep(const Model& m, const std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const RuleOf& rule_of, int threads, const std::vector<std::vector<Tensor>>* kept) {
  std::vector<Tensor> own = values;  // shares the storage: freeing entries of the copy frees nothing of theirs
  std::vector<std::vector<Tensor>> own_kept;
  if (kept) own_kept = *kept;
  return reverse_sweep(m, own, start, rule_of, threads, kept ? &own_kept : nullptr);
}

std::vector<Tensor> reverse_sweep(const Model& m, std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const RuleOf& rule_of, int threads, std::vector<std::vector<Tensor>>* kept) {
  const Graph& g = m.graph();
  if (start.size() != g.outputs.size())
    throw InvalidArgument("reverse pass: " + std::to_string(start.size()) + " start tensors for " +
                          std::to_string(g.outputs.size()) + " outputs");
  if (values.size() != g.values.size())
    throw InvalidArgument("reverse pass: " + std::to_string(values.size()) + " values for a graph of " +
                          std::to_string(g.values.size()));
  const std::vector<char> active = active_values(g);
  ExecContext ctx(threads, m.options().winograd);
  kernels::set_blas_threads(threads);
  std::vector<Tensor> acc(g.values.size());
  std::vector<char> has(g.values.size(), 0);  // acc[v] holds what reached value v
  auto accumulate = [&](std::size_t v, const Tensor& r) {
    acc[v] = has[v] ? add(acc[v], r, ctx) : r;
    has[v] = 1;
  };
  std::vector<char> started(g.outputs.size(), 0);
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const auto o = static_cast<std::size_t>(g.outputs[k]);
    if (start[k].raw() == nullptr && start[k].numel() == 0 && start[k].shape().empty()) continue;  // nothing
    if (start[k].shape() != values[o].shape() || start[k].dtype() != DType::Float32)
      throw ShapeError("the start tensor for output '" + g.values[o].name + "' has shape " + shape_str(start[k].shape()) +
                       " but the output has shape " + shape_str(values[o].shape()));
    accumulate(o, start[k]);
    started[k] = 1;
  }
  const std::vector<char> nonneg = nonneg_values(g);
  std::vector<const Tensor*> ins;
  rules::NodeValues nv;
  // Each value is freed after the last step that reads it: the step of the lowest node whose rule
  // reads it (the sweep runs backwards); values no step reads, and what the forward kept for
  // nodes that do not run, are freed now. Memory then shrinks as the sweep goes down the graph
  // (VGG-16's widest layers come last there), instead of the whole forward pass staying until
  // the end under every step's temporaries.
  const std::vector<char> runs = running_nodes(g, active, started);
  std::vector<int> last_reader(g.values.size(), -1);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (!runs[i]) {
      if (kept && i < kept->size()) (*kept)[i].clear();
      continue;
    }
    node_view(g, i, values, nonneg, kept, ins, &nv);
    rule_reads(g, i, rule_of(i), nv, [&](std::size_t v) {
      if (last_reader[v] < 0) last_reader[v] = static_cast<int>(i);
    });
  }
  auto release = [&](std::size_t v) {
    if (!g.values[v].is_constant && values[v].raw()) values[v] = freed_value(values[v]);
  };
  for (std::size_t v = 0; v < g.values.size(); ++v)
    if (last_reader[v] < 0) release(v);
  SweepProfile prof("reverse");
  std::vector<const Tensor*> rout;
  std::vector<bool> need;
  std::vector<Tensor> rin;
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    rout.assign(n.outputs.size(), nullptr);
    bool any = false;
    for (std::size_t k = 0; k < n.outputs.size(); ++k) {
      const int o = n.outputs[k];
      if (o >= 0 && has[static_cast<std::size_t>(o)]) {
        rout[k] = &acc[static_cast<std::size_t>(o)];
        any = true;
      }
    }
    need.assign(n.inputs.size(), false);
    bool any_need = false;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      const int in = n.inputs[k];
      need[k] = in >= 0 && active[static_cast<std::size_t>(in)];
      any_need = any_need || need[k];
    }
    if (!any || !any_need) continue;
    node_view(g, i, values, nonneg, kept, ins, &nv);
    rin.assign(n.inputs.size(), Tensor());
    const rules::Rule& rule = rule_of(i);
    prof.start();
    try {
      rule.backward(nv, rout, need, rin, ctx);
    } catch (const ShapeError& e) {
      std::string msg = e.what();
      if (msg.rfind("node '", 0) == 0) throw;
      throw ShapeError(Graph::node_context(n) + " (" + rule.name() + " rule): " + msg);
    }
    if (prof.on()) prof.stop(n.op_type + " / " + rule.name() + (SweepProfile::per_node() ? " " + n.name : ""));
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      if (!need[k]) continue;
      const auto in = static_cast<std::size_t>(n.inputs[k]);
      const Tensor& r = rin[k];
      if (r.shape() != values[in].shape() || r.numel() != values[in].numel() || r.dtype() != DType::Float32)
        throw ShapeError(Graph::node_context(n) + " (" + rule.name() + " rule) returned shape " + shape_str(r.shape()) +
                         " for input '" + g.values[in].name + "' of shape " + shape_str(values[in].shape()));
      accumulate(in, r);
    }
    // What reached this node's outputs is consumed: free it, and the forward values and kept
    // products no later step reads.
    for (int o : n.outputs)
      if (o >= 0 && !g.is_graph_output(o)) {
        acc[static_cast<std::size_t>(o)] = Tensor();
        has[static_cast<std::size_t>(o)] = 0;
      }
    if (kept && i < kept->size()) (*kept)[i].clear();
    auto release_if_last = [&](int v) {
      const auto u = static_cast<std::size_t>(v);
      if (v >= 0 && last_reader[u] == static_cast<int>(i)) release(u);
    };
    for (int v : n.inputs) release_if_last(v);
    for (int v : n.outputs) release_if_last(v);
  }
  std::vector<Tensor> result;
  for (int v : g.inputs) {
    const auto id = static_cast<std::size_t>(v);
    if (has[id]) {
      result.push_back(acc[id]);
    } else {
      result.push_back(Tensor::zeros(values[id].dtype(), values[id].shape()));
    }
  }
  return result;
}

}  // namespace onnxplain::runtime
