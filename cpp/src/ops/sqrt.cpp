// Sqrt — https://onnx.ai/onnx/operators/onnx__Sqrt.html (opsets 6, 13; 13 only adds bfloat16).
// Formula: y = sqrt(x) (IEEE, as onnxruntime: x < 0 gives NaN, sqrt(-0) = -0, sqrt(inf) = inf).
// VJP: g / (2 y), from the output as torch (inf at x = 0).
// Kind: Activation (LRP passes relevance through; gradient family: the exact VJP; DeepLIFT:
// Rescale / RevealCancel).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Sqrt final : public UnaryOp<Sqrt, UnaryGrad::FromOutput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::sqrt(v); };
  }
  auto vjp_fn() const {
    return [](float y, float gv) { return gv / (2.f * y); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Sqrt, Sqrt)
