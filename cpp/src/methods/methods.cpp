#include "methods/methods.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <random>
#include <set>

#include "kernels/parallel.hpp"
#include "rules/lrp.hpp"
#include "rules/modified_gradient.hpp"
#include "rules/pattern.hpp"
#include "runtime/reverse.hpp"

namespace onnxplain::methods {
namespace {

using ops::OpKind;

// ---- the catalogue -----------------------------------------------------------------------------

const char* kBach = "Bach et al. 2015, On pixel-wise explanations by layer-wise relevance propagation";
const char* kMontavon19 = "Montavon et al. 2019, Layer-wise relevance propagation: an overview";
const char* kMontavon17 = "Montavon et al. 2017, Explaining nonlinear classification decisions with deep Taylor decomposition";
const char* kKindermans = "Kindermans et al. 2018, Learning how to explain neural networks: PatternNet and PatternAttribution";
const char* kShrikumar = "Shrikumar et al. 2017, Learning important features through propagating activation differences";
const char* kLapuschkin = "Kohlbrenner et al. 2020, Towards best practice in explaining neural network decisions with LRP";

std::vector<MethodInfo> build_infos() {
  const ParamInfo eps{"epsilon", "1e-6", "stabilizer added to the denominator with its sign"};
  const ParamInfo stab{"stabilizer", "1e-6", "stabilizer of the denominators"};
  const ParamInfo zstab{"stabilizer", "0", "added to z with its sign; 0: exact LRP-0, a unit with z = 0 passes nothing"};
  const ParamInfo gamma{"gamma", "0.25", "weight of the added positive parts"};
  const ParamInfo low{"low", "-1.0", "lowest input value (scalar or array shaped like one input)"};
  const ParamInfo high{"high", "1.0", "highest input value (scalar or array shaped like one input)"};
  return {
      {"gradient", "gradient", "gradient of the target output w.r.t. the input", "Simonyan et al. 2014, Deep inside convolutional networks", {}},
      {"input_t_gradient", "gradient", "input times gradient", "Shrikumar et al. 2016, Not just a black box", {}},
      {"integrated_gradients", "gradient", "path integral of the gradient from a baseline (Captum's approximations)",
       "Sundararajan et al. 2017, Axiomatic attribution for deep networks",
       {{"steps", "64", "number of points on the path"},
        {"baseline", "None", "None (zeros), a scalar, or an array shaped like x or one sample"},
        {"method", "'riemann_right'", "riemann_left|riemann_right|riemann_middle|riemann_trapezoid|gausslegendre"}}},
      {"smoothgrad", "gradient", "mean gradient over noisy copies of the input",
       "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
       {{"samples", "64", "noisy copies per input"},
        {"noise_level", "0.1", "noise sigma as a fraction of (max - min) of each sample"},
        {"seed", "0", "random seed (results are deterministic for a seed)"}}},
      {"deconvnet", "gradient", "DeConvNet: rectified backward signal at every ReLU",
       "Zeiler & Fergus 2014, Visualizing and understanding convolutional networks", {}},
      {"guided_backprop", "gradient", "Guided BackProp: gradient gated by forward input and backward signal at ReLUs",
       "Springenberg et al. 2015, Striving for simplicity: the all convolutional net", {}},
      {"lrp.z", "lrp", "LRP-0 (z rule) on every linear op", kBach, {zstab}},
      {"lrp.epsilon", "lrp", "LRP-epsilon on every linear op", kBach, {eps, stab}},
      {"lrp.gamma", "lrp", "LRP-gamma (generalized) on every linear op", kMontavon19, {gamma, stab}},
      {"lrp.alpha_beta", "lrp", "LRP-alpha-beta on every linear op (alpha - beta = 1)", kBach,
       {{"alpha", "1.0", "weight of positive contributions"}, {"beta", "0.0", "weight of negative contributions"}, stab}},
      {"lrp.alpha_1_beta_0", "lrp", "LRP-alpha1-beta0 on every linear op", kBach, {stab}},
      {"lrp.alpha_2_beta_1", "lrp", "LRP-alpha2-beta1 on every linear op", kBach, {stab}},
      {"lrp.z_plus", "lrp", "LRP-z+ on every linear op", kMontavon17, {stab}},
      {"lrp.w_square", "lrp", "LRP-w^2 on every linear op", kMontavon17, {stab}},
      {"lrp.flat", "lrp", "LRP-flat on every linear op", kLapuschkin, {stab}},
      {"lrp.sequential_preset_a", "lrp", "iNNvestigate preset A: epsilon(0.1) on dense, alpha1-beta0 on conv",
       kLapuschkin, {{"epsilon", "0.1", "epsilon of the dense layers"}, stab}},
      {"lrp.sequential_preset_b", "lrp", "iNNvestigate preset B: epsilon(0.1) on dense, alpha2-beta1 on conv",
       kLapuschkin, {{"epsilon", "0.1", "epsilon of the dense layers"}, stab}},
      {"lrp.sequential_preset_a_flat", "lrp", "preset A with flat on the first linear op", kLapuschkin,
       {{"epsilon", "0.1", "epsilon of the dense layers"}, stab}},
      {"lrp.sequential_preset_b_flat", "lrp", "preset B with flat on the first linear op", kLapuschkin,
       {{"epsilon", "0.1", "epsilon of the dense layers"}, stab}},
      {"lrp.epsilon_plus", "lrp", "Zennit EpsilonPlus: z+ on conv, epsilon on dense", kLapuschkin, {eps, stab}},
      {"lrp.epsilon_plus_flat", "lrp", "Zennit EpsilonPlusFlat: flat first, z+ on conv, epsilon on dense", kLapuschkin,
       {eps, stab}},
      {"lrp.epsilon_gamma_box", "lrp", "Zennit EpsilonGammaBox: z^B first, gamma on conv, epsilon on dense", kMontavon19,
       {low, high, eps, gamma, stab}},
      {"lrp.epsilon_alpha2_beta1", "lrp", "Zennit EpsilonAlpha2Beta1: alpha2-beta1 on conv, epsilon on dense",
       kLapuschkin, {eps, stab}},
      {"lrp.epsilon_alpha2_beta1_flat", "lrp", "as lrp.epsilon_alpha2_beta1 with flat on the first linear op",
       kLapuschkin, {eps, stab}},
      {"lrp", "lrp", "custom composite: rules={key: rule} keyed by node name, op type, 'first' or category",
       kMontavon19, {{"rules", "{}", "e.g. {'first': 'flat', 'conv': ('gamma', {'gamma': 0.5}), 'dense': 'epsilon'}"}}},
      {"deep_taylor", "deep_taylor", "Deep Taylor: w^2 on the first linear op (unbounded input), z+ elsewhere",
       kMontavon17, {stab}},
      {"deep_taylor.bounded", "deep_taylor", "Deep Taylor: z^B on the first linear op (bounded input), z+ elsewhere",
       kMontavon17, {low, high, stab}},
      {"deeplift.rescale", "deeplift",
       "DeepLIFT, Rescale rule: contributions m * (x - reference) summing to f(x) - f(reference)", kShrikumar,
       {{"reference", "None",
         "None (zeros), a scalar, an array shaped like one sample or like x, or K references (K, *sample) "
         "whose contributions are averaged (DeepSHAP)"}}},
      {"deeplift.reveal_cancel", "deeplift",
       "DeepLIFT, RevealCancel rule: positive and negative parts of each neuron's input kept apart", kShrikumar,
       {{"reference", "None",
         "None (zeros), a scalar, an array shaped like one sample or like x, or K references (K, *sample) "
         "whose contributions are averaged"}}},
      {"occlusion", "perturbation",
       "Occlusion: each window replaced by `fill`; a feature gets the mean drop f_t(x) - f_t(x occluded) over the "
       "windows covering it (Captum's Occlusion)",
       "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks, ECCV",
       {{"window", "8",
         "int: every axis after the channel axis of an image-like sample, spanning all channels (Captum's (C, w, w)), "
         "or the feature axis of a rank-2 input; or one entry per axis of a sample"},
        {"stride", "8", "int or one entry per axis of a sample (at most the window)"},
        {"fill", "0.0", "the value occluded features take: a number, or an array shaped like one sample (e.g. the "
                        "training mean)"}}},
      {"pattern.net", "pattern",
       "PatternNet: the signal, backpropagated with each linear op's weight replaced by its pattern A (fit first)",
       kKindermans,
       {{"estimator", "'relu'",
         "relu (S_a+-, two components) | linear (S_a) | filter (S_w, no fit needed); identity (S_x) has no pattern"}}},
      {"pattern.attribution", "pattern",
       "PatternAttribution: relevance through A * W at each linear op, DTD with root point x - s (fit first)",
       kKindermans,
       {{"estimator", "'relu'",
         "relu (S_a+-) | linear (S_a) | filter (S_w, no fit needed) | identity (S_x: the z rule, root point 0)"}}},
  };
}

// Samples per reverse sweep in the multi-pass drivers (IG path points, SmoothGrad copies). Larger
// sweeps keep every activation of every sample alive at once; beyond a few samples that costs
// more in memory traffic than batching saves (measured on ResNet-50: 32 per sweep was 2x slower
// per sample than 1).
constexpr int64_t kDriverBatch = 8;

// ---- small tensor helpers (batch axis 0) -----------------------------------------------------

int64_t per_sample(const Tensor& t) { return t.rank() == 0 || t.dim(0) == 0 ? 0 : t.numel() / t.dim(0); }

// Samples [b0, b1) of a batch (a copy).
Tensor slice_batch(const Tensor& t, int64_t b0, int64_t b1) {
  Shape s = t.shape();
  const int64_t m = per_sample(t);
  s[0] = b1 - b0;
  Tensor y(t.dtype(), s);
  std::memcpy(y.raw(), static_cast<const char*>(t.raw()) + static_cast<std::size_t>(b0 * m) * dtype_size(t.dtype()),
              y.nbytes());
  return y;
}

Tensor concat_batch(const std::vector<Tensor>& parts) {
  Shape s = parts.at(0).shape();
  int64_t n = 0;
  for (const auto& p : parts) n += p.dim(0);
  s[0] = n;
  Tensor y(DType::Float32, s);
  float* q = y.f32();
  for (const auto& p : parts) {
    std::memcpy(q, p.f32(), p.nbytes());
    q += p.numel();
  }
  return y;
}

/// `v` broadcast to x's shape: a scalar, an array shaped like x, or like one sample of x.
Tensor broadcast_like(const Tensor& v, const Tensor& x, const char* what) {
  Tensor y(DType::Float32, x.shape());
  float* q = y.f32();
  const int64_t n = x.numel();
  if (v.numel() == 1) {
    std::fill(q, q + n, v.f32()[0]);
  } else if (v.shape() == x.shape()) {
    std::memcpy(q, v.f32(), static_cast<std::size_t>(n) * sizeof(float));
  } else if (x.rank() >= 1 && Shape(x.shape().begin() + 1, x.shape().end()) == v.shape()) {
    const int64_t m = v.numel();
    for (int64_t b = 0; b < x.dim(0); ++b) std::memcpy(q + b * m, v.f32(), static_cast<std::size_t>(m) * sizeof(float));
  } else {
    throw InvalidArgument(std::string(what) + " has shape " + shape_str(v.shape()) + "; give a scalar, an array shaped like x " +
                          shape_str(x.shape()) + ", or like one sample");
  }
  return y;
}

// ---- rule selection ----------------------------------------------------------------------------

std::string category(const ops::Op& op, const Graph& g, const Node& n) {
  switch (op.kind()) {
    case OpKind::Linear: {
      const int w = op.weight_input();
      const Value& wv = g.values[static_cast<std::size_t>(n.inputs.at(static_cast<std::size_t>(w)))];
      // A convolution's weight has spatial axes; a dense layer's is a matrix.
      return wv.info.has_rank && wv.info.rank() > 2 ? "conv" : "dense";
    }
    case OpKind::Activation: return "activation";
    case OpKind::Sum: return "sum";
    case OpKind::Product: return "product";
    case OpKind::AvgPool: return "avgpool";
    case OpKind::MaxPool: return "maxpool";
    case OpKind::Routing: return "routing";
    case OpKind::Normalization: return "normalization";
    case OpKind::Softmax: return "softmax";
    case OpKind::Constant: return "constant";
    case OpKind::ShapeOf: return "shape";
  }
  return "?";
}

/// Linear ops reached from a graph input without passing through another linear op.
std::set<std::size_t> first_linear(const Graph& g) {
  std::vector<char> reach(g.values.size(), 0);
  for (int v : g.inputs) reach[static_cast<std::size_t>(v)] = 1;
  std::set<std::size_t> first;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    bool r = false;
    for (int in : n.inputs) r = r || (in >= 0 && reach[static_cast<std::size_t>(in)]);
    if (!r) continue;
    if (n.op->kind() == OpKind::Linear) {
      first.insert(i);
      continue;  // beyond it, not first
    }
    for (int o : n.outputs)
      if (o >= 0) reach[static_cast<std::size_t>(o)] = 1;
  }
  return first;
}

double num(const Params& p, const std::string& k, double dflt) {
  auto it = p.numbers.find(k);
  return it == p.numbers.end() ? dflt : it->second;
}

Tensor scalar_or_array(const Params& p, const std::string& k, float dflt) {
  auto a = p.arrays.find(k);
  if (a != p.arrays.end()) return a->second;
  return Tensor::scalar_f32(static_cast<float>(num(p, k, dflt)));
}

// LRP-0: R / z exactly, but for a unit whose z is exactly 0 (a bias-free depthwise filter over a
// dead patch), which passes nothing instead of dividing 0 by 0: the smallest normal float as the
// stabilizer leaves every other z unchanged in float32. A given stabilizer is added with z's sign.
rules::RulePtr z_rule(float stabilizer) {
  return rules::epsilon_rule(stabilizer > 0.f ? stabilizer : std::numeric_limits<float>::min());
}

rules::RulePtr make_rule(const RuleChoice& c, const std::string& where) {
  auto n = [&](const char* k, double d) { auto it = c.numbers.find(k); return static_cast<float>(it == c.numbers.end() ? d : it->second); };
  const float stab = n("stabilizer", 1e-6);
  const std::string& r = c.rule;
  if (r == "epsilon") return rules::epsilon_rule(n("epsilon", 1e-6));
  if (r == "z") return z_rule(n("stabilizer", 0.0));
  if (r == "zplus" || r == "z_plus") return rules::zplus_rule(stab);
  if (r == "alpha_beta") {
    const float a = n("alpha", 1.0), b = n("beta", 0.0);
    if (a < 0.f || b < 0.f)
      throw InvalidArgument(where + ": alpha and beta must be >= 0, got alpha=" + std::to_string(a) + ", beta=" +
                            std::to_string(b));
    if (std::fabs(a - b - 1.f) > 1e-6f)
      throw InvalidArgument(where + ": alpha - beta must be 1 (conservation), got alpha=" + std::to_string(a) +
                            ", beta=" + std::to_string(b));
    return rules::alpha_beta_rule(a, b, stab);
  }
  if (r == "alpha_1_beta_0") return rules::alpha_beta_rule(1.f, 0.f, stab);
  if (r == "alpha_2_beta_1") return rules::alpha_beta_rule(2.f, 1.f, stab);
  if (r == "gamma") return rules::gamma_rule(n("gamma", 0.25), stab);
  if (r == "wsquare" || r == "w_square") return rules::wsquare_rule(stab);
  if (r == "flat") return rules::flat_rule(stab);
  if (r == "zbox" || r == "bounded") {
    auto get = [&](const char* k, float d) {
      auto a = c.arrays.find(k);
      return a != c.arrays.end() ? a->second : Tensor::scalar_f32(n(k, d));
    };
    return rules::zbox_rule(get("low", -1.f), get("high", 1.f), stab);
  }
  if (r == "pass") return rules::pass_rule();
  if (r == "norm") return rules::norm_rule(stab);
  if (r == "gradient") return std::make_shared<rules::GradientRule>();
  throw InvalidArgument(where + ": unknown rule '" + r +
                        "' (known: z, epsilon, zplus, alpha_beta, alpha_1_beta_0, alpha_2_beta_1, gamma, wsquare, flat, "
                        "zbox, pass, norm, gradient)");
}

void check_params(const std::string& method, const Params& p, const std::vector<ParamInfo>& known) {
  auto ok = [&](const std::string& k) {
    return std::any_of(known.begin(), known.end(), [&](const ParamInfo& i) { return i.name == k; });
  };
  std::vector<std::string> given;
  for (const auto& kv : p.numbers) given.push_back(kv.first);
  for (const auto& kv : p.strings) given.push_back(kv.first);
  for (const auto& kv : p.arrays) given.push_back(kv.first);
  for (const auto& k : given)
    if (!ok(k)) {
      std::string names;
      for (const auto& i : known) names += (names.empty() ? "" : ", ") + i.name;
      throw InvalidArgument("method '" + method + "' has no parameter '" + k + "'" +
                            (names.empty() ? " (it takes none)" : " (its parameters: " + names + ")"));
    }
}

}  // namespace

