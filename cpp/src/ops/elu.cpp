// Elu — https://onnx.ai/onnx/operators/onnx__Elu.html (opsets 6, 22).
// Formula: y = x > 0 ? x : alpha * (e^x - 1) (alpha default 1); expm1 keeps small |x| accurate.
// Kind: Activation (LRP passes relevance through).
#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Elu final : public Op {
 public:
  explicit Elu(const NodeDesc& d) : Op(d), alpha_(d.attrs->get_float("alpha", 1.f)) {}
  OpKind kind() const override { return OpKind::Activation; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    if (o.dtype != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(o.dtype));
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float alpha = alpha_;
    kernels::unary_map(x, out[0], ctx.threads(), [alpha](float v) { return v > 0.f ? v : alpha * std::expm1(v); });
  }

 private:
  float alpha_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Elu, Elu)
