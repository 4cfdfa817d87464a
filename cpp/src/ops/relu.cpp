// Relu — https://onnx.ai/onnx/operators/onnx__Relu.html (opset 6, 13, 14).
// y = max(x, 0). Kind: Activation (LRP passes relevance through; gradient gates by x > 0).
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Relu final : public Op {
 public:
  explicit Relu(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::Activation; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float* px = x.f32();
    float* py = out[0].f32();
    kernels::parallel_for(x.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) py[i] = px[i] < 0.f ? 0.f : px[i];  // NaN and -0 pass through, as in onnxruntime
    });
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Relu, Relu)