const std::vector<MethodInfo>& method_infos() {
  static const std::vector<MethodInfo> infos = build_infos();
  return infos;
}

Explainer::Explainer(std::shared_ptr<const runtime::Model> model, const std::string& method, const Params& params)
    : model_(std::move(model)), method_(method), params_(params) {
  const MethodInfo* info = nullptr;
  for (const auto& m : method_infos())
    if (m.name == method) info = &m;
  if (!info) {
    std::string names;
    for (const auto& m : method_infos()) names += (names.empty() ? "" : ", ") + m.name;
    throw InvalidArgument("unknown method '" + method + "'; known methods: " + names);
  }
  family_ = info->family;
  check_params(method, params, info->params);
  const Graph& g = model_->graph();
  if (g.outputs.empty()) throw InvalidArgument("the model has no outputs");
  // Driver parameters are checked here, before any work.
  if (method == "integrated_gradients") {
    auto it = params.strings.find("method");
    static const std::set<std::string> ok = {"riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
                                             "gausslegendre"};
    if (it != params.strings.end() && !ok.count(it->second))
      throw InvalidArgument("integrated_gradients: unknown method '" + it->second +
                            "' (riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre)");
    if (num(params, "steps", 64) < 1) throw InvalidArgument("integrated_gradients: steps must be >= 1");
  }
  if (method == "occlusion") {
    for (const auto& kv : params.strings)
      throw InvalidArgument("occlusion: " + kv.first + " must be a number, not '" + kv.second + "'");
  }
  if (method == "smoothgrad") {
    if (num(params, "samples", 64) < 1) throw InvalidArgument("smoothgrad: samples must be >= 1");
    if (num(params, "noise_level", 0.1) < 0) throw InvalidArgument("smoothgrad: noise_level must be >= 0");
  }

  if (family_ == "pattern") {
    auto it = params.strings.find("estimator");
    estimator_ = patterns::parse_estimator(it == params.strings.end() ? "relu" : it->second);
    if (method == "pattern.net" && estimator_ == patterns::Estimator::Identity)
      throw InvalidArgument("pattern.net has no 'identity' estimator: S_x (signal = x) has no pattern vector to "
                            "project the signal with; use estimator='relu', 'linear' or 'filter', or "
                            "pattern.attribution with estimator='identity' (the z rule)");
    stats_ = std::make_shared<patterns::Statistics>();
  }
  const float stab = static_cast<float>(num(params, "stabilizer", 1e-6));
  const float eps = static_cast<float>(num(params, "epsilon", method.rfind("lrp.sequential_preset", 0) == 0 ? 0.1 : 1e-6));
  const float gam = static_cast<float>(num(params, "gamma", 0.25));
  auto grad = std::make_shared<rules::GradientRule>();

  // Defaults for every LRP-type composite outside linear ops (DESIGN.md, Zennit's layer map).
  std::map<std::string, rules::RulePtr> by_cat;
  rules::RulePtr first_rule;
  if (family_ == "lrp" || family_ == "deep_taylor") {
    rules::RulePtr pass = rules::pass_rule(), norm = rules::norm_rule(stab);
    by_cat = {{"activation", pass}, {"normalization", pass}, {"sum", norm},     {"avgpool", norm},
              {"product", norm},    {"maxpool", grad},       {"routing", grad}, {"softmax", grad}};
  }
  RuleChoice box{"zbox", {{"stabilizer", stab}}, {}};
  box.arrays["low"] = scalar_or_array(params, "low", -1.f);
  box.arrays["high"] = scalar_or_array(params, "high", 1.f);
  auto linear = [&](rules::RulePtr r) { by_cat["conv"] = r; by_cat["dense"] = r; };
  if (method == "gradient" || method == "input_t_gradient" || method == "integrated_gradients" || method == "smoothgrad") {
  } else if (method == "deconvnet" || method == "guided_backprop") {
    by_cat["rectifier"] = method == "deconvnet" ? rules::deconvnet_rule() : rules::guided_backprop_rule();
  } else if (method == "lrp.z") {
    linear(z_rule(static_cast<float>(num(params, "stabilizer", 0.0))));
  } else if (method == "lrp.epsilon") {
    linear(rules::epsilon_rule(eps));
  } else if (method == "lrp.gamma") {
    linear(rules::gamma_rule(gam, stab));
  } else if (method == "lrp.alpha_beta") {
    linear(make_rule({"alpha_beta", {{"alpha", num(params, "alpha", 1.0)}, {"beta", num(params, "beta", 0.0)}, {"stabilizer", stab}}, {}},
                     "lrp.alpha_beta"));
  } else if (method == "lrp.alpha_1_beta_0") {
    linear(rules::alpha_beta_rule(1.f, 0.f, stab));
  } else if (method == "lrp.alpha_2_beta_1") {
    linear(rules::alpha_beta_rule(2.f, 1.f, stab));
  } else if (method == "lrp.z_plus") {
    linear(rules::zplus_rule(stab));
  } else if (method == "lrp.w_square") {
    linear(rules::wsquare_rule(stab));
  } else if (method == "lrp.flat") {
    linear(rules::flat_rule(stab));
  } else if (method.rfind("lrp.sequential_preset_", 0) == 0) {
    const bool b = method.find("preset_b") != std::string::npos;
    by_cat["dense"] = rules::epsilon_rule(eps);
    by_cat["conv"] = b ? rules::alpha_beta_rule(2.f, 1.f, stab) : rules::alpha_beta_rule(1.f, 0.f, stab);
    if (method.size() > 5 && method.compare(method.size() - 5, 5, "_flat") == 0) first_rule = rules::flat_rule(stab);
  } else if (method == "lrp.epsilon_plus" || method == "lrp.epsilon_plus_flat") {
    by_cat["dense"] = rules::epsilon_rule(eps);
    by_cat["conv"] = rules::zplus_rule(stab);
    if (method == "lrp.epsilon_plus_flat") first_rule = rules::flat_rule(stab);
  } else if (method == "lrp.epsilon_gamma_box") {
    by_cat["dense"] = rules::epsilon_rule(eps);
    by_cat["conv"] = rules::gamma_rule(gam, stab);
    first_rule = make_rule(box, method);
  } else if (method == "lrp.epsilon_alpha2_beta1" || method == "lrp.epsilon_alpha2_beta1_flat") {
    by_cat["dense"] = rules::epsilon_rule(eps);
    by_cat["conv"] = rules::alpha_beta_rule(2.f, 1.f, stab);
    if (method == "lrp.epsilon_alpha2_beta1_flat") first_rule = rules::flat_rule(stab);
  } else if (method == "deep_taylor") {
    linear(rules::zplus_rule(stab));
    first_rule = rules::wsquare_rule(stab);
  } else if (method == "deep_taylor.bounded") {
    linear(rules::zplus_rule(stab));
    first_rule = make_rule(box, method);
  } else if (method == "lrp") {
    linear(rules::epsilon_rule(1e-6f));  // what a key that is not given falls back to
  }

  // Custom rules: node name > op type > "first" > category.
  std::map<std::string, rules::RulePtr> by_name, by_type;
  std::set<std::string> node_names, op_types;
  for (const auto& n : g.nodes) {
    node_names.insert(n.name);
    op_types.insert(n.op_type);
  }
  static const std::set<std::string> categories = {"linear", "conv", "dense", "activation", "sum", "avgpool",
                                                   "maxpool", "normalization", "routing", "product", "softmax"};
  for (const auto& kv : params.rules) {
    const std::string& key = kv.first;
    rules::RulePtr r = make_rule(kv.second, "rule for '" + key + "'");
    if (node_names.count(key)) by_name[key] = r;
    else if (op_types.count(key)) by_type[key] = r;
    else if (key == "first") first_rule = r;
    else if (key == "linear") linear(r);
    else if (categories.count(key)) by_cat[key] = r;
    else
      throw InvalidArgument("rules key '" + key + "' is neither a node name, an op type of this model, 'first', nor a "
                            "category (linear, conv, dense, activation, sum, avgpool, maxpool, normalization, routing, "
                            "product, softmax)");
  }

  const std::set<std::size_t> firsts = first_linear(g);
  node_rule_.resize(g.nodes.size());
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const std::string cat = category(*n.op, g, n);
    rules::RulePtr r;
    if (by_name.count(n.name)) r = by_name[n.name];
    else if (by_type.count(n.op_type)) r = by_type[n.op_type];
    else if (first_rule && firsts.count(i)) r = first_rule;
    else if (n.op->rectifier() && by_cat.count("rectifier")) r = by_cat["rectifier"];
    else if (by_cat.count(cat)) r = by_cat[cat];
    else r = grad;
    node_rule_[i] = r;
  }
}

