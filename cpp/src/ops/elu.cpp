// Elu — https://onnx.ai/onnx/operators/onnx__Elu.html (opsets 6, 22).
// Formula: y = x > 0 ? x : alpha * (e^x - 1) (alpha default 1); expm1 keeps small |x| accurate.
// VJP: g for x > 0, g * alpha * e^x otherwise (torch's convention at 0).
// Kind: Activation (LRP passes relevance through).
#include <cmath>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Elu final : public UnaryOp<Elu, UnaryGrad::FromInput> {
 public:
  explicit Elu(const NodeDesc& d) : UnaryOp(d), alpha_(d.attrs->get_float("alpha", 1.f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [alpha = alpha_](float v) { return v > 0.f ? v : alpha * std::expm1(v); };
  }
  // alpha e^x for x <= 0, as torch computes it from the input.
  auto vjp_fn() const {
    return [alpha = alpha_](float v, float gv) { return v > 0.f ? gv : gv * alpha * std::exp(v); };
  }

 private:
  float alpha_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Elu, Elu)
