// PatternNet / PatternAttribution on a linear op (Kindermans et al. 2018): the backward signal
// goes through the op with its weight replaced by the pattern A (PatternNet) or by A ⊙ W
// (PatternAttribution), as the VJP with respect to the data input. With the two-component
// estimator the output positions where the op's own output is > 0 use a+, the others a-
// (where a following ReLU has gated the signal to zero there, only a+ runs). Every other op is
// left to the plain gradient rule: ReLUs gate, max pooling routes to the winner.
#pragma once

#include "ir/tensor.hpp"
#include "rules/rule.hpp"

namespace onnxplain::rules {

/// `a_pos`, `a_neg`: shaped like the op's weight (a_neg empty: a_pos everywhere).
RulePtr pattern_rule(const std::string& name, Tensor a_pos, Tensor a_neg);

}  // namespace onnxplain::rules