// ---- pattern methods -----------------------------------------------------------------------------

bool Explainer::learns() const { return family_ == "pattern" && patterns::needs_fit(estimator_); }

uint64_t Explainer::fingerprint() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!fingerprint_) fingerprint_ = patterns::model_fingerprint(*model_);
  return fingerprint_;
}

void Explainer::partial_fit(const std::vector<Tensor>& inputs, int threads, int64_t gram_max_dim) {
  if (family_ != "pattern") return;  // nothing to learn
  if (!patterns::needs_fit(estimator_)) return;
  for (const auto& x : inputs)
    if (x.dtype() != DType::Float32) throw InvalidArgument("fitting needs float inputs");
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!collector_) collector_ = std::make_unique<patterns::Collector>(model_);
  const int64_t fb = model_->fixed_batch();
  const int64_t n = !inputs.empty() && inputs[0].rank() ? inputs[0].dim(0) : 0;
  if (fb > 0 && n > fb && n % fb == 0) {
    for (int64_t b0 = 0; b0 < n; b0 += fb) {
      std::vector<Tensor> part;
      for (const auto& x : inputs) part.push_back(slice_batch(x, b0, b0 + fb));
      collector_->add(part, threads, *stats_, gram_max_dim);
    }
  } else {
    collector_->add(inputs, threads, *stats_, gram_max_dim);
  }
  dirty_ = true;
}

