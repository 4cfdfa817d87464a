#include "runtime/model.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "importer/onnx_loader.hpp"
#include "kernels/gemm.hpp"
#include "ops/op.hpp"
#include "passes/passes.hpp"
#include "runtime/profile.hpp"

namespace onnxplain::runtime {

std::string read_file(const std::string& path) {
  auto fail = [&](const char* what, int err) -> std::string {
    throw IoError(std::string(what) + " '" + path + "': " + std::strerror(err), path, err);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail("cannot open", errno);
  // An ifstream opens a directory without complaint and then reads nothing.
  if (S_ISDIR(st.st_mode)) return fail("cannot read", EISDIR);
  errno = 0;
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail("cannot open", errno ? errno : EACCES);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return fail("cannot read", errno ? errno : EIO);
  return ss.str();
}

std::shared_ptr<Model> Model::from_bytes(const uint8_t* data, std::size_t size, const std::string& base_dir,
                                         const LoadOptions& opts) {
  auto m = std::make_shared<Model>();
  m->opts_ = opts;
  Graph& g = m->graph_;
  try {
    g = importer::import_model(data, size, base_dir);
    passes::prune_outputs(g);
    passes::remove_identity(g);
    passes::instantiate_and_fold(g);
    if (opts.strip_softmax) passes::strip_softmax(g);
    passes::fuse_matmul_add(g);
    if (opts.fold_batch_norm) passes::fold_batch_norm(g);
    g.remove_dead_nodes();
    passes::infer_shapes(g);
    m->plan();
  } catch (const ShapeError& e) {
    // Nothing but the model's own contents is known while loading: shapes that do not fit (weights
    // against the shapes the graph implies, declared inputs against an op) are an inconsistent
    // model. The message keeps its node context. ShapeError stays for inputs given at run time.
    throw ModelFormatError(e.what());
  }
  return m;
}

std::shared_ptr<Model> Model::from_file(const std::string& path, const LoadOptions& opts) {
  const std::string bytes = read_file(path);
  std::string dir = ".";
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  return from_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), dir, opts);
}

void Model::plan() {
  // Constants are never written again: ops may keep data derived from them (ops/derived_cache.hpp).
  for (Value& v : graph_.values)
    if (v.is_constant) v.constant = v.constant.frozen();
  last_use_.assign(graph_.values.size(), -1);
  for (std::size_t i = 0; i < graph_.nodes.size(); ++i)
    for (int in : graph_.nodes[i].inputs)
      if (in >= 0) last_use_[static_cast<std::size_t>(in)] = static_cast<int>(i);
  for (int o : graph_.outputs) last_use_[static_cast<std::size_t>(o)] = static_cast<int>(graph_.nodes.size());
  // Whether node j is a rectifier whose only input is float value v, read by nothing after it
  // (not a graph output either): the node that makes v can write the rectified values itself.
  auto rectifies_alone = [&](std::size_t j, int v) {
    if (j >= graph_.nodes.size() || v < 0) return false;
    const Node& r = graph_.nodes[j];
    const auto u = static_cast<std::size_t>(v);
    return r.op && r.op->rectifier() && r.inputs.size() == 1 && r.inputs[0] == v && r.outputs.size() == 1 &&
           r.outputs[0] >= 0 && last_use_[u] == static_cast<int>(j) && graph_.values[u].info.dtype == DType::Float32;
  };
  fuse_next_.assign(graph_.nodes.size(), 0);
  for (std::size_t i = 0; i + 1 < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    if (n.op && n.op->fuses_rectifier() && n.outputs.size() == 1 && rectifies_alone(i + 1, n.outputs[0]))
      fuse_next_[i] = 1;
  }
  // A sum of two terms right after a node whose output is one of them and read by nothing else
  // (a ResNet block's last convolution and its shortcut), and the rectifier after that sum when
  // it alone reads it: the node can write all of it (Op::fuses_residual). Whether the other
  // term has the output's shape is known at run time; the op declines otherwise.
  fuse_add_.assign(graph_.nodes.size(), FusedAdd{});
  for (std::size_t i = 0; i + 1 < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    const Node& a = graph_.nodes[i + 1];
    if (!n.op || !a.op || !n.op->fuses_residual() || a.op->kind() != ops::OpKind::Sum || a.inputs.size() != 2 ||
        a.op->sum_sign(0) != 1.f || a.op->sum_sign(1) != 1.f || n.outputs.size() != 1 || n.outputs[0] < 0 ||
        a.outputs.size() != 1 || a.outputs[0] < 0 || a.inputs[0] == a.inputs[1])
      continue;
    const int y = n.outputs[0];
    const int other = a.inputs[0] == y ? a.inputs[1] : a.inputs[1] == y ? a.inputs[0] : -1;
    if (other < 0 || last_use_[static_cast<std::size_t>(y)] != static_cast<int>(i + 1) ||
        graph_.values[static_cast<std::size_t>(y)].info.dtype != DType::Float32 ||
        graph_.values[static_cast<std::size_t>(a.outputs[0])].info.dtype != DType::Float32)
      continue;
    fuse_add_[i] = FusedAdd{other, a.inputs[0] == other, rectifies_alone(i + 2, a.outputs[0])};
  }
}

