// Named explanation methods: each is a composite (which rule for which node) plus a driver
// (one reverse sweep, or several batched ones for integrated gradients and SmoothGrad). Methods
// never name an op type: composites select nodes by kind, by whether a linear op is convolutional
// (its weight has rank > 2) or dense, by position ("first" linear op after the input), or by the
// names/op types a user gives explicitly.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "patterns/patterns.hpp"
#include "rules/rule.hpp"
#include "runtime/model.hpp"

namespace onnxplain::methods {

struct ParamInfo {
  std::string name;
  std::string default_value;  // as Python would spell it
  std::string doc;
};

struct MethodInfo {
  std::string name;
  std::string family;       // "gradient", "lrp", "deep_taylor"
  std::string description;  // one line
  std::string reference;    // the paper
  std::vector<ParamInfo> params;
};

/// Every method, in a stable order.
const std::vector<MethodInfo>& method_infos();

/// One rule choice: a rule name ("epsilon", "zplus", "alpha_beta", "gamma", "wsquare", "flat",
/// "zbox", "pass", "norm", "gradient") and its parameters.
struct RuleChoice {
  std::string rule;
  std::map<std::string, double> numbers;
  std::map<std::string, Tensor> arrays;  // zbox low/high given as arrays
};

/// Parameters of a method as the caller gave them (validated by the Explainer).
struct Params {
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;
  std::map<std::string, Tensor> arrays;
  /// For the custom composite "lrp": key -> rule. Keys: a node name, an op type, "first", or a
  /// category ("linear", "conv", "dense", "activation", "sum", "avgpool", "maxpool",
  /// "normalization", "routing", "product", "softmax").
  std::vector<std::pair<std::string, RuleChoice>> rules;
};

struct Explanation {
  std::vector<Tensor> relevance;      // one per model input, shaped like it
  std::vector<int64_t> targets;       // the output index explained, per sample
  std::vector<float> target_values;   // f_t(x) per sample
  std::vector<float> reference_values;  // f_t(reference) per sample (integrated gradients), else empty
  std::string start;                  // "one-hot" or "one-hot x output"
};

class Explainer {
 public:
  /// Throws InvalidArgument for an unknown method, unknown or invalid parameters.
  Explainer(std::shared_ptr<const runtime::Model> model, const std::string& method, const Params& params);
  /// Called by the multi-pass drivers (integrated gradients, SmoothGrad) after each batch of
  /// passes with (passes done, passes in all); may throw to stop the explanation (Ctrl-C).
  using Progress = std::function<void(int64_t, int64_t)>;
  /// `targets`: one per sample, or empty for the argmax per sample.
  Explanation explain(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets, int threads,
                      const Progress& progress = nullptr) const;
  const std::string& method() const { return method_; }
  const std::string& family() const { return family_; }
  const Params& params() const { return params_; }
  const runtime::Model& model() const { return *model_; }
  /// The rule each node gets ("" for nodes the sweep never reaches), for display.
  std::vector<std::string> node_rules() const;

  // ---- methods that learn from data (family "pattern") ----
  /// Whether fit() changes what explain() returns (pattern.* with estimator linear or relu).
  bool learns() const;
  /// Adds one batch to the statistics (one forward pass; patterns are recomputed when next needed).
  /// `gram_max_dim` > 0 also sums x xᵀ per layer with at most that many inputs per neuron (ρ).
  void partial_fit(const std::vector<Tensor>& inputs, int threads, int64_t gram_max_dim = 0);
  /// nullptr before the first fit.
  const patterns::Statistics* statistics() const { return stats_ && !stats_->layers.empty() ? stats_.get() : nullptr; }
  /// Replaces the statistics (merged from several workers); InvalidArgument if they belong to another model.
  void set_statistics(const patterns::Statistics& s);
  /// The patterns of every pattern node, computed from the statistics (or the weights) on first need.
  std::vector<patterns::LayerPattern> patterns(int threads) const;
  /// Uses these patterns as they are (a saved explainer), until the statistics change.
  void set_patterns(std::vector<patterns::LayerPattern> p);
  /// The model's fingerprint (patterns::model_fingerprint), computed once.
  uint64_t fingerprint() const;
  patterns::Estimator estimator() const { return estimator_; }

 private:
  std::shared_ptr<const runtime::Model> model_;
  std::string method_;
  std::string family_;
  Params params_;
  mutable std::vector<rules::RulePtr> node_rule_;  // per node (pattern rules are set once the patterns exist)
  patterns::Estimator estimator_ = patterns::Estimator::Relu;
  std::shared_ptr<patterns::Statistics> stats_;
  std::unique_ptr<patterns::Collector> collector_;
  mutable std::recursive_mutex mu_;
  mutable bool dirty_ = true;  // the patterns (and pattern rules) must be recomputed
  mutable std::vector<patterns::LayerPattern> patterns_;
  mutable uint64_t fingerprint_ = 0;
  // DeepLIFT with one reference for every sample: its forward values (batch 1), per input shape.
  mutable std::mutex ref_mu_;
  mutable std::vector<Shape> ref_key_;
  mutable std::vector<Tensor> ref_values_;
  // RevealCancel: W+ / W- of the graph's constant weights, keyed by storage (the original kept
  // alongside, so the address cannot be reused while the entry lives).
  mutable std::map<const void*, std::array<Tensor, 3>> sign_split_;
  /// Patterns and node rules up to date with the statistics (pattern family).
  void prepare(int threads) const;
  void set_pattern_rules() const;
  /// The multi-pass drivers' step: `batch` holds weights.size() copies of the samples (copy-major),
  /// explained for `targets` (per sample); acc[i] += weights[c] * relevance of copy c.
  void accumulate_copies(const std::vector<Tensor>& batch, const std::vector<int64_t>& targets,
                         const std::vector<float>& weights, std::vector<Tensor>& acc, int threads) const;
  /// DeepLIFT (methods/deeplift.cpp): inputs and references stacked in one forward pass, one
  /// sweep of multipliers, contributions averaged over the references.
  Explanation explain_deeplift(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets, int threads,
                               const Progress& progress) const;
  /// Occlusion (methods/occlusion.cpp): occluded copies of every sample in batched forward passes.
  Explanation explain_occlusion(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets, int threads,
                                const Progress& progress) const;
  /// Forward, targets (argmax where not given) and f_t(x); then, when `reverse`, the sweep from
  /// the one-hot (times f_t(x) when `scale_by_output`) start.
  Explanation sweep(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets, int threads,
                    bool scale_by_output, bool reverse = true) const;
};

}  // namespace onnxplain::methods