void Explainer::set_statistics(const patterns::Statistics& s) {
  if (family_ != "pattern") throw InvalidArgument("method '" + method_ + "' does not learn from data");
  if (!s.layers.empty() && s.fingerprint != fingerprint())
    throw InvalidArgument("these pattern statistics were collected on another model (or other weights)");
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const std::vector<std::size_t> nodes = patterns::pattern_nodes(model_->graph());
  if (!s.layers.empty() && s.layers.size() != nodes.size())
    throw InvalidArgument("these pattern statistics have " + std::to_string(s.layers.size()) +
                          " layers, the model has " + std::to_string(nodes.size()) + " linear ops");
  *stats_ = s;
  dirty_ = true;
}

void Explainer::set_patterns(std::vector<patterns::LayerPattern> p) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const Graph& g = model_->graph();
  const std::vector<std::size_t> nodes = patterns::pattern_nodes(g);
  if (p.size() != nodes.size()) throw InvalidArgument("saved patterns do not fit this model's linear ops");
  for (std::size_t k = 0; k < p.size(); ++k) {
    const Node& n = g.nodes[nodes[k]];
    const Tensor& w = g.values[static_cast<std::size_t>(n.inputs[static_cast<std::size_t>(n.op->weight_input())])].constant;
    const bool none = estimator_ == patterns::Estimator::Identity;
    if (p[k].node != n.name || (!none && p[k].a_pos.shape() != w.shape()) ||
        (p[k].a_neg.numel() && p[k].a_neg.shape() != w.shape()))
      throw InvalidArgument("saved pattern " + std::to_string(k) + " ('" + p[k].node + "') does not fit node '" +
                            n.name + "' with weight " + shape_str(w.shape()));
    p[k].a_pos = p[k].a_pos.frozen();
    if (p[k].a_neg.numel()) p[k].a_neg = p[k].a_neg.frozen();
  }
  patterns_ = std::move(p);
  dirty_ = false;
  set_pattern_rules();
}

