// Resize — https://onnx.ai/onnx/operators/onnx__Resize.html (opsets 10, 11, 13, 18, 19).
// 10: inputs X, scales; asymmetric coordinates, onnxruntime's simple nearest rounding.
// 11: inputs X, roi, scales, sizes (one of scales / sizes), coordinate_transformation_mode,
//     nearest_mode; 13: roi and scales optional; 18: axes, keep_aspect_ratio_policy (stretch,
//     not_larger, not_smaller), antialias; 19: coordinate_transformation_mode half_pixel_symmetric.
// y[i] = x at the nearest source position, or the linear interpolation of its two neighbours per
// resized axis (see resize_op.hpp for the formulas). Refused at load, naming the node: mode cubic,
// tf_crop_and_resize (roi), antialias = 1.
// Kind: Routing for nearest, AvgPool for linear (resize_op.hpp).
#include "ops/resize_op.hpp"

namespace onnxplain::ops {
namespace {

class Resize final : public ResizeBase {
 public:
  explicit Resize(const NodeDesc& d) : ResizeBase(d) {
    parse_mode(d, d.opset >= 11);
    if (d.opset < 11) {
      scales_input_ = 1;
      if (d.input_present.size() < 2 || !d.input_present[1]) fail_format("needs the inputs X and scales");
      return;
    }
    scales_input_ = 2;
    sizes_input_ = 3;
    if (d.opset >= 18) {
      if (d.attrs->get_int("antialias", 0) != 0) fail_format("antialias = 1 is not supported");
      axes_ = d.attrs->get_ints("axes", {});
      const std::string p = d.attrs->get_string("keep_aspect_ratio_policy", "stretch");
      if (p == "stretch") policy_ = Policy::Stretch;
      else if (p == "not_larger") policy_ = Policy::NotLarger;
      else if (p == "not_smaller") policy_ = Policy::NotSmaller;
      else fail_format("keep_aspect_ratio_policy '" + p + "' is not supported");
    }
  }
  // roi matters only for tf_crop_and_resize (refused); scales and sizes are read for their values.
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Resize, Resize)