Tensor freed_value(const Tensor& t) {
  static const bool check = [] {
    const char* v = std::getenv("ONNXPLAIN_CHECK_FREED");
    return v && *v && std::string(v) != "0";
  }();
  if (!check) return Tensor(t.dtype(), t.shape(), nullptr, nullptr);
  Tensor y(t.dtype(), t.shape());
  if (t.dtype() == DType::Float32)
    std::fill(y.f32(), y.f32() + y.numel(), std::numeric_limits<float>::quiet_NaN());
  else
    std::fill(y.i64(), y.i64() + y.numel(), std::numeric_limits<int64_t>::max() / 3);
  return y;
}

static TensorSpec spec_of(const Graph& g, int v) {
  const Value& val = g.values[static_cast<std::size_t>(v)];
  return TensorSpec{val.name, val.info.dtype, val.info.has_rank ? val.info.shape : Shape{}};
}

std::vector<TensorSpec> Model::inputs() const {
  std::vector<TensorSpec> s;
  for (int v : graph_.inputs) s.push_back(spec_of(graph_, v));
  return s;
}

std::vector<TensorSpec> Model::outputs() const {
  std::vector<TensorSpec> s;
  for (int v : graph_.outputs) s.push_back(spec_of(graph_, v));
  return s;
}

std::map<std::string, int> Model::op_counts() const {
  std::map<std::string, int> c;
  for (const auto& n : graph_.nodes) c[n.op_type]++;
  return c;
}

std::vector<Model::LinearParams> Model::linear_params() const {
  std::vector<LinearParams> out;
  for (const auto& n : graph_.nodes) {
    if (!n.op || n.op->kind() != ops::OpKind::Linear) continue;
    const int wi = n.op->weight_input(), bi = n.op->bias_input();
    auto value_at = [&](int i) { return i >= 0 && static_cast<std::size_t>(i) < n.inputs.size() ? n.inputs[static_cast<std::size_t>(i)] : -1; };
    const int w = value_at(wi), b = value_at(bi);
    if (w < 0 || !graph_.values[static_cast<std::size_t>(w)].is_constant) continue;
    if (b >= 0 && !graph_.values[static_cast<std::size_t>(b)].is_constant) continue;
    const Tensor& wt = graph_.values[static_cast<std::size_t>(w)].constant;
    out.push_back({n.name, w, b, n.op->weight_neuron_axis(wt.rank())});
  }
  return out;
}

