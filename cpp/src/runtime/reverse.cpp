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

std::vector<Tensor> reverse_sweep(const Model& m, const std::vector<Tensor>& values, const std::vector<Tensor>& start,
                                  const std::function<const rules::Rule&(std::size_t)>& rule_of, int threads,
                                  const std::vector<std::vector<Tensor>>* kept) {
  const Graph& g = m.graph();
  if (start.size() != g.outputs.size())
    throw InvalidArgument("reverse pass: " + std::to_string(start.size()) + " start tensors for " +
                          std::to_string(g.outputs.size()) + " outputs");
  // Values that depend on a graph input: only those carry anything back.
  std::vector<char> active(g.values.size(), 0);
  for (int v : g.inputs) active[static_cast<std::size_t>(v)] = g.values[static_cast<std::size_t>(v)].info.dtype == DType::Float32;
  for (const Node& n : g.nodes) {
    bool any = false;
    for (int in : n.inputs) any = any || (in >= 0 && active[static_cast<std::size_t>(in)]);
    for (int o : n.outputs)
      if (o >= 0) active[static_cast<std::size_t>(o)] = any && g.values[static_cast<std::size_t>(o)].info.dtype == DType::Float32;
  }
  ExecContext ctx(threads, m.options().winograd);
  kernels::set_blas_threads(threads);
  std::vector<Tensor> acc(g.values.size());
  std::vector<char> has(g.values.size(), 0);  // acc[v] holds what reached value v
  auto accumulate = [&](std::size_t v, const Tensor& r) {
    acc[v] = has[v] ? add(acc[v], r, ctx) : r;
    has[v] = 1;
  };
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const auto o = static_cast<std::size_t>(g.outputs[k]);
    if (start[k].raw() == nullptr && start[k].numel() == 0 && start[k].shape().empty()) continue;  // nothing
    if (start[k].shape() != values[o].shape() || start[k].dtype() != DType::Float32)
      throw ShapeError("the start tensor for output '" + g.values[o].name + "' has shape " + shape_str(start[k].shape()) +
                       " but the output has shape " + shape_str(values[o].shape()));
    accumulate(o, start[k]);
  }
  const std::vector<char> nonneg = nonneg_values(g);
  std::vector<const Tensor*> ins;
  SweepProfile prof("reverse");
  rules::NodeValues nv;
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
    ins.clear();
    for (int in : n.inputs) ins.push_back(in >= 0 ? &values[static_cast<std::size_t>(in)] : nullptr);
    node_inputs(g, i, ins, nonneg, &nv);
    if (kept && i < kept->size()) nv.kept = &(*kept)[i];
    for (int o : n.outputs) nv.out.push_back(o >= 0 ? &values[static_cast<std::size_t>(o)] : nullptr);
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
    // What reached this node's outputs is consumed: free it (the input values stay, rules read them).
    for (int o : n.outputs)
      if (o >= 0 && !g.is_graph_output(o)) {
        acc[static_cast<std::size_t>(o)] = Tensor();
        has[static_cast<std::size_t>(o)] = 0;
      }
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
