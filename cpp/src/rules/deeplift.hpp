// DeepLIFT (Shrikumar et al. 2017) as reverse rules over a forward pass of the input and its
// reference stacked in one batch: samples [0, B/2) are the inputs x, [B/2, B) their references,
// sample b's reference at b + B/2. What flows back is a pair of multipliers in the two halves of
// the stacked cotangent: [M+; M-], the multipliers for the positive and the negative part of each
// value's difference from its reference. Every rule but RevealCancel's treats both parts alike
// (M+ = M-, as the total's multiplier); the contributions at the inputs are M ⊙ (x − x_ref) and
// sum to f(x) − f(x_ref) (summation-to-delta).
//   - Linear ops, sums, average pooling, routing, normalisation: multipliers pass linearly, as
//     through the VJP (Δ of a linear map is the map of the Δ).
//   - Element-wise nonlinearities, Rescale: m = Δy / Δx, the gradient at x where |Δx| < 1e-10
//     (Captum's threshold; kundajelab/deeplift uses 1e-7 and the gradient at the reference).
//   - RevealCancel (§3.5.3), at an element-wise nonlinearity y = f(z) whose z is a linear op's
//     output: Δz+ / Δz- are the sums of the terms w_ij Δx_i of that op with positive / negative
//     sign (§3.5.1, the total Δx_i of its input; bias excluded), Δy+ = ½[(f(z₀+Δz+) − f(z₀)) +
//     (f(z₀+Δz−+Δz+) − f(z₀+Δz−))], Δy− likewise, m± = Δy±/Δz± (the gradient below 1e-10); the
//     linear op then sends M+ through the terms with w_ij Δx_i > 0 and M- through those < 0; an
//     input with Δx_i = 0 is taken as positive (M+ through w_ij > 0, M- through w_ij < 0: its own
//     contribution is 0, but its multiplier reaches the layers below; kundajelab/deeplift gives
//     it ½(M+ + M-) instead, so the two differ by percents on deep ReLU nets, never in the sum).
//     Other nonlinearities (after a sum or a pooling) use Rescale.
//   - Max pooling: DeepSHAP's cross-max rule (Captum and shap alike): with c = max(y, y_ref),
//     Δy is split into c − y_ref credited through the input's argmax and y − c through the
//     reference's, so that summation-to-delta holds where the argmax moves.
#pragma once

#include <functional>
#include <map>
#include <utility>
#include <memory>
#include <string>

#include "rules/rule.hpp"

namespace onnxplain::rules {

struct DeepLiftContext {
  int64_t batch = 0;  // the stacked batch B (inputs then references)
  /// RevealCancel: per nonlinearity node, Δz+ of its input (H = B/2 samples); absent: Rescale.
  std::map<const Node*, Tensor> dz_pos;
  /// W+ and W- of a weight (cached by the caller for graph constants; computed when empty).
  std::function<std::pair<Tensor, Tensor>(const Tensor& w)> sign_split;
};
using DeepLiftContextPtr = std::shared_ptr<const DeepLiftContext>;

/// Element-wise nonlinearities: RevealCancel where the context has Δz+ for the node, else Rescale.
RulePtr deeplift_nonlinear_rule(DeepLiftContextPtr ctx);
/// Winner-take-all ops (OpKind::MaxPool: MaxPool, GlobalMaxPool, ReduceMax, variadic Max / Min):
/// DeepSHAP's max rule, Δy split at the cross maximum (cross minimum where Op::selects_min()) of
/// input and reference, through the input's and the reference's winners, to every needed input.
RulePtr deeplift_maxpool_rule(DeepLiftContextPtr ctx);
/// Linear ops: both parts alike as one VJP on the input half; under RevealCancel, where the parts
/// differ, M+ / M- by the sign of each term w_ij Δx_i.
RulePtr deeplift_linear_rule(DeepLiftContextPtr ctx);
/// Δz+ = Σ_i [w_ij Δx_i > 0] w_ij Δx_i of a linear node for the stacked input (B samples) of
/// node values `v` (v.out may be empty), H = B/2 samples.
Tensor deeplift_positive_part(const NodeValues& v, const DeepLiftContext& dctx, ExecContext& ctx);
/// W+ = max(W, 0) and W- = min(W, 0), frozen.
std::pair<Tensor, Tensor> weight_sign_split(const Tensor& w, int threads);
/// A node DeepLIFT has no rule for (Softmax kept, Mul of two activations): refuses when reached,
/// saying why and what to do; with `unless_linear`, a node with at most one non-constant float
/// input (a product by a constant) passes multipliers through its VJP instead.
RulePtr refuse_rule(std::string why, bool unless_linear = false);

}  // namespace onnxplain::rules
