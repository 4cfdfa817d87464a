// Add — https://onnx.ai/onnx/operators/onnx__Add.html (opsets 6 (legacy `broadcast`/`axis`
// attributes), 7, 13, 14: multidirectional numpy broadcasting).
// Formula: y = a + b, float32 or int64 (int64 only for the shape arithmetic exporters emit;
// wraps around on overflow).
// VJP: the cotangent, summed back over the dims each operand was broadcast along.
// Kind: Sum (residual connections, bias adds: LRP splits relevance in proportion to the terms).
#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Add final : public Op {
 public:
  explicit Add(const NodeDesc& d) : Op(d) {
    if (d.input_present.size() != 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects 2 inputs, got " + std::to_string(d.input_present.size()));
    // Before opset 7 b only broadcast with broadcast=1, aligned at `axis` (suffix by default).
    if (d.opset < 7 && d.attrs->get_int("broadcast", 0) != 0) legacy_axis_ = d.attrs->get_int("axis", kernels::kNoLegacyAxis);
  }
  OpKind kind() const override { return OpKind::Sum; }

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
    out[0] = ctx.alloc(a.dtype(), plan.out_shape);
    kernels::broadcast_binary(plan, a, b, out[0], ctx.threads(), kernels::AddFn{});
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
    // Each operand's gradient is the cotangent, summed over the dims it was broadcast along.
    if (need[0]) gin[0] = kernels::sum_to(g, a.shape(), a.shape(), ctx.threads());
    if (need[1]) gin[1] = kernels::sum_to(g, bs, b.shape(), ctx.threads());
  }

 private:
  int64_t legacy_axis_ = kernels::kNoLegacyAxis;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Add, Add)
