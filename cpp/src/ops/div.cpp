// Div — https://onnx.ai/onnx/operators/onnx__Div.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a / b. float32 follows IEEE (x/0 = +-inf, 0/0 = NaN); int64 truncates toward zero
// as onnxruntime does, and an int64 division by zero is an error instead of a hardware trap.
// VJP: g / b for a, -g * (a / b) / b for b (as torch), each summed back over its broadcast dims.
// Kind: Product (division by a constant is a scaling; by an activation, a Product rule).
#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Div final : public Op {
 public:
  explicit Div(const NodeDesc& d) : Op(d) {
    if (d.input_present.size() != 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects 2 inputs, got " + std::to_string(d.input_present.size()));
    // Before opset 7 b only broadcast with broadcast=1, aligned at `axis` (suffix by default).
    if (d.opset < 7 && d.attrs->get_int("broadcast", 0) != 0) legacy_axis_ = d.attrs->get_int("axis", kernels::kNoLegacyAxis);
  }
  OpKind kind() const override { return OpKind::Product; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& a = in.at(0);
    const ValueInfo& b = in.at(1);
    if (a.dtype != b.dtype)
      fail_format(std::string("inputs have different dtypes ") + dtype_name(a.dtype) + " and " + dtype_name(b.dtype));
    ValueInfo o;
    o.dtype = a.dtype;
    if (a.has_rank && b.has_rank) {
      const Shape bs = kernels::legacy_rhs_shape(b.shape, a.rank(), legacy_axis_);
      if (!kernels::broadcast_shapes(a.shape, bs, o.shape)) fail_shape(kernels::broadcast_error(a.shape, b.shape));
      o.has_rank = true;
    }
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    if (a.dtype() != b.dtype())
      fail_format(std::string("inputs have different dtypes ") + dtype_name(a.dtype()) + " and " +
                  dtype_name(b.dtype()));
    kernels::BroadcastPlan plan;
    if (!kernels::make_broadcast_plan(a.shape(), kernels::legacy_rhs_shape(b.shape(), a.rank(), legacy_axis_), plan))
      fail_shape(kernels::broadcast_error(a.shape(), b.shape()));
    if (a.dtype() == DType::Int64 && plan.numel > 0 && kernels::contains_zero(b))
      fail_shape("integer division by zero");
    out[0] = ctx.alloc(a.dtype(), plan.out_shape);
    kernels::broadcast_binary(plan, a, b, out[0], ctx.threads(), kernels::DivFn{});
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    if ((need[0] && a.dtype() != DType::Float32) || (need[1] && b.dtype() != DType::Float32))
      fail_format(std::string("no gradient for ") + dtype_name(a.dtype()) + " inputs");
    const Shape bs = kernels::legacy_rhs_shape(b.shape(), a.rank(), legacy_axis_);
    kernels::BroadcastPlan plan;
    if (!kernels::make_broadcast_plan(a.shape(), bs, plan)) fail_shape(kernels::broadcast_error(a.shape(), b.shape()));
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != plan.out_shape)
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(plan.out_shape));
    // d/da = g / b and d/db = -g * (a / b) / b (torch's order of operations), each summed back
    // over its broadcast dims. Recomputed from the inputs, not the output, so a rule may pass
    // modified inputs alone.
    if (need[0]) {
      Tensor t = ctx.alloc(DType::Float32, plan.out_shape);
      kernels::broadcast_ternary(plan, a.f32(), b.f32(), g.f32(), t.f32(), ctx.threads(),
                                 [](float, float vb, float vg) { return vg / vb; });
      gin[0] = kernels::sum_to(t, a.shape(), a.shape(), ctx.threads());
    }
    if (need[1]) {
      Tensor t = ctx.alloc(DType::Float32, plan.out_shape);
      kernels::broadcast_ternary(plan, a.f32(), b.f32(), g.f32(), t.f32(), ctx.threads(),
                                 [](float va, float vb, float vg) { return -vg * ((va / vb) / vb); });
      gin[1] = kernels::sum_to(t, bs, b.shape(), ctx.threads());
    }
  }

 private:
  int64_t legacy_axis_ = kernels::kNoLegacyAxis;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Div, Div)
