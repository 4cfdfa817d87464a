// Max — https://onnx.ai/onnx/operators/onnx__Max.html (opsets 6 and 7: 1..N inputs of equal
// shape; 8: multidirectional broadcasting; 12: integer types (int64 here, for shape arithmetic);
// 13: bfloat16 only).
// Formula: y = max(x_0, ..., x_{N-1}) elementwise; NaN propagates (as onnxruntime) and ties keep
// the earlier input (max(0, -0) = 0, max(-0, 0) = -0).
// VJP: each output's cotangent goes to its winner only: the first input (lowest index) that holds
// the maximum, or the first NaN; summed back over broadcast dims. This is torch's rule for
// torch.stack(xs).max(0) (first index); torch.maximum instead halves the gradient at ties.
// Kind: MaxPool (winner-take-all: LRP and the gradient family send everything to the winner;
// DeepLIFT uses DeepSHAP's max rule over all N inputs, so contributions sum to the difference).
#include "ops/variadic_op.hpp"

namespace onnxplain::ops {
namespace {

class Max final : public VariadicOp<VariadicMode::Max> {
 public:
  using VariadicOp::VariadicOp;
  OpKind kind() const override { return OpKind::MaxPool; }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Max, Max)
