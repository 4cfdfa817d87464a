// The LRP / Deep Taylor rule family (Bach et al. 2015; Montavon et al. 2017, 2019), op-agnostic:
// linear-op rules are built only from the op's forward() and vjp() called with modified inputs
// and weights/biases (OpKind::Linear gives weight_input()/bias_input()). Semantics follow Zennit
// 0.5 exactly (zennit/rules.py), including where the bias goes in the split rules and the
// stabilizer x + eps*sign(x) with sign(0) = +1, so results can be compared with it. Only the
// data input (the first present input that is neither weight nor bias) receives relevance; other
// needed inputs get zeros. The linear-only rules throw ShapeError on an op without a weight.
// Branches of the split rules whose input part is all zeros are skipped (exactly: they add zeros),
// so after a rectifier z+ costs one forward + one VJP per layer (lrp.cpp, header comment).
#pragma once

#include "ir/tensor.hpp"
#include "rules/rule.hpp"

namespace onnxplain::rules {

/// Zennit's Stabilizer: z + eps * (z >= 0 ? 1 : -1).
inline float stabilize(float z, float eps) { return z + (z >= 0.f ? eps : -eps); }

// ---- rules for linear ops (OpKind::Linear) ----------------------------------------------------
/// ε rule (ε = 0: LRP-0 / z rule): R_in = x ⊙ VJP_W(R / stab(z)), z = Wx + b, the forward
/// pass's own output. On an op without a weight it is the Norm formula with ε (as Zennit's
/// Epsilon on a parameter-free module).
RulePtr epsilon_rule(float epsilon);
/// z+ (Zennit ZPlus, = αβ with α = 1, β = 0): z = W+x+ + b+ + W-x-,
/// R_in = x+ ⊙ VJP_{W+}(R / stab(z)) + x- ⊙ VJP_{W-}(R / stab(z)).
RulePtr zplus_rule(float stabilizer);
/// αβ with α − β = 1 (Zennit AlphaBeta). The caller validates α − β = 1. Positive part as z+;
/// negative part z = W-x+ + b- + W+x- with the roles of W+ / W- swapped; R = α R_pos − β R_neg.
RulePtr alpha_beta_rule(float alpha, float beta, float stabilizer);
/// Generalized γ (Zennit Gamma; Montavon 2019, Andéol 2021): W^γ± = W + γW±, b^γ± = b + γb±.
/// Where y = Wx + b > 0: z = W^γ+ x+ + b^γ+ + W^γ- x-; where y < 0: z = W^γ- x+ + b^γ- + W^γ+ x-;
/// R_in = Σ x± ⊙ VJP(mask ⊙ R / stab(z)) over the four branches (y = 0 gets nothing).
RulePtr gamma_rule(float gamma, float stabilizer);
/// w² (Zennit WSquare): R_in = VJP_{W²}(R / stab(W² · 1 + b²)), independent of x.
RulePtr wsquare_rule(float stabilizer);
/// Flat (Zennit Flat): as w² with every weight 1 and no bias.
RulePtr flat_rule(float stabilizer);
/// z^B (Zennit ZBox): bounded input domain [low, high]: z = Wx + b − (W+L + b+) − (W-H + b-),
/// R_in = x ⊙ VJP_W(s) − (L ⊙ VJP_{W+}(s) + H ⊙ VJP_{W-}(s)), s = R / stab(z). low/high
/// broadcast to the op's input: scalars, numpy-broadcastable arrays (e.g. (1, C, 1, 1)), arrays
/// shaped like one sample or like the batch (a longer batch is cut, as Zennit), or one sample's
/// number of values in another shape (bounds of the model input before a Flatten).
RulePtr zbox_rule(const Tensor& low, const Tensor& high, float stabilizer);

// ---- rules for the other kinds -----------------------------------------------------------------
/// Activations, BatchNorm (Zennit Pass): R_in = R_out for the (single) data input.
RulePtr pass_rule();
/// Sum, AvgPool and other parameter-free proportional ops (Zennit Norm):
/// R_in_i = x_i ⊙ VJP_i(R / stab(y)) for every needed input i.
RulePtr norm_rule(float stabilizer);

}  // namespace onnxplain::rules
