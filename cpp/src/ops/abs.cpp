// Abs — https://onnx.ai/onnx/operators/onnx__Abs.html (opsets 6, 13; 13 only adds bfloat16).
// Formula: y = |x|; float32 (NaN stays NaN, -0 gives 0), and int64 for shape arithmetic
// (|INT64_MIN| wraps to INT64_MIN as in numpy).
// VJP: g * sgn(x) as torch: g for x > 0, -g for x < 0, 0 at x = 0 and for NaN (torch.sgn(nan) = 0).
// Kind: Activation (LRP passes relevance through; gradient family: the VJP above; DeepLIFT:
// Rescale / RevealCancel).
#include <cmath>
#include <cstdint>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Abs final : public UnaryOp<Abs, UnaryGrad::FromInput, /*kInt64=*/true> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return std::fabs(v); };
  }
  auto forward_i64_fn() const {
    return [](int64_t v) { return v < 0 ? static_cast<int64_t>(uint64_t{0} - static_cast<uint64_t>(v)) : v; };
  }
  auto vjp_fn() const {
    return [](float v, float gv) { return v > 0.f ? gv : (v < 0.f ? -gv : 0.f); };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Abs, Abs)
