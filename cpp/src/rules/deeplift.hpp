// DeepLIFT (Shrikumar et al. 2017) as reverse rules over a forward pass of the input and its
// reference stacked in one batch: samples [0, B/2) are the inputs x, [B/2, B) their references,
// sample b's reference at b + B/2. What flows back is the multiplier m = ∂*f/∂*x for the input
// half (the reference half carries zeros), so that the contributions are m ⊙ (x − x_ref) and sum
// to f(x) − f(x_ref) (summation-to-delta).
//   - Linear ops, sums, average pooling, routing, normalisation: multipliers pass linearly, as
//     through the VJP (Δ of a linear map is the map of the Δ).
//   - Element-wise nonlinearities (Rescale): m = Δy / Δx, the gradient at x where |Δx| < 1e-10
//     (Captum's threshold; kundajelab/deeplift uses 1e-7 and the gradient at the reference).
//   - Max pooling: DeepSHAP's cross-max rule (Captum and shap alike): with c = max(y, y_ref),
//     Δy is split into c − y_ref credited through the input's argmax and y − c through the
//     reference's, so that summation-to-delta holds where the argmax moves.
#pragma once

#include <string>

#include "rules/rule.hpp"

namespace onnxplain::rules {

/// `batch`: the stacked batch size B (inputs then references); a node whose tensors do not have
/// it on axis 0 is refused (ShapeError naming the node).
RulePtr deeplift_rescale_rule(int64_t batch);
RulePtr deeplift_maxpool_rule(int64_t batch);
/// A node DeepLIFT has no rule for (Softmax kept, Mul of two activations): refuses when reached,
/// saying why and what to do.
RulePtr refuse_rule(std::string why);

}  // namespace onnxplain::rules
