// PRelu — https://onnx.ai/onnx/operators/onnx__PRelu.html (opsets 1, 6, 7, 9, 16). Before opset 7
// the slope did not broadcast numpy-style: a 1-D slope of x's channel count is one slope per
// channel (axis 1), as caffe2's exports meant it; such a slope is read as [C, 1, ..., 1].
// Formula: y = x < 0 ? slope * x : x, slope broadcast unidirectionally to x (numpy rules, the
// output keeps x's shape): a scalar/[1] slope, or per channel [C, 1, 1] against [N, C, H, W]
// (what exporters emit for nn.PReLU(C)), or [C] against [N, C].
// Kind: Activation (elementwise given the constant slope: LRP passes relevance through).
// VJP: dx = x > 0 ? g : slope * g; dslope = sum over broadcast dims of (x > 0 ? 0 : x * g).
#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

struct PReluFn {
  float operator()(float x, float s) const { return x < 0.f ? s * x : x; }
};

class PRelu final : public Op {
 public:
  explicit PRelu(const NodeDesc& d) : Op(d), legacy_(d.opset > 0 && d.opset < 7) {
    if (d.input_present.size() != 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects 2 inputs (X, slope), got " + std::to_string(d.input_present.size()));
  }
  OpKind kind() const override { return OpKind::Activation; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    // A legacy per-channel slope [C] would look to the local forward like one varying along the
    // last spatial axis; such old models take the plain batched pass.
    if (legacy_ || in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/true);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& s = in.at(1);
    check_dtypes(x.dtype, s.dtype);
    ValueInfo o = x;
    o.value = nullptr;
    if (x.has_rank && s.has_rank) {
      Shape b;
      const Shape ss = slope_shape(x.shape, s.shape);
      if (!kernels::broadcast_shapes(x.shape, ss, b) || !fits(b, x.shape)) fail_unidirectional(x.shape, s.shape);
      // An unknown dim of x that the slope pins down (> 1) is known after all.
      o.shape = b;
    }
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    check_dtypes(x.dtype(), s.dtype());
    kernels::BroadcastPlan plan;
    if (!kernels::make_broadcast_plan(x.shape(), slope_shape(x.shape(), s.shape()), plan) ||
        plan.out_shape != x.shape())
      fail_unidirectional(x.shape(), s.shape());
    out[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::broadcast_binary(plan, x.f32(), s.f32(), out[0].f32(), ctx.threads(), PReluFn{});
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    check_dtypes(x.dtype(), s.dtype());
    const Shape ss = slope_shape(x.shape(), s.shape());
    kernels::BroadcastPlan plan;
    if (!kernels::make_broadcast_plan(x.shape(), ss, plan) || plan.out_shape != x.shape())
      fail_unidirectional(x.shape(), s.shape());
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    // torch's convention: the x < 0 branch's derivatives also hold at x == 0 (slope s for x; for
    // the slope, x * g = 0 there anyway).
    if (need[0]) {
      gin[0] = ctx.alloc(DType::Float32, x.shape());
      kernels::broadcast_ternary(plan, x.f32(), s.f32(), g.f32(), gin[0].f32(), ctx.threads(),
                                 [](float vx, float vs, float vg) { return vx > 0.f ? vg : vs * vg; });
    }
    if (need[1]) {  // the slope is a graph input (or computed from one): sum over where it was broadcast
      Tensor t = ctx.alloc(DType::Float32, x.shape());
      kernels::broadcast_ternary(plan, x.f32(), s.f32(), g.f32(), t.f32(), ctx.threads(),
                                 [](float vx, float, float vg) { return vx > 0.f ? 0.f : vx * vg; });
      gin[1] = kernels::sum_to(t, ss, ss, ctx.threads()).reshaped(s.shape());
    }
  }

 private:
  // The shape the slope broadcasts with: before opset 7 a 1-D slope of x's channel count (> 1)
  // is per channel, [C] -> [C, 1, ..., 1]; otherwise numpy's rules as they are.
  Shape slope_shape(const Shape& x, const Shape& s) const {
    if (!legacy_ || x.size() < 3 || s.size() != 1 || s[0] <= 1 || s[0] != x[1]) return s;
    Shape c(x.size() - 1, 1);
    c[0] = s[0];
    return c;
  }
  void check_dtypes(DType x, DType s) const {
    if (x != DType::Float32 || s != DType::Float32)
      fail_format(std::string("expects float32 inputs, got ") + dtype_name(x) + " and " + dtype_name(s));
  }
  // Whether broadcast shape b can equal x (same rank; dims agree where both are known).
  static bool fits(const Shape& b, const Shape& x) {
    if (b.size() != x.size()) return false;
    for (std::size_t i = 0; i < b.size(); ++i)
      if (b[i] >= 0 && x[i] >= 0 && b[i] != x[i]) return false;
    return true;
  }
  [[noreturn]] void fail_unidirectional(const Shape& x, const Shape& s) const {
    fail_shape("slope of shape " + shape_str(s) + " does not broadcast to the input shape " + shape_str(x));
  }
  bool legacy_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(PRelu, PRelu)
