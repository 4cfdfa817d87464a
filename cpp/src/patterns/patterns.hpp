// Signal estimators (Kindermans et al. 2018, §4) from the statistics: the pattern a_j of every
// neuron, so that the signal is ŝ = a_j y_j. As iNNvestigate 1.x (tools/pattern.py) and the
// authors' nn-patterns code: cov = E[x y] - E[x] E[y] with E[y] over ALL rows also for the
// masked (relu) statistics, a = cov / (w·cov), a zero denominator replaced by 1 (so a neuron
// that never fired gets a = 0).
#pragma once

#include <string>
#include <vector>

#include "patterns/statistics.hpp"

namespace onnxplain::patterns {

enum class Estimator {
  Identity,  // S_x: ŝ = x (no pattern vector; PatternAttribution becomes the z rule)
  Filter,    // S_w: a = w / (w·w), from the weights alone
  Linear,    // S_a: a = cov(x, y) / (w·cov(x, y)) over all rows
  Relu,      // S_a+-: a+ from the active rows, a- from the others
};
/// "identity" | "filter" | "linear" | "relu"; InvalidArgument otherwise.
Estimator parse_estimator(const std::string& s);
const char* estimator_name(Estimator e);
/// Whether the estimator learns from data (linear, relu).
inline bool needs_fit(Estimator e) { return e == Estimator::Linear || e == Estimator::Relu; }

struct LayerPattern {
  std::string node;
  Tensor a_pos;  // the op's weight layout, frozen
  Tensor a_neg;  // relu only (else empty): used where the op's output is <= 0
  // The fit report.
  int64_t neurons = 0;
  double rows = 0;
  int64_t never_fired = 0;       // relu: no active row (a+ = 0)
  int64_t never_inactive = 0;    // relu: no inactive row (a- = 0)
  int64_t zero_denominator = 0;  // patterns whose w·cov was 0 (denominator 1)
};

/// One pattern per pattern node (pattern_nodes order). `stats` may be null for Filter.
std::vector<LayerPattern> compute_patterns(const runtime::Model& m, const Statistics* stats, Estimator e,
                                           int threads);

/// a ⊙ w (PatternAttribution's weight), frozen.
Tensor times_weight(const Tensor& a, const Tensor& w);

}  // namespace onnxplain::patterns
