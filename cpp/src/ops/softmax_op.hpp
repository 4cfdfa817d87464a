// What Softmax and LogSoftmax share: the axis (opset < 13: the input coerced to 2D at `axis`,
// default 1; from 13: one axis, default -1), shape inference, the stable forward kernel and the
// VJP from the forward output; `kLog` picks the log form.
#pragma once

#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

template <bool kLog>
class SoftmaxOp : public Op {
 public:
  explicit SoftmaxOp(const NodeDesc& d) : Op(d), legacy_(d.opset < 13) {
    axis_ = d.attrs->get_int("axis", legacy_ ? 1 : -1);
  }
  OpKind kind() const override { return OpKind::Softmax; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    if (o.dtype != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(o.dtype));
    if (o.has_rank) normalized_axis(o.rank());
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    int64_t outer, n, inner;
    view(x.shape(), outer, n, inner);
    out[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::softmax(x.f32(), out[0].f32(), outer, n, inner, kLog, ctx.threads());
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (!need[0] || kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& x = *in[0];
    const Tensor& g = *gout[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("expects a float32 input, got ") + dtype_name(x.dtype()));
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    // torch's formulas use only the forward output.
    if (out.empty() || out[0] == nullptr || out[0]->shape() != x.shape())
      fail_shape("the forward output does not match the input shape " + shape_str(x.shape()));
    int64_t outer, n, inner;
    view(x.shape(), outer, n, inner);
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::softmax_vjp(out[0]->f32(), g.f32(), gin[0].f32(), outer, n, inner, kLog, ctx.threads());
  }

 private:
  int64_t normalized_axis(int64_t rank) const {
    if (axis_ < -rank || axis_ >= rank)
      fail_shape("axis " + std::to_string(axis_) + " is out of range for an input of rank " + std::to_string(rank));
    return axis_ < 0 ? axis_ + rank : axis_;
  }

  // The input viewed as [outer, n, inner], normalised along n; the legacy 2D coercion is the
  // same view with inner = 1.
  void view(const Shape& s, int64_t& outer, int64_t& n, int64_t& inner) const {
    const auto rank = static_cast<int64_t>(s.size());
    const int64_t a = normalized_axis(rank);
    outer = n = inner = 1;
    for (int64_t i = 0; i < rank; ++i) {
      if (i < a)
        outer *= s[static_cast<std::size_t>(i)];
      else if (i == a || legacy_)
        n *= s[static_cast<std::size_t>(i)];
      else
        inner *= s[static_cast<std::size_t>(i)];
    }
  }

  bool legacy_;
  int64_t axis_;
};

}  // namespace onnxplain::ops
