// Pow — https://onnx.ai/onnx/operators/onnx__Pow.html (opsets 1 (legacy `broadcast`/`axis`
// attributes), 7 (multidirectional numpy broadcasting, base and exponent of one float type), 12
// (the exponent may have another dtype than the base, integer types allowed), 13 and 15 (bfloat16
// only)).
// Formula: z = x^y with std::pow's IEEE specials, as onnxruntime: (-2)^0.5 = NaN, 0^-1 = inf,
// (-0)^-1 = -inf, x^0 = 1 and 1^y = 1 even for NaN. A float32 base with an int64 exponent is
// computed in double and rounded once (std::pow(float, int64) in onnxruntime); an int64 base
// (shape arithmetic, opset 12+) gives int64 (the double result truncated). A scalar exponent of 2
// or 3 multiplies (x*x, x*x*x), as onnxruntime does.
// VJP (torch's pow_backward): dx = g * y * x^(y-1), 0 where y == 0 (even at x = 0);
// dy = g * x^y * ln x, 0 where x == 0 and y >= 0 (x < 0 gives NaN, as ln x). Each summed back over
// the dims its operand was broadcast along. An int64 exponent has no gradient.
// Kind: Activation when the exponent is a constant of the graph (a unary map of the base: LRP
// passes relevance through it, DeepLIFT applies Rescale / RevealCancel); Product otherwise (LRP's
// proportional rule over both operands; DeepLIFT refuses a product of two activations and, for a
// constant base, passes the gradient, so its contributions do not sum to the difference there).
// An exponent that broadcasts the base to a larger shape leaves no elementwise map of the base:
// the pass and Rescale rules then refuse with a ShapeError naming the node.
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

// Truncation to int64 that stays defined for NaN and out-of-range values (x86's cvttsd2si gives
// INT64_MIN for both, which is what onnxruntime's cast returns there).
inline int64_t to_i64(double r) {
  return r >= -9.2233720368547758e18 && r < 9.2233720368547758e18 ? static_cast<int64_t>(r) : INT64_MIN;
}

// y[.] = f(a[.], b[.]) over a broadcast plan, for operands and output of any element types.
template <class TA, class TB, class TY, class F>
void map_plan(const kernels::BroadcastPlan& p, const TA* a, const TB* b, TY* y, int threads, const F& f) {
  const int64_t sa = p.stride_a.back(), sb = p.stride_b.back();
  kernels::for_each_run(p, threads, [&](int64_t oa, int64_t ob, int64_t oy, int64_t n) {
    const TA* pa = a + oa;
    const TB* pb = b + ob;
    TY* py = y + oy;
    if (sa != 0 && sb != 0) {
      for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], pb[i]);
    } else if (sa != 0) {
      const TB bv = *pb;
      for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], bv);
    } else if (sb != 0) {
      const TA av = *pa;
      for (int64_t i = 0; i < n; ++i) py[i] = f(av, pb[i]);
    } else {
      const TY v = f(*pa, *pb);
      for (int64_t i = 0; i < n; ++i) py[i] = v;
    }
  });
}

struct PowFF {
  float operator()(float x, float e) const { return std::pow(x, e); }
};

