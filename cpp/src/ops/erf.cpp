// Erf — https://onnx.ai/onnx/operators/onnx__Erf.html (opsets 9, 13; 13 only adds bfloat16; no Erf before 9).
// Formula: y = erf(x) = 2/sqrt(pi) * integral_0^x e^(-t^2) dt (erf(+-inf) = +-1, NaN stays NaN).
// VJP: g * 2/sqrt(pi) * e^(-x^2), as torch.
// Kind: Activation (LRP passes relevance through; gradient family: the exact VJP; DeepLIFT:
// Rescale / RevealCancel).
#include <cmath>
#include <string>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Erf final : public UnaryOp<Erf, UnaryGrad::FromInput> {
 public:
  explicit Erf(const NodeDesc& d) : UnaryOp(d) {
    if (d.opset > 0 && d.opset < 9)
      fail_format("Erf exists from opset 9 on; the model imports opset " + std::to_string(d.opset));
  }
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::erf(v); };
  }
  auto vjp_fn() const {
    return [](float v, float gv) {
      constexpr float k2_sqrt_pi = 1.12837916709551257390f;  // 2 / sqrt(pi)
      return gv * k2_sqrt_pi * std::exp(-v * v);
    };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Erf, Erf)
