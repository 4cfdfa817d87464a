// Gelu — https://onnx.ai/onnx/operators/onnx__Gelu.html (opset 20; the op does not exist in the
// ai.onnx domain before).
// Formula: approximate = "none" (default): y = 0.5 x (1 + erf(x / sqrt(2)));
//          approximate = "tanh":           y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// (-inf gives NaN, -inf * 0, as onnxruntime.)
// VJP as torch's gelu_backward: "none": g (Phi(x) + x phi(x)), phi(x) = e^(-x^2/2) / sqrt(2 pi);
// "tanh": g (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)), t the tanh above.
// Kind: Activation (LRP passes relevance through; DeepLIFT: Rescale / RevealCancel).
#include <cmath>
#include <string>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

constexpr float kSqrt1_2 = 0.70710678118654752440f;      // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

class Gelu final : public UnaryOp<Gelu, UnaryGrad::FromInput> {
 public:
  explicit Gelu(const NodeDesc& d) : UnaryOp(d) {
    if (d.opset > 0 && d.opset < 20)
      fail_format("Gelu exists in the ai.onnx domain from opset 20 on; the model imports opset " +
                  std::to_string(d.opset));
    const std::string a = d.attrs->get_string("approximate", "none");
    if (a != "none" && a != "tanh") fail_format("approximate must be \"none\" or \"tanh\", got \"" + a + "\"");
    tanh_ = a == "tanh";
  }
  OpKind kind() const override { return OpKind::Activation; }

  // The two variants as two functors of one type (the flag is loop-invariant, so the branch is
  // predicted, and the map stays one inlined loop).
  auto forward_fn() const {
    return [t = tanh_](float v) {
      if (t) return 0.5f * v * (1.f + std::tanh(kSqrt2OverPi * (v + kKappa * v * v * v)));
      return 0.5f * v * (1.f + std::erf(v * kSqrt1_2));
    };
  }
  auto vjp_fn() const {
    return [t = tanh_](float v, float gv) {
      if (t) {
        const float v2 = v * v;
        const float th = std::tanh(kSqrt2OverPi * (v + kKappa * v2 * v));
        const float left = 0.5f * (1.f + th);
        const float right = 0.5f * v * (1.f - th * th) * kSqrt2OverPi * (1.f + 3.f * kKappa * v2);
        return gv * (left + right);
      }
      const float cdf = 0.5f * (1.f + std::erf(v * kSqrt1_2));
      const float pdf = std::exp(-0.5f * v * v) * kInvSqrt2Pi;
      return gv * (cdf + v * pdf);
    };
  }

 private:
  bool tanh_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Gelu, Gelu)
