// Selu — https://onnx.ai/onnx/operators/onnx__Selu.html (opsets 6, 22; 22 only adds bfloat16).
// Formula: y = gamma * (x > 0 ? x : alpha * (e^x - 1)), alpha = 1.67326319217681884765625 and
// gamma = 1.05070102214813232421875 by default (the spec's float32 values); expm1 keeps small
// |x| accurate (onnxruntime's e^x - 1 rounds to 0 for |x| < 3e-8, a difference below 1e-7);
// Selu(-0) = +0 as in onnxruntime.
// VJP as torch (elu_backward on the input): gamma * g for x > 0, gamma * alpha * e^x * g for
// x <= 0 (the negative branch holds at 0; NaN takes the positive branch's gamma * g, as torch).
// Kind: Activation (LRP passes relevance through; DeepLIFT: Rescale / RevealCancel).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Selu final : public UnaryOp<Selu, UnaryGrad::FromInput> {
 public:
  explicit Selu(const NodeDesc& d)
      : UnaryOp(d),
        alpha_(d.attrs->get_float("alpha", 1.67326319217681884765625f)),
        gamma_(d.attrs->get_float("gamma", 1.05070102214813232421875f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    // + 0 turns -0 into +0 for x = -0, as onnxruntime's max(x, 0) + min(alpha (e^x - 1), 0) does.
    return [a = alpha_, s = gamma_](float v) { return v > 0.f ? s * v : s * (a * std::expm1(v)) + 0.f; };
  }
  auto vjp_fn() const {
    return [as = alpha_ * gamma_, s = gamma_](float v, float gv) { return v <= 0.f ? gv * as * std::exp(v) : gv * s; };
  }

 private:
  float alpha_, gamma_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Selu, Selu)
