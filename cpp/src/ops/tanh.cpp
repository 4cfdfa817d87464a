// Tanh — https://onnx.ai/onnx/operators/onnx__Tanh.html (opsets 6, 13).
// Formula: y = tanh(x).
// Kind: Activation (LRP passes relevance through; the gradient is 1 - y^2).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Tanh final : public UnaryOp<Tanh, UnaryGrad::FromOutput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::tanh(v); };
  }
  // From the output, as torch: 1 - y^2.
  auto vjp_fn() const {
    return [](float t, float gv) { return gv * (1.f - t * t); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Tanh, Tanh)
