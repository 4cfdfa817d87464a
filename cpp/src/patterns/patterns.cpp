#include "patterns/patterns.hpp"

#include <cmath>
#include <algorithm>
#include <cstring>

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
    const int64_t Mg = s ? M / s->groups : M;
    // Neuron-major copies (row j = neuron j's D entries) so that every neuron is one contiguous
    // row; neurons are independent and split over threads.
    std::vector<float> wn(static_cast<std::size_t>(M * D)), apn(static_cast<std::size_t>(M * D)),
        ann(two ? static_cast<std::size_t>(M * D) : 0);
    const float* pw = w.f32();
    for (int64_t o = 0; o < L.outer; ++o)
      for (int64_t j = 0; j < M; ++j)
        std::memcpy(wn.data() + j * D + o * L.inner, pw + (o * M + j) * L.inner, sizeof(float) * static_cast<std::size_t>(L.inner));
    std::vector<int64_t> zero_den(static_cast<std::size_t>(M), 0);
    kernels::parallel_for(
        M, threads,
        [&](int64_t jb, int64_t je) {
          std::vector<double> cov(static_cast<std::size_t>(D));
          for (int64_t j = jb; j < je; ++j) {
            const float* wj = wn.data() + j * D;
            // a = cov / (w·cov), a zero denominator replaced by 1; returns whether it was zero.
            auto finish = [&](float* dst) {
              double den = 0;
              for (int64_t d = 0; d < D; ++d) den += static_cast<double>(wj[d]) * cov[static_cast<std::size_t>(d)];
              const bool zero = den == 0.0;
              if (zero) den = 1.0;
              for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<float>(cov[static_cast<std::size_t>(d)] / den);
              return zero;
            };
            float* aj = apn.data() + j * D;
            auto& zd = zero_den[static_cast<std::size_t>(j)];
            if (e == Estimator::Filter) {
              for (int64_t d = 0; d < D; ++d) cov[static_cast<std::size_t>(d)] = wj[d];
              zd += finish(aj);
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
              zd += finish(aj);
              continue;
            }
            // A component with no rows gets a = 0 (iNNvestigate's x/0 -> x/1 on sums that are 0);
            // set, not computed: the inactive sums are differences (all - active) whose rounding
            // would otherwise be divided by an equally tiny w·cov.
            const double cp = s->count_pos[static_cast<std::size_t>(j)], cn = rows - cp;
            if (cp > 0) {
              for (int64_t d = 0; d < D; ++d) cov[static_cast<std::size_t>(d)] = sxyp[d] / cp - (sxp[d] / cp) * ey;
              zd += finish(aj);
            } else {
              std::fill(aj, aj + D, 0.f);
            }
            float* anj = ann.data() + j * D;
            if (cn > 0) {
              for (int64_t d = 0; d < D; ++d)
                cov[static_cast<std::size_t>(d)] = (sxy[d] - sxyp[d]) / cn - ((sx[d] - sxp[d]) / cn) * ey;
              zd += finish(anj);
            } else {
              std::fill(anj, anj + D, 0.f);
            }
          }
        },
        std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, D)));
    auto back = [&](const std::vector<float>& src, Tensor& dst) {
      float* q = dst.f32();
      for (int64_t o = 0; o < L.outer; ++o)
        for (int64_t j = 0; j < M; ++j)
          std::memcpy(q + (o * M + j) * L.inner, src.data() + j * D + o * L.inner, sizeof(float) * static_cast<std::size_t>(L.inner));
    };
    back(apn, ap);
    if (two) back(ann, an);
    int64_t never_fired = 0, never_inactive = 0, zd_total = 0;
    for (int64_t j = 0; j < M; ++j) {
      zd_total += zero_den[static_cast<std::size_t>(j)];
      if (two) {
        const double cp = s->count_pos[static_cast<std::size_t>(j)];
        never_fired += cp == 0;
        never_inactive += cp == s->rows;
      }
    }
    p.zero_denominator = zd_total;
    p.a_pos = ap.frozen();
    if (two) p.a_neg = an.frozen();
    p.never_fired = never_fired;
    p.never_inactive = never_inactive;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace onnxplain::patterns