std::vector<patterns::LayerPattern> Explainer::patterns(int threads) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  prepare(threads);
  return patterns_;
}

void Explainer::prepare(int threads) const {
  if (family_ != "pattern") return;
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!dirty_) return;
  if (patterns::needs_fit(estimator_)) {
    bool rows = stats_ && !stats_->layers.empty();
    for (const auto& l : stats_->layers) rows = rows && l.rows > 0;
    if (!rows)
      throw InvalidArgument(method_ + " with estimator='" + patterns::estimator_name(estimator_) +
                            "' learns its patterns from data: call fit(data) (or partial_fit) with at least one "
                            "sample before explain");
  }
  patterns_ = patterns::compute_patterns(*model_, stats_.get(), estimator_, threads);
  dirty_ = false;
  set_pattern_rules();
}

void Explainer::set_pattern_rules() const {
  const Graph& g = model_->graph();
  const std::vector<std::size_t> nodes = patterns::pattern_nodes(g);
  auto grad = std::make_shared<rules::GradientRule>();
  node_rule_.assign(g.nodes.size(), grad);
  const bool attribution = method_ == "pattern.attribution";
  for (std::size_t k = 0; k < nodes.size() && k < patterns_.size(); ++k) {
    const Node& n = g.nodes[nodes[k]];
    if (estimator_ == patterns::Estimator::Identity) {
      // S_x: the root point x - ŝ is 0, and PatternAttribution is the z rule (a tiny ε keeps 0/0 away).
      node_rule_[nodes[k]] = rules::epsilon_rule(1e-9f);
      continue;
    }
    const patterns::LayerPattern& p = patterns_[k];
    if (!attribution) {
      node_rule_[nodes[k]] = rules::pattern_rule("pattern", p.a_pos, p.a_neg);
      continue;
    }
    const Tensor& w = g.values[static_cast<std::size_t>(n.inputs[static_cast<std::size_t>(n.op->weight_input())])].constant;
    node_rule_[nodes[k]] = rules::pattern_rule("pattern_attribution", patterns::times_weight(p.a_pos, w),
                                               p.a_neg.numel() ? patterns::times_weight(p.a_neg, w) : Tensor());
  }
}

