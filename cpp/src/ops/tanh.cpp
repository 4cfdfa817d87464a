// Tanh — https://onnx.ai/onnx/operators/onnx__Tanh.html (opsets 6, 13).
// Formula: y = tanh(x).
// Kind: Activation (LRP passes relevance through; the gradient is 1 - y^2).
#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Tanh final : public Op {
 public:
  explicit Tanh(const NodeDesc& d) : Op(d) {}
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
    kernels::unary_map(x, out[0], ctx.threads(), [](float v) { return std::tanh(v); });
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Tanh, Tanh)
