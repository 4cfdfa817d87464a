// Min — https://onnx.ai/onnx/operators/onnx__Min.html (opsets 6 and 7: 1..N inputs of equal
// shape; 8: multidirectional broadcasting; 12: integer types (int64 here, for shape arithmetic);
// 13: bfloat16 only).
// Formula: y = min(x_0, ..., x_{N-1}) elementwise; NaN propagates (as onnxruntime) and ties keep
// the earlier input.
// VJP: each output's cotangent goes to the first input (lowest index) holding the minimum, or the
// first NaN; summed back over broadcast dims (torch.stack(xs).min(0)'s rule; torch.minimum halves
// the gradient at ties).
// Kind: MaxPool with selects_min() (winner-take-all: LRP and the gradient family send everything
// to the winner; DeepLIFT uses DeepSHAP's max rule mirrored, split at the cross minimum).
#include "ops/variadic_op.hpp"

namespace onnxplain::ops {
namespace {

class Min final : public VariadicOp<VariadicMode::Min> {
 public:
  using VariadicOp::VariadicOp;
  OpKind kind() const override { return OpKind::MaxPool; }
  bool selects_min() const override { return true; }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Min, Min)