std::vector<std::string> Explainer::node_rules() const {
  std::vector<std::string> s;
  for (const auto& r : node_rule_) s.push_back(r ? r->name() : "");
  return s;
}

Explanation Explainer::sweep(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets_in, int threads,
                             bool scale_by_output, bool reverse) const {
  const runtime::Model& m = *model_;
  const Graph& g = m.graph();
  std::vector<Tensor> values;
  // Rules that compute their node's forward themselves (rules::Rule::forward) get to, and what
  // they keep goes to their backward.
  std::vector<std::vector<Tensor>> kept;
  runtime::Model::ForwardHook hook;
  bool any_forward = false;
  for (const auto& r : node_rule_) any_forward = any_forward || (r && r->has_forward());
  const std::vector<char> nonneg = any_forward && reverse ? runtime::nonneg_values(g) : std::vector<char>();
  if (any_forward && reverse) {
    kept.resize(g.nodes.size());
    hook = [&](std::size_t i, const std::vector<const Tensor*>& ins, std::vector<Tensor>& outs,
               ExecContext& ctx) {
      const rules::RulePtr& r = node_rule_[i];
      if (!r || !r->has_forward()) return false;
      rules::NodeValues nv;
      runtime::node_inputs(g, i, ins, nonneg, &nv);
      return r->forward(nv, outs, kept[i], ctx);
    };
  }
  // Only what the sweep will read outlives the forward pass (Rule::reads); it starts on output 0.
  const runtime::RuleOf rule_of = [this](std::size_t i) -> const rules::Rule& { return *node_rule_[i]; };
  std::vector<char> started(g.outputs.size(), 0);
  if (!started.empty()) started[0] = 1;
  const runtime::Model::KeepFilter filter =
      reverse ? runtime::reverse_keep_filter(m, rule_of, &kept, started) : runtime::Model::KeepFilter();
  const runtime::Model::KeepQuery read =
      reverse ? runtime::reverse_read_query(m, rule_of, &kept, started) : runtime::Model::KeepQuery();
  std::vector<Tensor> outs = m.run(inputs, threads, reverse ? &values : nullptr, hook, filter, read);
  const Tensor& y = outs.at(0);
  if (y.dtype() != DType::Float32 || y.rank() < 1)
    throw InvalidArgument("the first output has shape " + shape_str(y.shape()) + "; explanations need a batch axis");
  const int64_t n = y.dim(0);
  const int64_t k = per_sample(y) > 0 ? y.numel() / std::max<int64_t>(n, 1) : (y.rank() == 1 ? 1 : 0);
  Explanation ex;
  ex.start = scale_by_output ? "one-hot x output" : "one-hot";
  ex.targets = targets_in;
  const float* py = y.f32();
  if (ex.targets.empty()) {
    for (int64_t b = 0; b < n; ++b) {
      const float* row = py + b * k;
      ex.targets.push_back(static_cast<int64_t>(std::max_element(row, row + k) - row));
    }
  }
  if (static_cast<int64_t>(ex.targets.size()) != n)
    throw InvalidArgument(std::to_string(ex.targets.size()) + " targets for a batch of " + std::to_string(n));
  Tensor start = Tensor::zeros(DType::Float32, y.shape());
  for (int64_t b = 0; b < n; ++b) {
    const int64_t t = ex.targets[static_cast<std::size_t>(b)];
    if (t < 0 || t >= k)
      throw InvalidArgument("target " + std::to_string(t) + " is out of range: the output has " + std::to_string(k) +
                            " values per sample");
    const float v = py[b * k + t];
    ex.target_values.push_back(v);
    start.f32()[b * k + t] = scale_by_output ? v : 1.f;
  }
  if (!reverse) return ex;
  std::vector<Tensor> starts(g.outputs.size());
  starts[0] = start;
  ex.relevance = runtime::reverse_sweep(m, values, starts, rule_of, threads, kept.empty() ? nullptr : &kept);
  return ex;
}

