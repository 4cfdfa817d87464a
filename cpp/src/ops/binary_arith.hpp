// What Add, Sub, Mul and Div share: two operands with multidirectional broadcasting (and the
// opset-6 `broadcast`/`axis` form), float32 or int64, shape inference, the forward map and the
// checks every VJP starts with. Each op file adds its kind, its functor and its VJP formula.
#pragma once

#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

template <class Fn>
class BinaryArith : public Op {
 public:
  explicit BinaryArith(const NodeDesc& d) : Op(d) {
    if (d.input_present.size() != 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects 2 inputs, got " + std::to_string(d.input_present.size()));
    // Before opset 7 b only broadcast with broadcast=1, aligned at `axis` (suffix by default).
    if (d.opset < 7 && d.attrs->get_int("broadcast", 0) != 0)
      legacy_axis_ = d.attrs->get_int("axis", kernels::kNoLegacyAxis);
  }

  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    // Pre-opset-7 broadcasting aligns b at an axis, not at the end: not worth the special case.
    if (in.size() != 2 || !in[0] || !in[1] || legacy_axis_ != kernels::kNoLegacyAxis) return false;
    const int64_t r = std::max(in[0]->rank(), in[1]->rank());
    if (r < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(r - 2), /*broadcasts=*/true);
    return true;
  }

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
    check_operands(a, b, plan);
    out[0] = ctx.alloc(a.dtype(), plan.out_shape);
    if (!ctx.relu_epilogue() || a.dtype() != DType::Float32) {
      kernels::broadcast_binary(plan, a, b, out[0], ctx.threads(), Fn{});
      return;
    }
    // Rectified as written (Op::fuses_rectifier, declared by the sums): max(v, 0) as the Relu op
    // computes it, NaN and -0 kept. Operands of the output's shape in one pass; else a second.
    float* py = out[0].f32();
    const auto rect = [](float v) { return v < 0.f ? 0.f : v; };
    if (a.shape() == plan.out_shape && b.shape() == plan.out_shape) {
      const float* pa = a.f32();
      const float* pb = b.f32();
      kernels::parallel_for(plan.numel, ctx.threads(), [&](int64_t lo, int64_t hi) {
        const Fn f{};
        for (int64_t i = lo; i < hi; ++i) py[i] = rect(f(pa[i], pb[i]));
      });
      return;
    }
    kernels::broadcast_binary(plan, a, b, out[0], ctx.threads(), Fn{});
    kernels::parallel_for(plan.numel, ctx.threads(), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) py[i] = rect(py[i]);
    });
  }

 protected:
  /// Extra checks before the forward map (integer division by zero).
  virtual void check_operands(const Tensor&, const Tensor&, const kernels::BroadcastPlan&) const {}

  /// The start of every VJP: dtype and broadcast checks, b's aligned shape in `bs`, the plan.
  /// Returns the cotangent, or nullptr when it is absent (gin then holds zeros).
  const Tensor* vjp_prologue(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& gout,
                             const std::vector<bool>& need, std::vector<Tensor>& gin, kernels::BroadcastPlan& plan,
                             Shape& bs) const {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    if ((need[0] && a.dtype() != DType::Float32) || (need[1] && b.dtype() != DType::Float32))
      fail_format(std::string("no gradient for ") + dtype_name(a.dtype()) + " inputs");
    bs = kernels::legacy_rhs_shape(b.shape(), a.rank(), legacy_axis_);
    if (!kernels::make_broadcast_plan(a.shape(), bs, plan)) fail_shape(kernels::broadcast_error(a.shape(), b.shape()));
    if (kernels::zero_vjp(gout[0], in, need, gin)) return nullptr;
    const Tensor& g = *gout[0];
    if (g.shape() != plan.out_shape)
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(plan.out_shape));
    return &g;
  }

  /// t = f(a, b, g) over the output, summed back to the shape of operand `which` (0: a, 1: b).
  template <class F>
  Tensor reduced(const kernels::BroadcastPlan& plan, const Tensor& a, const Tensor& b, const Tensor& g,
                 const Shape& target_full, const Shape& target, ExecContext& ctx, F f) const {
    Tensor t = ctx.alloc(DType::Float32, plan.out_shape);
    kernels::broadcast_ternary(plan, a.f32(), b.f32(), g.f32(), t.f32(), ctx.threads(), f);
    return kernels::sum_to(t, target_full, target, ctx.threads());
  }

  int64_t legacy_axis_ = kernels::kNoLegacyAxis;
};

}  // namespace onnxplain::ops
