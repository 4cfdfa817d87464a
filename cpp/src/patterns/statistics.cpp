#include "patterns/statistics.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/gemm.hpp"
#include "kernels/parallel.hpp"
#include "onnxplain/errors.hpp"
#include "patterns/binary_io.hpp"

namespace onnxplain::patterns {
namespace {

int64_t prod(const Shape& s, std::size_t b, std::size_t e) {
  int64_t p = 1;
  for (std::size_t i = b; i < e; ++i) p *= s[i];
  return p;
}

void add_into(std::vector<double>& a, const std::vector<double>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}

/// dst[j*D + o*inner + i] += src[(o*M + j)*inner + i]: a weight-layout float tensor added into a
/// neuron-major double accumulator, for neurons [j0, j0 + count) of src's axis (dst row j - j0 + d0).
void add_neuron_major(const float* src, const Shape& ws, int axis, int64_t j0, int64_t count, double* dst,
                      int threads) {
  const auto a = static_cast<std::size_t>(axis);
  const int64_t outer = prod(ws, 0, a), M = ws[a], inner = prod(ws, a + 1, ws.size()), D = outer * inner;
  kernels::parallel_for(
      count, threads,
      [&](int64_t b, int64_t e) {
        for (int64_t jj = b; jj < e; ++jj) {
          const int64_t j = j0 + jj;
          double* q = dst + jj * D;
          for (int64_t o = 0; o < outer; ++o) {
            const float* p = src + (o * M + j) * inner;
            double* qo = q + o * inner;
            for (int64_t i = 0; i < inner; ++i) qo[i] += static_cast<double>(p[i]);
          }
        }
      },
      std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, D)));
}

/// The data input of a linear op: the first present input that is neither weight nor bias.
int data_input(const ops::Op& op, const std::vector<const Tensor*>& ins) {
  for (std::size_t i = 0; i < ins.size(); ++i)
    if (ins[i] && static_cast<int>(i) != op.weight_input() && static_cast<int>(i) != op.bias_input())
      return static_cast<int>(i);
  throw ShapeError(op.context() + ": pattern statistics found no data input");
}

}  // namespace

// ---- LayerStats / Statistics ---------------------------------------------------------------------

void LayerStats::init(const std::string& name, const Shape& wshape, int axis, int64_t g) {
  node = name;
  weight_shape = wshape;
  weight_axis = axis;
  neurons = wshape.at(static_cast<std::size_t>(axis));
  groups = g;
  dim = neurons ? prod(wshape, 0, wshape.size()) / neurons : 0;
  rows = 0;
  const auto M = static_cast<std::size_t>(neurons), MD = static_cast<std::size_t>(neurons * dim);
  count_pos.assign(M, 0.0);
  sum_y.assign(M, 0.0);
  sum_y_pos.assign(M, 0.0);
  sum_yy.assign(M, 0.0);
  sum_yy_pos.assign(M, 0.0);
  sum_x.assign(static_cast<std::size_t>(groups * dim), 0.0);
  sum_x_pos.assign(MD, 0.0);
  sum_xy.assign(MD, 0.0);
  sum_xy_pos.assign(MD, 0.0);
}

void LayerStats::add(const LayerStats& o) {
  rows += o.rows;
  add_into(count_pos, o.count_pos);
  add_into(sum_y, o.sum_y);
  add_into(sum_y_pos, o.sum_y_pos);
  add_into(sum_yy, o.sum_yy);
  add_into(sum_yy_pos, o.sum_yy_pos);
  add_into(sum_x, o.sum_x);
  add_into(sum_x_pos, o.sum_x_pos);
  add_into(sum_xy, o.sum_xy);
  add_into(sum_xy_pos, o.sum_xy_pos);
  if (sum_xx.empty()) sum_xx = o.sum_xx;
  else if (!o.sum_xx.empty()) add_into(sum_xx, o.sum_xx);
}

const LayerStats* Statistics::find(const std::string& node) const {
  for (const auto& l : layers)
    if (l.node == node) return &l;
  return nullptr;
}

void Statistics::merge(const Statistics& o) {
  if (o.layers.empty()) return;
  if (layers.empty()) {
    *this = o;
    return;
  }
  if (o.fingerprint != fingerprint || o.layers.size() != layers.size())
    throw InvalidArgument("cannot merge pattern statistics of different models (model fingerprints " +
                          std::to_string(fingerprint) + " and " + std::to_string(o.fingerprint) + ")");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerStats &a = layers[i], &b = o.layers[i];
    if (a.node != b.node || a.weight_shape != b.weight_shape || a.weight_axis != b.weight_axis || a.groups != b.groups)
      throw InvalidArgument("cannot merge pattern statistics: layer " + std::to_string(i) + " is '" + a.node + "' " +
                            shape_str(a.weight_shape) + " in one and '" + b.node + "' " + shape_str(b.weight_shape) +
                            " in the other");
  }
  for (std::size_t i = 0; i < layers.size(); ++i) layers[i].add(o.layers[i]);
}