void Explainer::accumulate_copies(const std::vector<Tensor>& batch, const std::vector<int64_t>& targets,
                                  const std::vector<float>& weights, std::vector<Tensor>& acc, int threads) const {
  std::vector<int64_t> tg;
  for (std::size_t c = 0; c < weights.size(); ++c) tg.insert(tg.end(), targets.begin(), targets.end());
  const Explanation part = sweep(batch, tg, threads, false);
  for (std::size_t i = 0; i < acc.size(); ++i) {
    const int64_t m = acc[i].numel();
    float* pa = acc[i].f32();
    const float* pg = part.relevance[i].f32();
    for (std::size_t c = 0; c < weights.size(); ++c) {
      const float w = weights[c];
      const float* g = pg + static_cast<int64_t>(c) * m;
      for (int64_t e = 0; e < m; ++e) pa[e] += w * g[e];
    }
  }
}

Explanation Explainer::explain(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets, int threads,
                               const Progress& progress) const {
  for (const auto& x : inputs)
    if (x.dtype() != DType::Float32) throw InvalidArgument("explanations need float inputs");
  {
    // A model exported with a fixed batch (the Model Zoo's fix it at 1) explains k * B samples
    // in k calls of B; every driver below then keeps its batches at B.
    const int64_t fb = model_->fixed_batch();
    const int64_t n = !inputs.empty() && inputs[0].rank() ? inputs[0].dim(0) : 0;
    if (fb > 0 && n > fb && n % fb == 0) {
      Explanation all;
      const int64_t chunks = n / fb;
      for (int64_t c = 0; c < chunks; ++c) {
        std::vector<Tensor> part;
        for (const auto& x : inputs) part.push_back(slice_batch(x, c * fb, (c + 1) * fb));
        std::vector<int64_t> tg = targets;
        if (static_cast<int64_t>(targets.size()) == n)
          tg.assign(targets.begin() + c * fb, targets.begin() + (c + 1) * fb);
        Explanation e = explain(part, tg, threads, nullptr);
        if (c == 0) {
          all = std::move(e);
          for (auto& r : all.relevance) r = concat_batch({r});  // own the data: later parts append
        } else {
          for (std::size_t i = 0; i < all.relevance.size(); ++i)
            all.relevance[i] = concat_batch({all.relevance[i], e.relevance[i]});
          all.targets.insert(all.targets.end(), e.targets.begin(), e.targets.end());
          all.target_values.insert(all.target_values.end(), e.target_values.begin(), e.target_values.end());
          all.reference_values.insert(all.reference_values.end(), e.reference_values.begin(),
                                      e.reference_values.end());
        }
        if (progress) progress(c + 1, chunks);
      }
      return all;
    }
  }
  const bool relevance = family_ == "lrp" || family_ == "deep_taylor";
  if (method_ == "integrated_gradients") {
    const int64_t steps = static_cast<int64_t>(num(params_, "steps", 64));
    if (steps < 1) throw InvalidArgument("integrated_gradients: steps must be >= 1, got " + std::to_string(steps));
    auto it = params_.strings.find("method");
    const std::string how = it == params_.strings.end() ? "riemann_right" : it->second;
    std::vector<double> alphas(static_cast<std::size_t>(steps)), weights(static_cast<std::size_t>(steps));
    const double ns = static_cast<double>(steps);
    for (int64_t s = 0; s < steps; ++s) {
      const auto u = static_cast<std::size_t>(s);
      const double ds = static_cast<double>(s);
      weights[u] = 1.0 / ns;
      if (how == "riemann_left") alphas[u] = ds / ns;
      else if (how == "riemann_right") alphas[u] = (ds + 1) / ns;
      else if (how == "riemann_middle") alphas[u] = (ds + 0.5) / ns;
      else if (how == "riemann_trapezoid") {
        if (steps < 2) throw InvalidArgument("integrated_gradients: riemann_trapezoid needs steps >= 2");
        // Captum's trapezoid: alphas linspace(0, 1, n), step 1/n halved at both ends.
        alphas[u] = ds / (ns - 1);
        weights[u] = (s == 0 || s == steps - 1) ? 0.5 / ns : 1.0 / ns;
      } else if (how != "gausslegendre") {
        throw InvalidArgument("integrated_gradients: unknown method '" + how +
                              "' (riemann_left, riemann_right, riemann_middle, riemann_trapezoid, gausslegendre)");
      }
    }
    if (how == "gausslegendre") {
      // Gauss-Legendre nodes and weights on [-1, 1] (Newton on P_n), mapped to [0, 1] as Captum does.
      for (int64_t i = 0; i < steps; ++i) {
        double z = std::cos(M_PI * (static_cast<double>(i) + 0.75) / (ns + 0.5)), pp = 1;
        for (int iter = 0; iter < 100; ++iter) {
          double p1 = 1, p2 = 0;
          for (int64_t j = 1; j <= steps; ++j) {
            const double p3 = p2, dj = static_cast<double>(j);
            p2 = p1;
            p1 = ((2 * dj - 1) * z * p2 - (dj - 1) * p3) / dj;
          }
          pp = ns * (z * p1 - p2) / (z * z - 1);
          const double dz = p1 / pp;
          z -= dz;
          if (std::fabs(dz) < 1e-15) break;
        }
        const auto u = static_cast<std::size_t>(steps - 1 - i);  // ascending alphas
        alphas[u] = (z + 1) / 2;
        weights[u] = 1.0 / ((1 - z * z) * pp * pp);  // (2 / ((1 - z^2) P_n'(z)^2)) / 2
      }
    }
    // Baselines.
    std::vector<Tensor> base;
    auto bl = params_.arrays.find("baseline");
    for (const auto& x : inputs)
      base.push_back(bl == params_.arrays.end() ? Tensor::zeros(DType::Float32, x.shape())
                                                : broadcast_like(bl->second, x, "baseline"));
    const int64_t n = inputs.at(0).rank() ? inputs[0].dim(0) : 1;
    // Targets and f(x), f(baseline) from plain forwards.
    Explanation ex;
    ex.start = "one-hot";
    {
      Explanation fx = sweep(inputs, targets, threads, false, /*reverse=*/false);
      ex.targets = fx.targets;
      ex.target_values = fx.target_values;
      const Tensor yb = model_->run(base, threads).at(0);
      const int64_t k = yb.numel() / std::max<int64_t>(n, 1);
      for (int64_t b = 0; b < n; ++b) ex.reference_values.push_back(yb.f32()[b * k + ex.targets[static_cast<std::size_t>(b)]]);
    }
    // Path points in chunks of steps, all samples of a chunk in one batch.
    const int64_t chunk = model_->fixed_batch() > 0
                              ? 1  // the model takes its fixed batch only
                              : std::max<int64_t>(1, std::min<int64_t>(steps, kDriverBatch / std::max<int64_t>(n, 1)));
    std::vector<Tensor> acc;
    for (const auto& x : inputs) acc.push_back(Tensor::zeros(DType::Float32, x.shape()));
    for (int64_t s0 = 0; s0 < steps; s0 += chunk) {
      const int64_t s1 = std::min(steps, s0 + chunk);
      std::vector<Tensor> batch;
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        std::vector<Tensor> parts;
        for (int64_t s = s0; s < s1; ++s) {
          Tensor p(DType::Float32, inputs[i].shape());
          const float a = static_cast<float>(alphas[static_cast<std::size_t>(s)]);
          const float* px = inputs[i].f32();
          const float* pb = base[i].f32();
          float* q = p.f32();
          for (int64_t e = 0; e < p.numel(); ++e) q[e] = pb[e] + a * (px[e] - pb[e]);
          parts.push_back(p);
        }
        batch.push_back(concat_batch(parts));
      }
      std::vector<float> w;
      for (int64_t s = s0; s < s1; ++s) w.push_back(static_cast<float>(weights[static_cast<std::size_t>(s)]));
      accumulate_copies(batch, ex.targets, w, acc, threads);
      if (progress) progress(s1, steps);
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      float* pa = acc[i].f32();
      const float* px = inputs[i].f32();
      const float* pb = base[i].f32();
      for (int64_t e = 0; e < acc[i].numel(); ++e) pa[e] *= px[e] - pb[e];
    }
    ex.relevance = std::move(acc);
    return ex;
  }
  if (method_ == "smoothgrad") {
    const int64_t samples = static_cast<int64_t>(num(params_, "samples", 64));
    const double level = num(params_, "noise_level", 0.1);
    const auto seed = static_cast<uint64_t>(num(params_, "seed", 0));
    if (samples < 1) throw InvalidArgument("smoothgrad: samples must be >= 1");
    if (level < 0) throw InvalidArgument("smoothgrad: noise_level must be >= 0");
    Explanation ex = sweep(inputs, targets, threads, false, /*reverse=*/false);  // targets from the clean input
    std::vector<Tensor> acc;
    for (const auto& x : inputs) acc.push_back(Tensor::zeros(DType::Float32, x.shape()));
    const int64_t n = inputs.at(0).rank() ? inputs[0].dim(0) : 1;
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    const int64_t chunk = model_->fixed_batch() > 0
                              ? 1
                              : std::max<int64_t>(1, std::min<int64_t>(samples, kDriverBatch / std::max<int64_t>(n, 1)));
    for (int64_t s0 = 0; s0 < samples; s0 += chunk) {
      const int64_t s1 = std::min(samples, s0 + chunk);
      std::vector<Tensor> batch;
      for (const auto& x : inputs) {
        const int64_t m = per_sample(x);
        std::vector<Tensor> parts;
        for (int64_t s = s0; s < s1; ++s) {
          Tensor p(DType::Float32, x.shape());
          for (int64_t b = 0; b < n; ++b) {
            const float* px = x.f32() + b * m;
            const auto mm = std::minmax_element(px, px + m);
            const float sigma = m ? static_cast<float>(level) * (*mm.second - *mm.first) : 0.f;
            float* q = p.f32() + b * m;
            for (int64_t e = 0; e < m; ++e) q[e] = px[e] + sigma * normal(rng);
          }
          parts.push_back(p);
        }
        batch.push_back(concat_batch(parts));
      }
      accumulate_copies(batch, ex.targets,
                        std::vector<float>(static_cast<std::size_t>(s1 - s0), 1.f / static_cast<float>(samples)), acc,
                        threads);
      if (progress) progress(s1, samples);
    }
    ex.relevance = std::move(acc);
    return ex;
  }
  if (family_ == "deeplift") return explain_deeplift(inputs, targets, threads, progress);
  if (method_ == "occlusion") return explain_occlusion(inputs, targets, threads, progress);
  if (family_ == "pattern") prepare(threads);
  Explanation ex = sweep(inputs, targets, threads, relevance || family_ == "pattern");
  if (method_ == "input_t_gradient")
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      float* r = ex.relevance[i].f32();
      const float* x = inputs[i].f32();
      for (int64_t e = 0; e < inputs[i].numel(); ++e) r[e] *= x[e];
    }
  return ex;
}

}  // namespace onnxplain::methods