class Pow final : public Op {
 public:
  explicit Pow(const NodeDesc& d) : Op(d), opset_(d.opset) {
    if (d.input_present.size() != 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects 2 inputs (X, Y), got " + std::to_string(d.input_present.size()));
    if (d.opset > 0 && d.opset < 7 && d.attrs->get_int("broadcast", 0) != 0)
      legacy_axis_ = d.attrs->get_int("axis", kernels::kNoLegacyAxis);
    const_exponent_ = d.const_inputs.size() > 1 && d.const_inputs[1] != nullptr;
  }

  OpKind kind() const override { return const_exponent_ ? OpKind::Activation : OpKind::Product; }

  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.size() != 2 || !in[0] || !in[1] || legacy_axis_ != kernels::kNoLegacyAxis) return false;
    const int64_t r = std::max(in[0]->rank(), in[1]->rank());
    if (r < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(r - 2), /*broadcasts=*/true);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& y = in.at(1);
    check_dtypes(x.dtype, y.dtype);
    ValueInfo o;
    o.dtype = x.dtype;
    if (x.has_rank && y.has_rank) {
      const Shape ys = kernels::legacy_rhs_shape(y.shape, x.rank(), legacy_axis_);
      if (!kernels::broadcast_shapes(x.shape, ys, o.shape)) fail_shape(kernels::broadcast_error(x.shape, y.shape));
      o.has_rank = true;
    }
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& y = *in[1];
    check_dtypes(x.dtype(), y.dtype());
    const kernels::BroadcastPlan plan = make_plan(x, y);
    out[0] = ctx.alloc(x.dtype(), plan.out_shape);
    const int th = ctx.threads();
    if (x.dtype() == DType::Float32 && y.dtype() == DType::Float32) {
      // onnxruntime multiplies for a scalar exponent of 2 or 3 (bit-identical results for 2).
      if (y.numel() == 1 && (y.f32()[0] == 2.f || y.f32()[0] == 3.f)) {
        const bool cube = y.f32()[0] == 3.f;
        map_plan(plan, x.f32(), y.f32(), out[0].f32(), th,
                 [cube](float v, float) { return cube ? v * v * v : v * v; });
        return;
      }
      map_plan(plan, x.f32(), y.f32(), out[0].f32(), th, PowFF{});
    } else if (x.dtype() == DType::Float32) {
      map_plan(plan, x.f32(), y.i64(), out[0].f32(), th, [](float v, int64_t e) {
        return static_cast<float>(std::pow(static_cast<double>(v), static_cast<double>(e)));
      });
    } else if (y.dtype() == DType::Int64) {
      map_plan(plan, x.i64(), y.i64(), out[0].i64(), th, [](int64_t v, int64_t e) {
        return to_i64(std::pow(static_cast<double>(v), static_cast<double>(e)));
      });
    } else {
      map_plan(plan, x.i64(), y.f32(), out[0].i64(), th, [](int64_t v, float e) {
        return to_i64(std::pow(static_cast<double>(v), static_cast<double>(e)));
      });
    }
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& y = *in[1];
    const bool need_x = need.size() > 0 && need[0], need_y = need.size() > 1 && need[1];
    if ((need_x && x.dtype() != DType::Float32) || (need_y && y.dtype() != DType::Float32))
      fail_format(std::string("no gradient for ") +
                  dtype_name(need_x && x.dtype() != DType::Float32 ? x.dtype() : y.dtype()) + " inputs");
    if (!need_x && !need_y) return;
    if (x.dtype() != DType::Float32) fail_format("no gradient through an int64 base");
    const kernels::BroadcastPlan plan = make_plan(x, y);
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != plan.out_shape)
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(plan.out_shape));
    // An int64 exponent (only ever a constant or shape arithmetic) as float32, so both partials
    // run on one float kernel.
    Tensor yf = y;
    if (y.dtype() == DType::Int64) {
      yf = ctx.alloc(DType::Float32, y.shape());
      for (int64_t i = 0; i < y.numel(); ++i) yf.f32()[i] = static_cast<float>(y.i64()[i]);
    }
    const Shape ys = kernels::legacy_rhs_shape(y.shape(), x.rank(), legacy_axis_);
    const int th = ctx.threads();
    if (need_x) {
      Tensor t = ctx.alloc(DType::Float32, plan.out_shape);
      kernels::broadcast_ternary(plan, x.f32(), yf.f32(), g.f32(), t.f32(), th, [](float vx, float ve, float vg) {
        return ve == 0.f ? 0.f : vg * (ve * std::pow(vx, ve - 1.f));
      });
      gin[0] = kernels::sum_to(t, x.shape(), x.shape(), th);
    }
    if (need_y) {
      Tensor t = ctx.alloc(DType::Float32, plan.out_shape);
      kernels::broadcast_ternary(plan, x.f32(), yf.f32(), g.f32(), t.f32(), th, [](float vx, float ve, float vg) {
        return ve >= 0.f && vx == 0.f ? 0.f : vg * (std::pow(vx, ve) * std::log(vx));
      });
      gin[1] = kernels::sum_to(t, ys, y.shape(), th);
    }
  }

 private:
  kernels::BroadcastPlan make_plan(const Tensor& x, const Tensor& y) const {
    kernels::BroadcastPlan plan;
    if (!kernels::make_broadcast_plan(x.shape(), kernels::legacy_rhs_shape(y.shape(), x.rank(), legacy_axis_), plan))
      fail_shape(kernels::broadcast_error(x.shape(), y.shape()));
    return plan;
  }

  void check_dtypes(DType x, DType y) const {
    if (x != DType::Float32 && x != DType::Int64) fail_format(std::string("unsupported base dtype ") + dtype_name(x));
    if (y != DType::Float32 && y != DType::Int64)
      fail_format(std::string("unsupported exponent dtype ") + dtype_name(y));
    if (x != y && opset_ > 0 && opset_ < 12)
      fail_format(std::string("base (") + dtype_name(x) + ") and exponent (" + dtype_name(y) +
                  ") differ in dtype, which Pow allows from opset 12 on; the model imports opset " +
                  std::to_string(opset_));
    if (x == DType::Int64 && opset_ > 0 && opset_ < 12)
      fail_format("an int64 base needs opset 12 or later; the model imports opset " + std::to_string(opset_));
  }

  int64_t opset_;
  int64_t legacy_axis_ = kernels::kNoLegacyAxis;
  bool const_exponent_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Pow, Pow)
