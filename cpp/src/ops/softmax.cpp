// Softmax — https://onnx.ai/onnx/operators/onnx__Softmax.html (opsets 1, 11: the input is
// coerced to 2D [prod(dims[:axis]), prod(dims[axis:])] and normalised per row, default axis 1;
// opset 13: normalised along the single dimension `axis`, default -1).
// Formula: y_i = e^(x_i - m) / sum_j e^(x_j - m), m the maximum of the normalised slice, so large
// inputs do not overflow. A NaN or +inf in a slice makes the slice NaN, as in onnxruntime.
// VJP (torch's, from the output): gx = y * (g - sum(g * y)) over the slice.
// Kind: Softmax (usually stripped from the end of classifiers before explaining the logits).
#include "ops/softmax_op.hpp"

namespace onnxplain::ops {
namespace {

class Softmax final : public SoftmaxOp<false> {
 public:
  using SoftmaxOp::SoftmaxOp;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Softmax, Softmax)
