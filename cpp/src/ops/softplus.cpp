// Softplus — https://onnx.ai/onnx/operators/onnx__Softplus.html (opsets 1, 22).
// Formula: y = log(1 + e^x), as max(x, 0) + log1p(e^-|x|) so large |x| neither overflows nor
// rounds to 0.
// Kind: Activation (LRP passes relevance through; the gradient is sigmoid(x)).
#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Softplus final : public UnaryOp<Softplus, UnaryGrad::FromInput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return kernels::stable_softplus(v); };
  }
  // d/dx log(1 + e^x) = sigmoid(x).
  auto vjp_fn() const {
    return [](float v, float gv) { return gv * kernels::stable_sigmoid(v); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Softplus, Softplus)