std::shared_ptr<Model> Model::with_constants(const std::map<int, Tensor>& replace) const {
  auto m = std::make_shared<Model>(*this);
  for (const auto& [id, t] : replace) {
    if (id < 0 || static_cast<std::size_t>(id) >= graph_.values.size() || !graph_.values[static_cast<std::size_t>(id)].is_constant)
      throw InvalidArgument("value " + std::to_string(id) + " is not a constant of this model");
    Value& v = m->graph_.values[static_cast<std::size_t>(id)];
    if (t.dtype() != v.constant.dtype() || t.shape() != v.constant.shape())
      throw InvalidArgument("the replacement for '" + v.name + "' must have shape " + shape_str(v.constant.shape()) +
                            " and the same dtype, got " + shape_str(t.shape()));
    // A fresh frozen copy: ops cache data derived from frozen constants by their storage.
    v.constant = t.clone().frozen();
  }
  return m;
}

std::shared_ptr<Model> Model::with_output(std::size_t index) const {
  if (index >= graph_.outputs.size())
    throw InvalidArgument("output " + std::to_string(index) + " is out of range: the model has " +
                          std::to_string(graph_.outputs.size()) + " output(s)");
  auto m = std::make_shared<Model>(*this);
  m->graph_.outputs = {graph_.outputs[index]};
  m->graph_.remove_dead_nodes();
  m->plan();
  return m;
}

int64_t Model::fixed_batch() const {
  int64_t b = 0;
  for (int in : graph_.inputs) {
    const ValueInfo& info = graph_.values[static_cast<std::size_t>(in)].info;
    if (!info.has_rank || info.shape.empty() || info.shape[0] <= 0) return 0;
    if (b && info.shape[0] != b) return 0;
    b = info.shape[0];
  }
  return b;
}

bool Model::in_place(std::size_t i, std::vector<Tensor>& vals, std::vector<Tensor>& outs, ExecContext& ctx) const {
  const Graph& g = graph_;
  const Node& n = g.nodes[i];
  if (n.inputs.size() != 1 || n.outputs.size() != 1 || n.inputs[0] < 0 || n.outputs[0] < 0) return false;
  const auto u = static_cast<std::size_t>(n.inputs[0]);
  Tensor& x = vals[u];
  // Only a buffer no one else holds: not a constant, not the caller's input, not read later.
  if (last_use_[u] != static_cast<int>(i) || g.values[u].is_constant || !x.raw() ||
      x.storage_ref().use_count() != 1 || std::find(g.inputs.begin(), g.inputs.end(), n.inputs[0]) != g.inputs.end())
    return false;
  if (!n.op->forward_in_place(x, ctx)) return false;
  outs[0] = std::move(x);
  x = Tensor();
  return true;
}

