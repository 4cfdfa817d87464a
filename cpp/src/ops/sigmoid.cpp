// Sigmoid — https://onnx.ai/onnx/operators/onnx__Sigmoid.html (opsets 6, 13).
// Formula: y = 1 / (1 + e^-x), evaluated without overflow (sigmoid(-inf) = 0, sigmoid(inf) = 1).
// Kind: Activation (LRP passes relevance through; the gradient is y (1 - y)).
#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Sigmoid final : public UnaryOp<Sigmoid, UnaryGrad::FromOutput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return kernels::stable_sigmoid(v); };
  }
  // From the output, as torch: y (1 - y).
  auto vjp_fn() const {
    return [](float s, float gv) { return gv * s * (1.f - s); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Sigmoid, Sigmoid)
