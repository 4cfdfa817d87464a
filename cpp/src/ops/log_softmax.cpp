// LogSoftmax — https://onnx.ai/onnx/operators/onnx__LogSoftmax.html (opsets 1, 11: the input is
// coerced to 2D [prod(dims[:axis]), prod(dims[axis:])] and normalised per row, default axis 1;
// opset 13: normalised along the single dimension `axis`, default -1).
// Formula: y_i = (x_i - m) - log(sum_j e^(x_j - m)), m the maximum of the normalised slice, so
// large inputs neither overflow nor lose the log term (values ~1e4 stay finite). A NaN or +inf
// in a slice makes the slice NaN, as in onnxruntime.
// VJP (torch's, from the output): gx = g - e^y * sum(g) over the slice.
// Kind: Softmax (like Softmax, usually stripped from the end of classifiers before explaining).
#include "ops/softmax_op.hpp"

namespace onnxplain::ops {
namespace {

class LogSoftmax final : public SoftmaxOp<true> {
 public:
  using SoftmaxOp::SoftmaxOp;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(LogSoftmax, LogSoftmax)
