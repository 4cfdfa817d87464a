// BatchNormalization after a linear op is an affine map per output channel, so it folds into the
// op's weights and bias (Zennit's MergeBatchNorm canonizer): y = a*(Wx + b) + c with
// a = scale/sqrt(var + eps), c = B - mean*a. Explanations then see one linear layer, as the
// rules of DESIGN.md require; outputs are unchanged up to float rounding.
#include <cmath>

#include "ops/op.hpp"
#include "passes/passes.hpp"
#include "passes/util.hpp"

namespace onnxplain::passes {

namespace {

struct Affine {
  std::vector<float> a, c;
};

bool bn_affine(const Graph& g, const Node& bn, Affine& out) {
  if (bn.inputs.size() < 5 || bn.outputs.size() < 1) return false;
  for (std::size_t k = 1; k < bn.outputs.size(); ++k)
    if (bn.outputs[k] >= 0) return false;  // training-mode outputs
  if (bn.attrs.get_int("training_mode", 0) != 0) return false;
  const Tensor* s = constant_of(g, bn.inputs[1]);
  const Tensor* b = constant_of(g, bn.inputs[2]);
  const Tensor* m = constant_of(g, bn.inputs[3]);
  const Tensor* v = constant_of(g, bn.inputs[4]);
  if (!s || !b || !m || !v) return false;
  const int64_t C = s->numel();
  if (b->numel() != C || m->numel() != C || v->numel() != C) return false;
  if (s->dtype() != DType::Float32 || b->dtype() != DType::Float32 || m->dtype() != DType::Float32 ||
      v->dtype() != DType::Float32)
    return false;
  const double eps = bn.attrs.get_float("epsilon", 1e-5f);
  out.a.resize(static_cast<std::size_t>(C));
  out.c.resize(static_cast<std::size_t>(C));
  for (int64_t k = 0; k < C; ++k) {
    // Double precision: var + eps can be tiny and the product is reused for every weight.
    double a = s->f32()[k] / std::sqrt(static_cast<double>(v->f32()[k]) + eps);
    out.a[static_cast<std::size_t>(k)] = static_cast<float>(a);
    out.c[static_cast<std::size_t>(k)] = static_cast<float>(b->f32()[k] - m->f32()[k] * a);
  }
  return true;
}

// Conv: W is [OC, IC/g, k...]; Gemm with transB: B is [N, K]. Channel = the leading axis.
Tensor scale_leading(const Tensor& w, const std::vector<float>& a) {
  Tensor r = w.clone();
  const int64_t C = w.dim(0), inner = C ? w.numel() / C : 0;
  for (int64_t o = 0; o < C; ++o)
    for (int64_t j = 0; j < inner; ++j) r.f32()[o * inner + j] *= a[static_cast<std::size_t>(o)];
  return r;
}

// Gemm without transB / MatMul: B is [K, N]. Channel = the trailing axis.
Tensor scale_trailing(const Tensor& w, const std::vector<float>& a) {
  Tensor r = w.clone();
  const int64_t N = w.dim(w.rank() - 1), rows = N ? w.numel() / N : 0;
  for (int64_t k = 0; k < rows; ++k)
    for (int64_t o = 0; o < N; ++o) r.f32()[k * N + o] *= a[static_cast<std::size_t>(o)];
  return r;
}

// New bias a*b_old*bscale + c, where b_old broadcasts as a scalar or a per-channel vector.
bool folded_bias(const Tensor* b_old, float bscale, const Affine& af, Tensor& out) {
  const int64_t C = static_cast<int64_t>(af.a.size());
  out = Tensor(DType::Float32, {C});
  for (int64_t k = 0; k < C; ++k) out.f32()[k] = af.c[static_cast<std::size_t>(k)];
  if (!b_old) return true;
  if (b_old->dtype() != DType::Float32) return false;
  if (b_old->numel() != 1 && b_old->numel() != C) return false;
  if (b_old->numel() == C && b_old->rank() >= 1 && b_old->dim(b_old->rank() - 1) != C) return false;
  for (int64_t k = 0; k < C; ++k) {
    float bv = b_old->numel() == 1 ? b_old->f32()[0] : b_old->f32()[k];
    out.f32()[k] += af.a[static_cast<std::size_t>(k)] * bscale * bv;
  }
  return true;
}

}  // namespace

void fold_batch_norm(Graph& g) {
  auto consumers = g.consumers();
  bool changed = false;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& bn = g.nodes[i];
    if (bn.op_type != "BatchNormalization" || bn.outputs.empty() || bn.inputs.empty() || bn.inputs[0] < 0) continue;
    int x = bn.inputs[0];
    const Value& xv = g.values[static_cast<std::size_t>(x)];
    if (xv.producer < 0 || !single_reader(g, consumers, x)) continue;
    std::size_t li = static_cast<std::size_t>(xv.producer);
    Node& lin = g.nodes[li];
    if (!lin.op || lin.op->kind() != ops::OpKind::Linear || lin.outputs.size() != 1) continue;
    Affine af;
    if (!bn_affine(g, bn, af)) continue;
    const int64_t C = static_cast<int64_t>(af.a.size());
    const int wi = lin.op->weight_input(), bi = lin.op->bias_input();
    const Tensor* w = constant_of(g, lin.inputs[static_cast<std::size_t>(wi)]);
    if (!w || w->dtype() != DType::Float32 || w->rank() < 2) continue;
    const Tensor* b_old = bi >= 0 ? constant_of(g, lin.inputs[static_cast<std::size_t>(bi)]) : nullptr;
    if (bi >= 0 && !b_old) continue;

    Tensor w_new, b_new;
    float bscale = 1.f;
    if (lin.op_type == "Conv") {
      if (w->dim(0) != C) continue;
      w_new = scale_leading(*w, af.a);
    } else if (lin.op_type == "Gemm" || lin.op_type == "MatMul") {
      // The BN channel axis (1) must be the linear op's output-feature axis: rank-2 outputs only.
      if (!xv.info.has_rank || xv.info.rank() != 2 || w->rank() != 2) continue;
      bool trans_b = lin.op_type == "Gemm" && lin.attrs.get_int("transB", 0) != 0;
      if ((trans_b ? w->dim(0) : w->dim(1)) != C) continue;
      w_new = trans_b ? scale_leading(*w, af.a) : scale_trailing(*w, af.a);
      if (lin.op_type == "Gemm") bscale = lin.attrs.get_float("beta", 1.f);
    } else {
      continue;
    }
    if (!folded_bias(b_old, bscale, af, b_new)) continue;

    const std::string& lname = lin.name;
    lin.inputs[static_cast<std::size_t>(wi)] = g.add_constant(lname + "_W_bnfolded", w_new);
    int bias_id = g.add_constant(lname + "_B_bnfolded", b_new);
    if (bi >= 0) {
      lin.inputs[static_cast<std::size_t>(bi)] = bias_id;
    } else {
      // The op's bias slot is input 2 for Conv, Gemm and the fused MatMul alike.
      while (lin.inputs.size() < 2) lin.inputs.push_back(-1);
      lin.inputs.resize(2);
      lin.inputs.push_back(bias_id);
    }
    if (lin.op_type == "Gemm") {
      Attribute one;
      one.type = Attribute::Type::Float;
      one.f = 1.f;
      lin.attrs.set("beta", one);
    }
    g.notes.push_back("folded " + Graph::node_context(bn) + " into " + Graph::node_context(lin));
    lin.outputs = {bn.outputs[0]};
    bn.outputs.clear();
    instantiate(g, li);
    changed = true;
  }
  if (changed) {
    erase_cleared_nodes(g);
    infer_shapes(g);
  }
}

}  // namespace onnxplain::passes
