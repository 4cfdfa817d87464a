// The LRP / Deep Taylor rule family (Bach et al. 2015; Montavon et al. 2017, 2019), op-agnostic:
// linear-op rules are built only from the op's forward() and vjp() called with modified inputs
// and weights/biases (OpKind::Linear gives weight_input()/bias_input()). Semantics follow Zennit
// 0.5 exactly (zennit/rules.py), including where the bias goes in the split rules and the
// stabilizer x + eps*sign(x) with sign(0) = +1, so results can be compared with it.
#pragma once

#include "ir/tensor.hpp"
#include "rules/rule.hpp"

namespace onnxplain::rules {

/// Zennit's Stabilizer: z + eps * (z >= 0 ? 1 : -1).
inline float stabilize(float z, float eps) { return z + (z >= 0.f ? eps : -eps); }

// ---- rules for linear ops (OpKind::Linear) ----------------------------------------------------
/// ε rule (ε = 0: LRP-0 / z rule): R_in = x ⊙ VJP_W(R / stab(z)), z = Wx + b.
RulePtr epsilon_rule(float epsilon);
/// z+ (Zennit ZPlus): positive and negative inputs with W+ / W- (bias+ in the first branch).
RulePtr zplus_rule(float stabilizer);
/// αβ with α − β = 1 (Zennit AlphaBeta). The caller validates α − β = 1.
RulePtr alpha_beta_rule(float alpha, float beta, float stabilizer);
/// Generalized γ (Zennit Gamma; Montavon 2019, Andéol 2021).
RulePtr gamma_rule(float gamma, float stabilizer);
/// w² (Zennit WSquare): R_in = VJP_{W²}(R / stab(W² · 1 + b²)), independent of x.
RulePtr wsquare_rule(float stabilizer);
/// Flat (Zennit Flat): as w² with every weight 1 and no bias.
RulePtr flat_rule(float stabilizer);
/// z^B (Zennit ZBox): bounded input domain [low, high]; low/high broadcast to the op's input
/// (scalars as shape-{} tensors, or arrays shaped like one sample or like the batch).
RulePtr zbox_rule(const Tensor& low, const Tensor& high, float stabilizer);

// ---- rules for the other kinds -----------------------------------------------------------------
/// Activations, BatchNorm (Zennit Pass): R_in = R_out for the (single) data input.
RulePtr pass_rule();
/// Sum, AvgPool and other parameter-free proportional ops (Zennit Norm):
/// R_in_i = x_i ⊙ VJP_i(R / stab(y)) for every needed input i.
RulePtr norm_rule(float stabilizer);

}  // namespace onnxplain::rules