// Format (little-endian): "OXPSTAT1", u64 fingerprint, u32 layer count; per layer: u32 name
// length + bytes, u32 weight rank + i64 dims, i32 weight axis, i64 groups, f64 rows, then f64
// arrays count_pos[M], sum_y[M], sum_y_pos[M], sum_yy[M], sum_yy_pos[M], sum_x[G*D],
// sum_x_pos[M*D], sum_xy[M*D], sum_xy_pos[M*D], u8 has Σxxᵀ, sum_xx[G*D*D] when it has.
std::string Statistics::serialize() const {
  Writer w;
  w.bytes("OXPSTAT1", 8);
  w.u64(fingerprint);
  w.u32(static_cast<uint32_t>(layers.size()));
  for (const auto& l : layers) {
    w.str(l.node);
    w.shape(l.weight_shape);
    w.i32(l.weight_axis);
    w.i64(l.groups);
    w.f64(l.rows);
    for (const auto* v : {&l.count_pos, &l.sum_y, &l.sum_y_pos, &l.sum_yy, &l.sum_yy_pos, &l.sum_x, &l.sum_x_pos,
                          &l.sum_xy, &l.sum_xy_pos})
      w.f64s(*v);
    w.pod<uint8_t>(!l.sum_xx.empty());
    w.f64s(l.sum_xx);
  }
  return w.take();
}

Statistics Statistics::deserialize(const uint8_t* data, std::size_t size) {
  Reader r(data, size, "pattern statistics");
  r.magic("OXPSTAT1");
  Statistics s;
  s.fingerprint = r.u64();
  const uint32_t n = r.u32();
  for (uint32_t k = 0; k < n; ++k) {
    LayerStats l;
    const std::string name = r.str();
    const Shape ws = r.shape();
    const int axis = r.i32();
    const int64_t groups = r.i64();
    if (ws.empty() || axis < 0 || axis >= static_cast<int>(ws.size()) || ws[static_cast<std::size_t>(axis)] < 1 ||
        groups < 1 || ws[static_cast<std::size_t>(axis)] % groups != 0)
      r.fail("layer '" + name + "' has an invalid weight shape " + shape_str(ws) + ", axis " + std::to_string(axis) +
             " or groups " + std::to_string(groups));
    // Sizes are checked against the bytes left before anything is allocated.
    const int64_t M = ws[static_cast<std::size_t>(axis)], D = prod(ws, 0, ws.size()) / M;
    r.need_f64s(5 * M + groups * D + 3 * M * D);
    l.init(name, ws, axis, groups);
    l.rows = r.f64();
    for (auto* v : {&l.count_pos, &l.sum_y, &l.sum_y_pos, &l.sum_yy, &l.sum_yy_pos, &l.sum_x, &l.sum_x_pos, &l.sum_xy,
                    &l.sum_xy_pos})
      r.f64s(*v);
    if (r.pod<uint8_t>()) {
      r.need_f64s(groups * D * D);
      l.sum_xx.assign(static_cast<std::size_t>(groups * D * D), 0.0);
      r.f64s(l.sum_xx);
    }
    s.layers.push_back(std::move(l));
  }
  r.end();
  return s;
}

// ---- which ops, which model --------------------------------------------------------------------

std::vector<std::size_t> pattern_nodes(const Graph& g) {
  std::vector<std::size_t> r;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (!n.op || n.op->kind() != ops::OpKind::Linear) continue;
    const int wi = n.op->weight_input();
    if (wi < 0 || static_cast<std::size_t>(wi) >= n.inputs.size() || n.inputs[static_cast<std::size_t>(wi)] < 0)
      continue;
    const Value& w = g.values[static_cast<std::size_t>(n.inputs[static_cast<std::size_t>(wi)])];
    if (!w.is_constant || w.constant.dtype() != DType::Float32) continue;
    if (n.op->weight_neuron_axis(w.constant.rank()) < 0) continue;
    r.push_back(i);
  }
  return r;
}

