// HardSwish — https://onnx.ai/onnx/operators/onnx__HardSwish.html (opsets 14, 22; 22 only adds
// bfloat16; the op does not exist before opset 14).
// Formula: y = x * max(0, min(1, x / 6 + 0.5)) (the spec's HardSigmoid with alpha = 1/6,
// beta = 0.5, times x; -inf gives NaN as in onnxruntime, since -inf * 0 is NaN).
// VJP as torch's hardswish_backward (torch >= 2.1): 0 for x <= -3, g * (x / 3 + 0.5) for
// -3 < x < 3, g from 3 on (and for NaN): at both kinks the gradient of the flat side.
// Kind: Activation (LRP passes relevance through; DeepLIFT: Rescale / RevealCancel).
#include <string>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class HardSwish final : public UnaryOp<HardSwish, UnaryGrad::FromInput> {
 public:
  explicit HardSwish(const NodeDesc& d) : UnaryOp(d) {
    if (d.opset > 0 && d.opset < 14)
      fail_format("HardSwish exists from opset 14 on; the model imports opset " + std::to_string(d.opset));
  }
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) {
      const float t = v * (1.f / 6.f) + 0.5f;
      return v * (t > 1.f ? 1.f : (t < 0.f ? 0.f : t));
    };
  }
  auto vjp_fn() const {
    return [](float v, float gv) { return v <= -3.f ? 0.f : (v < 3.f ? gv * (v / 3.f + 0.5f) : gv); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(HardSwish, HardSwish)
