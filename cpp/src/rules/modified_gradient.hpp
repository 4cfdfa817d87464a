// Gradient rules that change only how the rectifier passes the signal back (Springenberg et al.
// 2015): DeconvNet (Zeiler & Fergus 2014) rectifies the backward signal instead of gating it by the
// forward input; Guided BackProp does both. Every other node uses the plain VJP.
#pragma once

#include "rules/rule.hpp"

namespace onnxplain::rules {

/// At a rectifier: R_in = max(R_out, 0). Elsewhere the caller uses GradientRule.
RulePtr deconvnet_rule();
/// At a rectifier: R_in = VJP(max(R_out, 0)) = [x > 0] * max(R_out, 0).
RulePtr guided_backprop_rule();

}  // namespace onnxplain::rules
