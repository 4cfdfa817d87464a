// Relu — https://onnx.ai/onnx/operators/onnx__Relu.html (opset 6, 13, 14).
// y = max(x, 0). Kind: Activation (LRP passes relevance through; the gradient gates by x > 0,
// so it is 0 at x == 0 as in torch). The rectifier: DeConvNet/Guided BackProp modify its backward.
#include <algorithm>

#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Relu final : public Op {
 public:
  explicit Relu(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::Activation; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/false);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    check_float32(o.dtype);
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    check_float32(x.dtype());
    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float* px = x.f32();
    float* py = out[0].f32();
    kernels::parallel_for(x.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) py[i] = px[i] < 0.f ? 0.f : px[i];  // NaN and -0 pass through, as in onnxruntime
    });
  }

  bool forward_in_place(Tensor& x, ExecContext& ctx) const override {
    if (x.dtype() != DType::Float32) return false;
    float* p = x.f32();
    kernels::parallel_for(x.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = p[i] < 0.f ? 0.f : p[i];
    });
    return true;
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (!need[0] || kernels::zero_vjp(gout[0], in, need, gin)) return;
    // y > 0 exactly where x > 0 (NaN and -0 neither): the output is what the mask is read from
    // where it is given, so that an explanation need not keep the input (vjp_reads).
    const bool from_out = out.size() == 1 && out[0] && out[0]->raw() && out[0]->shape() == in[0]->shape();
    const Tensor& x = from_out ? *out[0] : *in[0];
    const Tensor& g = *gout[0];
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    // Gradient 0 at x == 0 (torch's convention) and for NaN.
    kernels::binary_map(x.f32(), g.f32(), gin[0].f32(), x.numel(), ctx.threads(),
                        [](float v, float gv) { return v > 0.f ? gv : 0.f; });
  }

  void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const override {
    (void)constant;
    if (out.size() == 1) std::fill(in.begin(), in.end(), 0);
  }

  /// DeConvNet and Guided BackProp replace this op's backward.
  bool rectifier() const override { return true; }

 private:
  // ONNX allows integer Relu (opset 14); the IR's integers are shape arithmetic only.
  void check_float32(DType t) const {
    if (t != DType::Float32)
      fail_format(std::string("input of dtype ") + dtype_name(t) + ": Relu runs on float tensors only");
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Relu, Relu)