uint64_t model_fingerprint(const runtime::Model& m) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  auto mix_bytes = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v;
      std::memcpy(&v, b + i, 8);
      mix(v);
    }
    for (; i < n; ++i) mix(b[i]);
    mix(n);
  };
  const Graph& g = m.graph();
  for (const auto& n : g.nodes) {
    mix_bytes(n.name.data(), n.name.size());
    mix_bytes(n.op_type.data(), n.op_type.size());
    for (int in : n.inputs) {
      mix(static_cast<uint64_t>(in + 1));
      if (in < 0) continue;
      const Value& v = g.values[static_cast<std::size_t>(in)];
      if (v.is_constant && v.constant.raw()) {
        for (int64_t d : v.constant.shape()) mix(static_cast<uint64_t>(d));
        mix_bytes(v.constant.raw(), v.constant.nbytes());
      }
    }
  }
  return h;
}

// ---- collecting ----------------------------------------------------------------------------------

Collector::Collector(std::shared_ptr<const runtime::Model> model)
    : model_(std::move(model)), nodes_(pattern_nodes(model_->graph())), fingerprint_(model_fingerprint(*model_)) {}

void Collector::add(const std::vector<Tensor>& inputs, int threads, Statistics& stats, int64_t gram_max_dim) {
  const Graph& g = model_->graph();
  if (stats.layers.empty()) {
    stats.fingerprint = fingerprint_;
    for (std::size_t i : nodes_) {
      const Node& n = g.nodes[i];
      const Tensor& w = g.values[static_cast<std::size_t>(n.inputs[static_cast<std::size_t>(n.op->weight_input())])].constant;
      LayerStats l;
      l.init(n.name, w.shape(), n.op->weight_neuron_axis(w.rank()), n.op->neuron_groups());
      stats.layers.push_back(std::move(l));
    }
  } else if (stats.fingerprint != fingerprint_ || stats.layers.size() != nodes_.size()) {
    throw InvalidArgument("these pattern statistics belong to another model");
  }
  std::vector<int> slot(g.nodes.size(), -1);
  for (std::size_t k = 0; k < nodes_.size(); ++k) slot[nodes_[k]] = static_cast<int>(k);
  runtime::Model::ForwardHook hook = [&](std::size_t i, const std::vector<const Tensor*>& ins,
                                         std::vector<Tensor>& outs, ExecContext& ctx) {
    if (slot[i] < 0) return false;
    g.nodes[i].op->forward(ins, outs, ctx);
    LayerStats& l = stats.layers[static_cast<std::size_t>(slot[i])];
    layer(i, ins, outs.at(0), l, ctx);
    if (gram_max_dim > 0 && l.dim <= gram_max_dim) gram(i, ins, l, ctx);
    return true;
  };
  model_->run(inputs, threads, nullptr, hook);
}

