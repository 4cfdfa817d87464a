// Exp — https://onnx.ai/onnx/operators/onnx__Exp.html (opsets 6, 13; 13 only adds bfloat16).
// Formula: y = e^x (exp(-inf) = 0, exp(x) = inf from x > 88.72, NaN stays NaN, as onnxruntime).
// VJP: g * y, from the output as torch computes it.
// Kind: Activation (LRP passes relevance through; gradient family: the exact VJP; DeepLIFT:
// Rescale / RevealCancel as for every elementwise nonlinearity).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Exp final : public UnaryOp<Exp, UnaryGrad::FromOutput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::exp(v); };
  }
  auto vjp_fn() const {
    return [](float y, float gv) { return gv * y; };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Exp, Exp)