std::vector<Tensor> Model::run(const std::vector<Tensor>& inputs, int threads, std::vector<Tensor>* keep,
                               const ForwardHook& hook, const KeepFilter& filter, const KeepQuery& read) const {
  const Graph& g = graph_;
  // A model exported with a fixed batch B run on k * B samples: k passes, outputs joined on axis 0.
  if (!keep && !hook && inputs.size() == g.inputs.size() && !inputs.empty()) {
    const int64_t fb = fixed_batch();
    const int64_t n = inputs[0].rank() ? inputs[0].dim(0) : 0;
    bool split = fb > 0 && n > fb && n % fb == 0;
    for (const auto& t : inputs) split = split && t.rank() && t.dim(0) == n;
    if (split) {
      std::vector<std::vector<Tensor>> parts;
      for (int64_t b0 = 0; b0 < n; b0 += fb) {
        std::vector<Tensor> chunk;
        for (const auto& t : inputs) {
          Shape sh = t.shape();
          sh[0] = fb;
          chunk.push_back(t.view(sh, b0 * (t.numel() / n)));
        }
        parts.push_back(run(chunk, threads));
      }
      std::vector<Tensor> result;
      for (std::size_t o = 0; o < parts[0].size(); ++o) {
        const Tensor& first = parts[0][o];
        if (!first.rank() || first.dim(0) != fb)
          throw ShapeError("output " + std::to_string(o) + " of shape " + shape_str(first.shape()) +
                           " has no batch axis of the model's fixed batch " + std::to_string(fb) +
                           ": run the model on batches of " + std::to_string(fb));
        Shape sh = first.shape();
        sh[0] = n;
        Tensor y(first.dtype(), sh);
        std::size_t off = 0;
        for (const auto& p : parts) {
          std::memcpy(static_cast<char*>(y.raw()) + off, p[o].raw(), p[o].nbytes());
          off += p[o].nbytes();
        }
        result.push_back(std::move(y));
      }
      return result;
    }
  }
  if (inputs.size() != g.inputs.size())
    throw InvalidArgument("the model has " + std::to_string(g.inputs.size()) + " input(s) but " +
                          std::to_string(inputs.size()) + " were given");
  std::vector<Tensor> vals(g.values.size());
  for (std::size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].is_constant) vals[v] = g.values[v].constant;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Value& spec = g.values[static_cast<std::size_t>(g.inputs[k])];
    const Tensor& t = inputs[k];
    if (t.dtype() != spec.info.dtype)
      throw InvalidArgument("input '" + spec.name + "' expects " + dtype_name(spec.info.dtype) + " but got " +
                            dtype_name(t.dtype()));
    if (spec.info.has_rank) {
      bool ok = t.rank() == spec.info.rank();
      for (std::size_t d = 0; ok && d < spec.info.shape.size(); ++d)
        if (spec.info.shape[d] >= 0 && spec.info.shape[d] != t.shape()[d]) ok = false;
      if (!ok)
        throw ShapeError("input '" + spec.name + "' expects shape " + shape_str(spec.info.shape) + " but got " +
                         shape_str(t.shape()));
    }
    vals[static_cast<std::size_t>(g.inputs[k])] = t;
  }
  ExecContext ctx(threads, opts_.winograd);
  kernels::set_blas_threads(threads);
  std::vector<const Tensor*> ins;
  std::vector<Tensor> outs;
  std::vector<char> later(keep && filter ? g.values.size() : 0, 0);  // read by the reverse pass
  // Kept for a reverse pass, node i may still write its rectifier's output itself when the reverse
  // reads the unrectified value nowhere (ResNet-50's z+ rule reads a convolution's input, not its
  // output): read() is asked on the outputs' shapes, which infer() gives before the node runs.
  auto keep_fusable = [&](std::size_t i) {
    const Node& n = g.nodes[i];
    std::vector<ValueInfo> in_info;
    for (const Tensor* t : ins) in_info.push_back(t && t->raw() ? ValueInfo::of(*t) : ValueInfo());
    const std::vector<ValueInfo> out_info = n.op->infer(in_info);
    if (out_info.empty() || !out_info[0].has_rank || out_info[0].dtype != DType::Float32) return false;
    for (int64_t d : out_info[0].shape)
      if (d < 0) return false;
    const auto y = static_cast<std::size_t>(n.outputs[0]);
    const auto r = static_cast<std::size_t>(g.nodes[i + 1].outputs[0]);
    vals[y] = Tensor(DType::Float32, out_info[0].shape, nullptr, nullptr);
    vals[r] = vals[y];
    const bool unread = !read(i, n.outputs[0], vals);
    vals[y] = Tensor();
    vals[r] = Tensor();
    return unread;
  };
  // Kept for a reverse pass: only what it reads outlives the forward's last use (the rest keeps
  // its shape, which the sweep checks and zero-fills by).
  auto keep_only_read = [&](std::size_t i) {
    const Node& n = g.nodes[i];
    filter(i, vals, later);
    auto drop = [&](int v) {
      const auto u = static_cast<std::size_t>(v);
      if (v >= 0 && !later[u] && !g.values[u].is_constant && vals[u].raw()) vals[u] = freed_value(vals[u]);
    };
    for (int in : n.inputs)
      if (in >= 0 && last_use_[static_cast<std::size_t>(in)] == static_cast<int>(i)) drop(in);
    for (int o : n.outputs)
      if (o >= 0 && last_use_[static_cast<std::size_t>(o)] < 0) drop(o);  // read by no node
  };
  SweepProfile prof("forward");
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    ins.clear();
    for (int in : n.inputs) ins.push_back(in >= 0 ? &vals[static_cast<std::size_t>(in)] : nullptr);
    outs.assign(n.outputs.size(), Tensor());
    prof.start();
    const bool plain = !keep && !hook;
    const FusedAdd& fa = fuse_add_[i];
    const bool try_add = plain && fa.other >= 0 && vals[static_cast<std::size_t>(fa.other)].raw();
    bool fuse = plain && fuse_next_[i];
    bool kept_fused = false;
    bool added = false;
    try {
      if (try_add) {
        ctx.set_residual_epilogue(&vals[static_cast<std::size_t>(fa.other)], fa.first);
        ctx.set_relu_epilogue(fa.relu);
      } else {
        ctx.set_relu_epilogue(fuse);
      }
      if (!(hook && hook(i, ins, outs, ctx))) {
        if (keep && filter && read && fuse_next_[i] && keep_fusable(i)) {
          kept_fused = true;
          ctx.set_relu_epilogue(true);
        }
        if (!(!keep && in_place(i, vals, outs, ctx))) n.op->forward(ins, outs, ctx);
      }
      added = try_add && ctx.residual_done();
      ctx.set_relu_epilogue(false);
      ctx.set_residual_epilogue(nullptr);
    } catch (const ShapeError& e) {
      std::string m = e.what();
      if (m.rfind("node '", 0) == 0) throw;
      throw ShapeError(Graph::node_context(n) + ": " + m);
    }
    if (prof.on()) prof.stop(SweepProfile::per_node() ? n.op_type + " " + n.name : n.op_type);
    for (std::size_t k = 0; k < n.outputs.size(); ++k)
      if (n.outputs[k] >= 0) vals[static_cast<std::size_t>(n.outputs[k])] = std::move(outs[k]);
    if (!keep) {
      // Free what no later node reads, so peak memory stays near the widest layer.
      for (int in : n.inputs)
        if (in >= 0 && last_use_[static_cast<std::size_t>(in)] == static_cast<int>(i) &&
            !g.values[static_cast<std::size_t>(in)].is_constant)
          vals[static_cast<std::size_t>(in)] = Tensor();
    } else if (filter) {
      keep_only_read(i);
    }
    if (kept_fused) {
      // The rectifier after this node, done: its output is this node's. This node's own output
      // keeps its shape only: the reverse reads the rectified values, not the unrectified ones.
      const auto y = static_cast<std::size_t>(n.outputs[0]);
      const auto r = static_cast<std::size_t>(g.nodes[i + 1].outputs[0]);
      vals[r] = std::move(vals[y]);
      vals[y] = freed_value(vals[r]);
      ++i;
      keep_only_read(i);
      if (later[y])
        throw std::logic_error("internal: node '" + n.name + "' wrote its rectifier's output for a reverse pass "
                               "that reads the unrectified values");
      continue;
    }
    if (added) {
      // The sum after this node (and the rectifier after that), done as written: their output
      // is this node's. The other term is freed if the sum was its last reader.
      const std::size_t skip = fa.relu ? 2 : 1;
      const Node& last = g.nodes[i + skip];
      vals[static_cast<std::size_t>(last.outputs[0])] = std::move(vals[static_cast<std::size_t>(n.outputs[0])]);
      vals[static_cast<std::size_t>(n.outputs[0])] = Tensor();
      const auto o = static_cast<std::size_t>(fa.other);
      if (last_use_[o] == static_cast<int>(i + 1) && !g.values[o].is_constant) vals[o] = Tensor();
      i += skip;
      continue;
    }
    if (try_add) fuse = false;  // declined: the sum runs as its own node
    if (fuse) {
      // The rectifier after this node, done: its output is this node's, rectified as written.
      const Node& r = g.nodes[i + 1];
      vals[static_cast<std::size_t>(r.outputs[0])] = std::move(vals[static_cast<std::size_t>(n.outputs[0])]);
      vals[static_cast<std::size_t>(n.outputs[0])] = Tensor();
      ++i;
    }
  }
  std::vector<Tensor> result;
  for (int o : g.outputs) result.push_back(vals[static_cast<std::size_t>(o)]);
  if (keep) *keep = std::move(vals);
  return result;
}

}  // namespace onnxplain::runtime