void Collector::layer(std::size_t idx, const std::vector<const Tensor*>& ins, const Tensor& out, LayerStats& s,
                      ExecContext& ctx) {
  const Node& node = model_->graph().nodes[idx];
  const ops::Op& op = *node.op;
  const int wi = op.weight_input(), bi = op.bias_input(), di = data_input(op, ins);
  const Tensor& w = *ins.at(static_cast<std::size_t>(wi));
  const Tensor* b = bi >= 0 && static_cast<std::size_t>(bi) < ins.size() ? ins[static_cast<std::size_t>(bi)] : nullptr;
  const Tensor& x = *ins[static_cast<std::size_t>(di)];
  const int ao = op.out_neuron_axis(out.rank()), aw = s.weight_axis;
  const int64_t M = s.neurons;
  if (ao < 0 || out.dim(ao) != M || w.shape() != s.weight_shape)
    throw ShapeError(op.context() + ": output " + shape_str(out.shape()) + " does not fit the weight " +
                     shape_str(w.shape()) + " for pattern statistics");
  const int threads = ctx.threads();
  const auto uao = static_cast<std::size_t>(ao);
  const int64_t outer = prod(out.shape(), 0, uao), inner = prod(out.shape(), uao + 1, out.shape().size());
  if (outer * inner == 0) return;

  // The bias's share of each output (y = out - c is W x alone): one value per neuron or one for all.
  std::vector<float> c(static_cast<std::size_t>(M), 0.f);
  if (b) {
    const float scale = op.bias_scale();
    if (b->numel() == M)
      for (int64_t j = 0; j < M; ++j) c[static_cast<std::size_t>(j)] = scale * b->f32()[j];
    else if (b->numel() == 1)
      std::fill(c.begin(), c.end(), scale * b->f32()[0]);
    else
      throw InvalidArgument(op.context() + ": pattern statistics need a bias with one value per output neuron, got " +
                            shape_str(b->shape()));
  }

  // Per-neuron sums over the output: counts, Σy, Σy² (all and active rows).
  const float* po = out.f32();
  s.rows += static_cast<double>(outer * inner);
  kernels::parallel_for(
      M, threads,
      [&](int64_t jb, int64_t je) {
        for (int64_t j = jb; j < je; ++j) {
          const float cj = c[static_cast<std::size_t>(j)];
          double cnt = 0, sy = 0, syp = 0, syy = 0, syyp = 0;
          for (int64_t o = 0; o < outer; ++o) {
            const float* p = po + (o * M + j) * inner;
            for (int64_t i = 0; i < inner; ++i) {
              const double v = p[i], y = static_cast<double>(p[i] - cj);
              const double m = v > 0 ? 1.0 : 0.0;
              cnt += m;
              sy += y;
              syp += m * y;
              syy += y * y;
              syyp += m * y * y;
            }
          }
          const auto u = static_cast<std::size_t>(j);
          s.count_pos[u] += cnt;
          s.sum_y[u] += sy;
          s.sum_y_pos[u] += syp;
          s.sum_yy[u] += syy;
          s.sum_yy_pos[u] += syyp;
        }
      },
      std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, outer * inner)));

  // Cotangent k of the stacked set: 0 = y*m, 1 = m, 2 = y (each M channels), 3 = ones.
  auto fill = [&](float* dst, int64_t o_begin, int64_t o_count, int64_t channels, int which) {
    // dst: [o_count, channels, inner]; channels = M per cotangent (or the stacked 3M + 1).
    kernels::parallel_for(
        o_count * channels, threads,
        [&](int64_t rb, int64_t re) {
          for (int64_t r = rb; r < re; ++r) {
            const int64_t o = r / channels, ch = r % channels;
            const int kind = which >= 0 ? which : static_cast<int>(std::min<int64_t>(3, ch / M));
            float* q = dst + r * inner;
            if (kind == 3) {
              std::fill(q, q + inner, 1.f);
              continue;
            }
            const int64_t j = which >= 0 ? ch : ch % M;
            const float* p = po + ((o_begin + o) * M + j) * inner;
            const float cj = c[static_cast<std::size_t>(j)];
            if (kind == 0)
              for (int64_t i = 0; i < inner; ++i) q[i] = p[i] > 0.f ? p[i] - cj : 0.f;
            else if (kind == 1)
              for (int64_t i = 0; i < inner; ++i) q[i] = p[i] > 0.f ? 1.f : 0.f;
            else
              for (int64_t i = 0; i < inner; ++i) q[i] = p[i] - cj;
          }
        },
        std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, inner)));
  };
  auto weight_grad = [&](const Tensor& xs, const Tensor& wt, const Tensor& gy) {
    std::vector<const Tensor*> in = ins;
    in[static_cast<std::size_t>(di)] = &xs;
    in[static_cast<std::size_t>(wi)] = &wt;
    if (bi >= 0 && static_cast<std::size_t>(bi) < in.size()) in[static_cast<std::size_t>(bi)] = nullptr;
    std::vector<const Tensor*> outp(node.outputs.size(), nullptr);
    outp[0] = &gy;
    std::vector<const Tensor*> gout(node.outputs.size(), nullptr);
    gout[0] = &gy;
    std::vector<bool> need(in.size(), false);
    need[static_cast<std::size_t>(wi)] = true;
    std::vector<Tensor> gin(in.size());
    op.vjp(in, outp, gout, need, gin, ctx);
    return gin[static_cast<std::size_t>(wi)];
  };

  const int64_t G = s.groups, Mg = M / G, D = s.dim;
  // A convolution (stacks on channels: [N, M, ...] output, weight [M, ...]) runs the four
  // cotangents as one weight gradient over 3M + 1 stacked channels, sharing its im2col, in chunks
  // of samples sized to keep the stacked cotangent small.
  if (op.stacks_on_channels() && ao == 1 && aw == 0 && G == 1 && x.rank() >= 1 && x.dim(0) == outer) {
    const int64_t S = 3 * M + 1;
    Shape wst = w.shape();
    wst[0] = S;
    const Tensor wstack = Tensor::zeros(DType::Float32, wst);
    const int64_t per_x = outer ? x.numel() / outer : 0;
    // At least one sample per thread, so that the weight gradient splits samples over threads.
    const int64_t chunk = std::max<int64_t>(
        threads, std::min<int64_t>(outer, (int64_t{16} << 20) / std::max<int64_t>(1, S * inner)));
    for (int64_t o0 = 0; o0 < outer; o0 += chunk) {
      const int64_t k = std::min(chunk, outer - o0);
      Shape xsh = x.shape();
      xsh[0] = k;
      const Tensor xs = x.view(xsh, o0 * per_x);
      Shape gsh = out.shape();
      gsh[0] = k;
      gsh[1] = S;
      Tensor gy(DType::Float32, gsh);
      fill(gy.f32(), o0, k, S, -1);
      const Tensor dw = weight_grad(xs, wstack, gy);
      add_neuron_major(dw.f32(), wst, 0, 0, M, s.sum_xy_pos.data(), threads);
      add_neuron_major(dw.f32(), wst, 0, M, M, s.sum_x_pos.data(), threads);
      add_neuron_major(dw.f32(), wst, 0, 2 * M, M, s.sum_xy.data(), threads);
      add_neuron_major(dw.f32(), wst, 0, 3 * M, 1, s.sum_x.data(), threads);
    }
    return;
  }
  Tensor gy(DType::Float32, out.shape());
  std::vector<double> ones_rows;
  for (int which = 0; which < 4; ++which) {
    // Per-neuron cotangents on the output's own layout: [outer, M, inner].
    fill(gy.f32(), 0, outer, M, which);
    const Tensor dw = weight_grad(x, w, gy);
    if (which == 3) {
      // Σx is the same for every neuron of a group: keep the group's first row.
      for (int64_t gi = 0; gi < G; ++gi)
        add_neuron_major(dw.f32(), w.shape(), aw, gi * Mg, 1, s.sum_x.data() + gi * D, threads);
      continue;
    }
    double* dst = which == 0 ? s.sum_xy_pos.data() : which == 1 ? s.sum_x_pos.data() : s.sum_xy.data();
    add_neuron_major(dw.f32(), w.shape(), aw, 0, M, dst, threads);
  }
}

