// Sum — https://onnx.ai/onnx/operators/onnx__Sum.html (opsets 6 and 7: 1..N inputs of equal
// shape; 8: multidirectional broadcasting; 13: bfloat16 only).
// Formula: y = x_0 + x_1 + ... + x_{N-1} (left to right, float32).
// VJP: the cotangent to every input, summed back over the dims it was broadcast along.
// Kind: Sum (as Add: LRP splits relevance in proportion to the terms, R_i = x_i R / stab(y), for
// every one of the N inputs (the ε-stabilised Norm rule); gradient family and DeepLIFT pass the
// multipliers through unchanged, exact for a linear op). Caffe2 exports of ResNet use it for the
// residual sum.
#include "ops/variadic_op.hpp"

namespace onnxplain::ops {
namespace {

class Sum final : public VariadicOp<VariadicMode::Sum> {
 public:
  using VariadicOp::VariadicOp;
  OpKind kind() const override { return OpKind::Sum; }
  float sum_sign(std::size_t) const override { return 1.f; }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Sum, Sum)
