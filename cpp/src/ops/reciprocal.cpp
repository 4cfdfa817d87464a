// Reciprocal — https://onnx.ai/onnx/operators/onnx__Reciprocal.html (opsets 6, 13; 13 only adds
// bfloat16).
// Formula: y = 1 / x (IEEE: 1/+-0 = +-inf, 1/+-inf = +-0, NaN stays NaN).
// VJP: -g * y^2, from the output as torch computes it.
// Kind: Activation (LRP passes relevance through; gradient family: the exact VJP; DeepLIFT:
// Rescale / RevealCancel).
#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Reciprocal final : public UnaryOp<Reciprocal, UnaryGrad::FromOutput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return 1.f / v; };
  }
  auto vjp_fn() const {
    return [](float y, float gv) { return -gv * (y * y); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Reciprocal, Reciprocal)