void Collector::gram(std::size_t idx, const std::vector<const Tensor*>& ins, LayerStats& s, ExecContext& ctx) {
  const Node& node = model_->graph().nodes[idx];
  const ops::Op& op = *node.op;
  const int wi = op.weight_input(), bi = op.bias_input();
  const int64_t G = s.groups, D = s.dim, GD = G * D;
  if (s.sum_xx.empty()) s.sum_xx.assign(static_cast<std::size_t>(G * D * D), 0.0);
  // The identity weight: neuron g*D + d reads entry d of group g's input.
  Shape es = s.weight_shape;
  const auto a = static_cast<std::size_t>(s.weight_axis);
  es[a] = GD;
  Tensor e = Tensor::zeros(DType::Float32, es);
  int64_t outer = 1, inner = 1;
  for (std::size_t k = 0; k < es.size(); ++k) {
    if (k < a) outer *= es[k];
    if (k > a) inner *= es[k];
  }
  for (int64_t n = 0; n < GD; ++n) {
    const int64_t d = n % D;
    e.f32()[((d / inner) * GD + n) * inner + d % inner] = 1.f;
  }
  std::vector<const Tensor*> in = ins;
  in[static_cast<std::size_t>(wi)] = &e;
  if (bi >= 0 && static_cast<std::size_t>(bi) < in.size()) in[static_cast<std::size_t>(bi)] = nullptr;
  std::vector<Tensor> out(node.outputs.size());
  op.forward(in, out, ctx);
  const Tensor& p = out.at(0);
  const int ao = op.out_neuron_axis(p.rank());
  int64_t po = 1, pi = 1;
  for (int k = 0; k < p.rank(); ++k) {
    if (k < ao) po *= p.dim(k);
    if (k > ao) pi *= p.dim(k);
  }
  // Per outer index o, group g: X = p[o, gD:(g+1)D, :] is [D, pi]; Σ X Xᵀ.
  std::vector<float> acc(static_cast<std::size_t>(D * D));
  for (int64_t g = 0; g < G; ++g) {
    double* dst = s.sum_xx.data() + g * D * D;
    if (pi == 1) {
      kernels::sgemm(true, false, D, D, po, 1.f, p.f32() + g * D, GD, p.f32() + g * D, GD, 0.f, acc.data(), D);
      for (std::size_t k = 0; k < acc.size(); ++k) dst[k] += acc[k];
      continue;
    }
    for (int64_t o = 0; o < po; ++o) {
      const float* xo = p.f32() + (o * GD + g * D) * pi;
      kernels::sgemm(false, true, D, D, pi, 1.f, xo, pi, xo, pi, 0.f, acc.data(), D);
      for (std::size_t k = 0; k < acc.size(); ++k) dst[k] += acc[k];
    }
  }
}

}  // namespace onnxplain::patterns
