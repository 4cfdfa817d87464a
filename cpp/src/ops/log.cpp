// Log — https://onnx.ai/onnx/operators/onnx__Log.html (opsets 6, 13; 13 only adds bfloat16).
// Formula: y = ln x (IEEE, as onnxruntime: ln 0 = ln -0 = -inf, x < 0 gives NaN, ln inf = inf).
// VJP: g / x (torch's formula: g / 0 = +-inf at x = +-0, NaN for NaN).
// Kind: Activation (LRP passes relevance through; gradient family: the exact VJP; DeepLIFT:
// Rescale / RevealCancel).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Log final : public UnaryOp<Log, UnaryGrad::FromInput> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::log(v); };
  }
  auto vjp_fn() const {
    return [](float v, float gv) { return gv / v; };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Log, Log)
