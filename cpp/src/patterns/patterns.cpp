#include "patterns/patterns.hpp"

#include <cmath>

#include "kernels/parallel.hpp"
#include "onnxplain/errors.hpp"

namespace onnxplain::patterns {
namespace {

// Neuron-major view of a weight layout: (o, j, i) <-> row j, column o * inner + i.
struct Layout {
  int64_t outer = 1, M = 1, inner = 1;
  Layout(const Shape& s, int axis) {
    for (int k = 0; k < static_cast<int>(s.size()); ++k) {
      if (k < axis) outer *= s[static_cast<std::size_t>(k)];
      if (k > axis) inner *= s[static_cast<std::size_t>(k)];
    }
    M = s[static_cast<std::size_t>(axis)];
  }
  int64_t at(int64_t j, int64_t d) const { return ((d / inner) * M + j) * inner + d % inner; }
};

}  // namespace

Estimator parse_estimator(const std::string& s) {
  if (s == "identity") return Estimator::Identity;
  if (s == "filter") return Estimator::Filter;
  if (s == "linear") return Estimator::Linear;
  if (s == "relu") return Estimator::Relu;
  throw InvalidArgument("unknown estimator '" + s + "' (identity, filter, linear, relu)");
}

const char* estimator_name(Estimator e) {
  switch (e) {
    case Estimator::Identity: return "identity";
    case Estimator::Filter: return "filter";
    case Estimator::Linear: return "linear";
    case Estimator::Relu: return "relu";
  }
  return "?";
}

Tensor times_weight(const Tensor& a, const Tensor& w) {
  Tensor r(DType::Float32, a.shape());
  const float* pa = a.f32();
  const float* pw = w.f32();
  float* q = r.f32();
  for (int64_t i = 0; i < a.numel(); ++i) q[i] = pa[i] * pw[i];
  return r.frozen();
}

std::vector<LayerPattern> compute_patterns(const runtime::Model& m, const Statistics* stats, Estimator e,
                                           int threads) {
  const Graph& g = m.graph();
  const std::vector<std::size_t> nodes = pattern_nodes(g);
  if (needs_fit(e) && (!stats || stats->layers.size() != nodes.size()))
    throw InvalidArgument("the patterns need statistics of this model: call fit(data) first");
  std::vector<LayerPattern> out;
  for (std::size_t k = 0; k < nodes.size(); ++k) {
    const Node& n = g.nodes[nodes[k]];
    const Tensor& w = g.values[static_cast<std::size_t>(n.inputs[static_cast<std::size_t>(n.op->weight_input())])].constant;
    const int axis = n.op->weight_neuron_axis(w.rank());
    const Layout L(w.shape(), axis);
    const int64_t M = L.M, D = L.outer * L.inner;
    const LayerStats* s = stats && k < stats->layers.size() ? &stats->layers[k] : nullptr;
    if (needs_fit(e) && (!s || s->node != n.name || s->weight_shape != w.shape()))
      throw InvalidArgument("the statistics do not belong to this model (layer " + std::to_string(k) + ": '" +
                            (s ? s->node : std::string("?")) + "' vs '" + n.name + "')");
    LayerPattern p;
    p.node = n.name;
    p.neurons = M;
    p.rows = s ? s->rows : 0;
    if (e == Estimator::Identity) {
      out.push_back(std::move(p));
      continue;
    }
    const bool two = e == Estimator::Relu;
    Tensor ap(DType::Float32, w.shape()), an;
    if (two) an = Tensor(DType::Float32, w.shape());
    const float* pw = w.f32();
    const int64_t Mg = s ? M / s->groups : M;
    int64_t zero_den = 0, never_fired = 0, never_inactive = 0;
    std::vector<double> cov(static_cast<std::size_t>(D));
    // One neuron at a time: a pattern is O(D) work; layers have few enough neurons that the
    // loop is cheap next to the fit, and serial keeps the counts simple.
    (void)threads;
    for (int64_t j = 0; j < M; ++j) {
      auto finish = [&](float* dst, bool zero_counted) {
        double den = 0;
        for (int64_t d = 0; d < D; ++d) den += static_cast<double>(pw[L.at(j, d)]) * cov[static_cast<std::size_t>(d)];
        if (den == 0.0) {
          den = 1.0;
          if (zero_counted) ++zero_den;
        }
        for (int64_t d = 0; d < D; ++d) dst[L.at(j, d)] = static_cast<float>(cov[static_cast<std::size_t>(d)] / den);
      };
      if (e == Estimator::Filter) {
        for (int64_t d = 0; d < D; ++d) cov[static_cast<std::size_t>(d)] = pw[L.at(j, d)];
        finish(ap.f32(), true);
        continue;
      }
      const double rows = s->rows;
      const double ey = rows > 0 ? s->sum_y[static_cast<std::size_t>(j)] / rows : 0.0;
      const double* sx = s->sum_x.data() + (j / Mg) * D;
      const double* sxp = s->sum_x_pos.data() + j * D;
      const double* sxy = s->sum_xy.data() + j * D;
      const double* sxyp = s->sum_xy_pos.data() + j * D;
      if (e == Estimator::Linear) {
        const double c = rows > 0 ? rows : 1.0;
        for (int64_t d = 0; d < D; ++d) cov[static_cast<std::size_t>(d)] = sxy[d] / c - (sx[d] / c) * ey;
        finish(ap.f32(), true);
        continue;
      }
      const double cp = s->count_pos[static_cast<std::size_t>(j)], cn = rows - cp;
      if (cp == 0) ++never_fired;
      if (cn == 0) ++never_inactive;
      const double dp = cp > 0 ? cp : 1.0, dn = cn > 0 ? cn : 1.0;
      for (int64_t d = 0; d < D; ++d) cov[static_cast<std::size_t>(d)] = sxyp[d] / dp - (sxp[d] / dp) * ey;
      finish(ap.f32(), cp > 0);
      for (int64_t d = 0; d < D; ++d)
        cov[static_cast<std::size_t>(d)] = (sxy[d] - sxyp[d]) / dn - ((sx[d] - sxp[d]) / dn) * ey;
      finish(an.f32(), cn > 0);
    }
    p.a_pos = ap.frozen();
    if (two) p.a_neg = an.frozen();
    p.zero_denominator = zero_den;
    p.never_fired = never_fired;
    p.never_inactive = never_inactive;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace onnxplain::patterns
