// Upsample — https://onnx.ai/onnx/operators/onnx__Upsample.html (opsets 7: attribute scales, 9:
// input scales; deprecated in 10 in favour of Resize).
// Output dim k = floor(X.shape[k] * scales[k]); mode nearest (source index floor(i / scale), as
// onnxruntime: asymmetric coordinates, truncation) or linear (bilinear on NCHW: asymmetric
// coordinates, the two neighbours mixed by the fraction); see resize_op.hpp.
// Kind: Routing for nearest, AvgPool for linear (resize_op.hpp).
#include "ops/resize_op.hpp"

namespace onnxplain::ops {
namespace {

class Upsample final : public ResizeBase {
 public:
  explicit Upsample(const NodeDesc& d) : ResizeBase(d) {
    parse_mode(d, false);
    if (d.opset >= 9) {
      scales_input_ = 1;
      if (d.input_present.size() < 2 || !d.input_present[1]) fail_format("needs the inputs X and scales");
    } else {
      attr_scales_ = d.attrs->get_floats("scales", {});
      if (attr_scales_.empty()) fail_format("needs the attribute scales");
    }
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Upsample, Upsample)
