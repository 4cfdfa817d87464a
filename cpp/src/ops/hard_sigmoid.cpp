// HardSigmoid — https://onnx.ai/onnx/operators/onnx__HardSigmoid.html (opsets 6, 22; 22 only adds
// bfloat16).
// Formula: y = max(0, min(1, alpha * x + beta)), alpha = 0.2 and beta = 0.5 by default; NaN stays
// NaN (as onnxruntime).
// VJP as torch's F.hardsigmoid: alpha * g where 0 < alpha * x + beta < 1, strictly: 0 at both kinks
// and for NaN.
// Kind: Activation (LRP passes relevance through; DeepLIFT: Rescale / RevealCancel).
#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class HardSigmoid final : public UnaryOp<HardSigmoid, UnaryGrad::FromInput> {
 public:
  explicit HardSigmoid(const NodeDesc& d)
      : UnaryOp(d), alpha_(d.attrs->get_float("alpha", 0.2f)), beta_(d.attrs->get_float("beta", 0.5f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [a = alpha_, b = beta_](float v) {
      const float t = a * v + b;
      return t > 1.f ? 1.f : (t < 0.f ? 0.f : t);  // NaN fails both tests and stays NaN
    };
  }
  auto vjp_fn() const {
    return [a = alpha_, b = beta_](float v, float gv) {
      const float t = a * v + b;
      return t > 0.f && t < 1.f ? a * gv : 0.f;
    };
  }

 private:
  float alpha_, beta_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(HardSigmoid, HardSigmoid)
