// LeakyRelu — https://onnx.ai/onnx/operators/onnx__LeakyRelu.html (opsets 6, 16).
// Formula: y = x >= 0 ? x : alpha * x (alpha default 0.01). NaN stays NaN.
// VJP: g for x > 0, alpha * g otherwise (torch: alpha at x == 0).
// Kind: Activation (LRP passes relevance through; the gradient is 1 or alpha).
#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class LeakyRelu final : public UnaryOp<LeakyRelu, UnaryGrad::FromInput> {
 public:
  explicit LeakyRelu(const NodeDesc& d) : UnaryOp(d), alpha_(d.attrs->get_float("alpha", 0.01f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [alpha = alpha_](float v) { return v >= 0.f ? v : alpha * v; };
  }
  // torch's convention: slope alpha at x == 0.
  auto vjp_fn() const {
    return [alpha = alpha_](float v, float gv) { return v > 0.f ? gv : alpha * gv; };
  }

 private:
  float alpha_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(LeakyRelu, LeakyRelu)
