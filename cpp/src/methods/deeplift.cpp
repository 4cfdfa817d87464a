// The DeepLIFT driver (Shrikumar et al. 2017): references, the stacked forward pass, the sweep of
// multipliers with the DeepLIFT rules (rules/deeplift.hpp), contributions and their average over
// several references (DeepSHAP's expected contributions, Lundberg & Lee 2017).
#include <algorithm>
#include <cstring>

#include "methods/methods.hpp"
#include "rules/deeplift.hpp"
#include "rules/linear_node.hpp"
#include "runtime/reverse.hpp"

namespace onnxplain::methods {
namespace {

using ops::OpKind;

// Stacked passes hold this many samples (inputs and references together) at most.
constexpr int64_t kStackBatch = 16;

/// The references for input x: [K, *sample] with `per_sample` when there is one per sample (K = N).
struct References {
  Tensor refs;
  bool per_sample = false;
};

References references_for(const Tensor& x, const Params& p) {
  const Shape sample(x.shape().begin() + (x.rank() ? 1 : 0), x.shape().end());
  int64_t m = 1;
  for (int64_t d : sample) m *= d;
  References r;
  auto it = p.arrays.find("reference");
  const auto num = p.numbers.find("reference");
  Shape one = sample;
  one.insert(one.begin(), 1);
  if (it == p.arrays.end()) {
    r.refs = Tensor::zeros(DType::Float32, one);
    if (num != p.numbers.end()) std::fill(r.refs.f32(), r.refs.f32() + m, static_cast<float>(num->second));
    return r;
  }
  const Tensor& a = it->second;
  if (a.numel() == 1) {
    r.refs = Tensor::zeros(DType::Float32, one);
    std::fill(r.refs.f32(), r.refs.f32() + m, a.f32()[0]);
  } else if (a.shape() == sample) {
    r.refs = a.reshaped(one);
  } else if (a.shape() == x.shape()) {
    r.refs = a;
    r.per_sample = true;
  } else if (a.rank() == x.rank() && a.rank() >= 1 && Shape(a.shape().begin() + 1, a.shape().end()) == sample &&
             a.dim(0) >= 1) {
    r.refs = a;  // K references for every sample, averaged
  } else {
    throw InvalidArgument("reference has shape " + shape_str(a.shape()) + "; give None (zeros), a scalar, an array "
                          "shaped like one sample " + shape_str(sample) + ", like x " + shape_str(x.shape()) +
                          " (one reference per sample), or K references shaped (K, " +
                          shape_str(sample).substr(1) + " whose contributions are averaged");
  }
  return r;
}

}  // namespace

Explanation Explainer::explain_deeplift(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets_in,
                                        int threads, const Progress& progress) const {
  const runtime::Model& mdl = *model_;
  const Graph& g = mdl.graph();
  if (inputs.empty() || inputs[0].rank() < 1) throw InvalidArgument("DeepLIFT needs inputs with a batch axis");
  const int64_t n = inputs[0].dim(0);
  for (const auto& x : inputs)
    if (x.rank() < 1 || x.dim(0) != n) throw InvalidArgument("DeepLIFT needs every input with the same batch size");
  if (params_.arrays.count("reference") && inputs.size() > 1)
    throw InvalidArgument("reference: a model with several inputs takes zeros as its references only");
  std::vector<References> refs;
  for (const auto& x : inputs) refs.push_back(references_for(x, params_));
  const int64_t K = refs[0].per_sample ? 1 : refs[0].refs.dim(0);

  Explanation ex;
  ex.start = "one-hot";
  // Targets (argmax of f(x) where not given) and f_t(x) come from the stacked passes' input half.
  ex.targets = targets_in;
  if (!ex.targets.empty() && static_cast<int64_t>(ex.targets.size()) != n)
    throw InvalidArgument(std::to_string(ex.targets.size()) + " targets for a batch of " + std::to_string(n));
  const bool argmax = ex.targets.empty();
  if (argmax) ex.targets.assign(static_cast<std::size_t>(n), -1);
  ex.target_values.assign(static_cast<std::size_t>(n), 0.f);
  ex.reference_values.assign(static_cast<std::size_t>(n), 0.f);
  std::vector<Tensor> acc;
  for (const auto& x : inputs) acc.push_back(Tensor::zeros(DType::Float32, x.shape()));
  if (n == 0) {
    ex.relevance = std::move(acc);
    return ex;
  }

  // (sample, reference) pairs in stacked passes: [x_b for each pair; ref for each pair].
  // One reference for every sample (zeros by default): its forward values are kept per explainer.
  bool shared = K == 1;
  for (const auto& r : refs) shared = shared && !r.per_sample;
  std::vector<Tensor> ref_values;
  if (shared) {
    std::vector<Shape> key;
    for (const auto& x : inputs) key.push_back(Shape(x.shape().begin() + 1, x.shape().end()));
    std::lock_guard<std::mutex> lock(ref_mu_);
    if (key != ref_key_) {
      std::vector<Tensor> rin;
      for (const auto& r : refs) rin.push_back(r.refs);
      std::vector<Tensor> rv;
      mdl.run(rin, threads, &rv);
      ref_values_ = std::move(rv);
      ref_key_ = key;
    }
    ref_values = ref_values_;
  }
  const int64_t pairs = n * K;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(pairs, kStackBatch / 2));
  std::vector<double> fref(static_cast<std::size_t>(n), 0.0);
  for (int64_t p0 = 0; p0 < pairs; p0 += chunk) {
    const int64_t c = std::min(chunk, pairs - p0), B = 2 * c;
    std::vector<Tensor> stacked;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& x = inputs[i];
      const int64_t m = x.numel() / n;
      Shape s = x.shape();
      s[0] = B;
      Tensor t(DType::Float32, s);
      float* q = t.f32();
      for (int64_t j = 0; j < c; ++j) {
        const int64_t pair = p0 + j, b = pair % n, k = pair / n;
        std::memcpy(q + j * m, x.f32() + b * m, sizeof(float) * static_cast<std::size_t>(m));
        const float* r = refs[i].refs.f32() + (refs[i].per_sample ? b : k) * m;
        std::memcpy(q + (c + j) * m, r, sizeof(float) * static_cast<std::size_t>(m));
      }
      stacked.push_back(t);
    }
    std::vector<Tensor> values;
    if (shared) {
      // The reference's values come from the cache: run the inputs alone and stack each value
      // with c copies of the reference's (graph constants and non-batch values as they are).
      std::vector<Tensor> xs, xv;
      for (const auto& x : inputs) {
        Shape s = x.shape();
        s[0] = c;
        xs.push_back(x.view(s, p0 * (x.numel() / n)));
      }
      mdl.run(xs, threads, &xv);
      values.resize(xv.size());
      for (std::size_t v = 0; v < xv.size(); ++v) {
        const Tensor& a = xv[v];
        const Tensor& r = ref_values[v];
        const bool batched = !g.values[v].is_constant && a.dtype() == DType::Float32 && a.rank() >= 1 &&
                             a.dim(0) == c && r.dtype() == DType::Float32 && r.rank() == a.rank() && r.dim(0) == 1 &&
                             Shape(a.shape().begin() + 1, a.shape().end()) == Shape(r.shape().begin() + 1, r.shape().end());
        if (!batched) {
          values[v] = a;
          continue;
        }
        Shape s = a.shape();
        s[0] = B;
        Tensor t(DType::Float32, s);
        const int64_t per = r.numel();
        std::memcpy(t.f32(), a.f32(), a.nbytes());
        for (int64_t j = 0; j < c; ++j)
          std::memcpy(t.f32() + (c + j) * per, r.f32(), sizeof(float) * static_cast<std::size_t>(per));
        values[v] = t;
      }
    } else {
      mdl.run(stacked, threads, &values);
    }
    const Tensor& y = values.at(static_cast<std::size_t>(g.outputs.at(0)));
    if (y.dtype() != DType::Float32 || y.rank() < 1 || y.dim(0) != B)
      throw InvalidArgument("the first output has shape " + shape_str(y.shape()) + "; explanations need a batch axis");
    const int64_t k = y.numel() / B;
    for (int64_t j = 0; j < c; ++j) {
      const int64_t b = (p0 + j) % n;
      int64_t& t = ex.targets[static_cast<std::size_t>(b)];
      const float* row = y.f32() + j * k;
      if (argmax && t < 0) t = static_cast<int64_t>(std::max_element(row, row + k) - row);
      if (t < 0 || t >= k)
        throw InvalidArgument("target " + std::to_string(t) + " is out of range: the output has " + std::to_string(k) +
                              " values per sample");
      ex.target_values[static_cast<std::size_t>(b)] = row[t];
    }
    // Both parts' multipliers start at one-hot (rules/deeplift.hpp: the halves are [M+; M-]).
    Tensor start = Tensor::zeros(DType::Float32, y.shape());
    for (int64_t j = 0; j < c; ++j) {
      const int64_t b = (p0 + j) % n, t = ex.targets[static_cast<std::size_t>(b)];
      start.f32()[j * k + t] = 1.f;
      start.f32()[(c + j) * k + t] = 1.f;
      fref[static_cast<std::size_t>(b)] += y.f32()[(c + j) * k + t];
    }
    // Rules for this stacked batch size; RevealCancel's positive parts of the nonlinearities'
    // inputs from the linear ops that produce them.
    auto dctx = std::make_shared<rules::DeepLiftContext>();
    dctx->batch = B;
    dctx->sign_split = [this, threads](const Tensor& w) -> std::pair<Tensor, Tensor> {
      auto split = [&w, threads] { return rules::weight_sign_split(w, threads); };
      if (!w.is_frozen()) return split();  // a weight fed as a graph input changes
      std::lock_guard<std::mutex> lock(ref_mu_);
      auto it = sign_split_.find(w.raw());
      if (it == sign_split_.end()) {
        auto pq = split();
        it = sign_split_.emplace(w.raw(), std::array<Tensor, 3>{w, pq.first, pq.second}).first;
      }
      return {it->second[1], it->second[2]};
    };
    const bool reveal = method_ == "deeplift.reveal_cancel";
    if (reveal) {
      ExecContext ectx(threads, mdl.options().winograd);
      const std::vector<char> nonneg = runtime::nonneg_values(g);
      for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& nd = g.nodes[i];
        if (nd.op->kind() != OpKind::Activation || nd.inputs.empty() || nd.inputs[0] < 0) continue;
        const int p = g.values[static_cast<std::size_t>(nd.inputs[0])].producer;
        if (p < 0) continue;
        const Node& pn = g.nodes[static_cast<std::size_t>(p)];
        if (pn.op->kind() != OpKind::Linear || pn.op->weight_input() < 0) continue;
        std::vector<const Tensor*> ins;
        for (int in : pn.inputs) ins.push_back(in >= 0 ? &values[static_cast<std::size_t>(in)] : nullptr);
        rules::NodeValues nv;
        runtime::node_inputs(g, static_cast<std::size_t>(p), ins, nonneg, &nv);
        dctx->dz_pos[&nd] = rules::deeplift_positive_part(nv, *dctx, ectx);
      }
    }
    const rules::RulePtr nonlinear = rules::deeplift_nonlinear_rule(dctx), maxpool = rules::deeplift_maxpool_rule(dctx);
    const rules::RulePtr linear = rules::deeplift_linear_rule(dctx);
    const rules::RulePtr softmax = rules::refuse_rule(
        "DeepLIFT has no rule for a softmax inside the model; load it with strip_softmax=True (the default) so that "
        "explanations start from the logits");
    const rules::RulePtr product = rules::refuse_rule(
        "DeepLIFT (Rescale) has no rule for a product of two activations, so contributions would not sum to the "
        "difference of the outputs; explain a model without it, or use integrated_gradients",
        /*unless_linear=*/true);
    const rules::GradientRule grad;
    std::vector<rules::RulePtr> rule(g.nodes.size());
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
      switch (g.nodes[i].op->kind()) {
        case OpKind::Activation: rule[i] = nonlinear; break;
        case OpKind::Linear: rule[i] = linear; break;
        case OpKind::MaxPool: rule[i] = maxpool; break;
        case OpKind::Softmax: rule[i] = softmax; break;
        case OpKind::Product: rule[i] = product; break;
        default: break;
      }
    }
    std::vector<Tensor> starts(g.outputs.size());
    starts[0] = start;
    const std::vector<Tensor> mult = runtime::reverse_sweep(
        mdl, values, starts,
        [&](std::size_t i) -> const rules::Rule& { return rule[i] ? *rule[i] : static_cast<const rules::Rule&>(grad); },
        threads);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int64_t m = inputs[i].numel() / n;
      const float* pm = mult[i].f32();
      const float* pst = stacked[i].f32();
      float* pa = acc[i].f32();
      const float w = 1.f / static_cast<float>(K);
      for (int64_t j = 0; j < c; ++j) {
        const int64_t b = (p0 + j) % n;
        const float* mj = pm + j * m;
        const float* xj = pst + j * m;
        const float* rj = pst + (c + j) * m;
        float* aj = pa + b * m;
        for (int64_t e = 0; e < m; ++e) aj[e] += w * mj[e] * (xj[e] - rj[e]);
      }
    }
    if (progress) progress(p0 + c, pairs);
  }
  for (int64_t b = 0; b < n; ++b)
    ex.reference_values[static_cast<std::size_t>(b)] = static_cast<float>(fref[static_cast<std::size_t>(b)] / static_cast<double>(K));
  ex.relevance = std::move(acc);
  return ex;
}

}  // namespace onnxplain::methods
