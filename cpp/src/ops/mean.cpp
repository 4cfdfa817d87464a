// Mean — https://onnx.ai/onnx/operators/onnx__Mean.html (opsets 6 and 7: 1..N inputs of equal
// shape; 8: multidirectional broadcasting; 13: bfloat16 only).
// Formula: y = (x_0 + x_1 + ... + x_{N-1}) / N (summed left to right, then divided, float32).
// VJP: the cotangent / N to every input, summed back over the dims it was broadcast along.
// Kind: AvgPool (an average without weights, like ReduceMean: LRP's proportional Norm rule,
// R_i = x_i R / (N stab(y)), which conserves relevance over the N inputs; gradient family and
// DeepLIFT pass the multipliers / N, exact for a linear op).
#include "ops/variadic_op.hpp"

namespace onnxplain::ops {
namespace {

class Mean final : public VariadicOp<VariadicMode::Mean> {
 public:
  using VariadicOp::VariadicOp;
  OpKind kind() const override { return OpKind::AvgPool; }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Mean, Mean)
