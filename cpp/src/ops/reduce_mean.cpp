// ReduceMean — https://onnx.ai/onnx/operators/onnx__ReduceMean.html (opsets 1, 11, 13, 18).
// y = mean of x over `axes` (negative axes count from the end; none given = all axes), the reduced
// axes kept as size 1 when keepdims (default 1). Axes are an attribute before opset 18 and the
// optional int64 second input from 18 on, where noop_with_empty_axes = 1 makes empty axes the identity.
// Computed as the sum times 1/count (an empty reduction gives NaN, like onnxruntime); int64 input
// divides the sum with truncation. VJP: dx = dy / count spread back over the reduced axes.
// Kind: AvgPool (the dynamo exporter writes global average
// pooling as ReduceMean over axes [2, 3]).
#include <limits>

#include "kernels/reduce.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class ReduceMean final : public Op {
 public:
  explicit ReduceMean(const NodeDesc& d) : Op(d) {
    keepdims_ = d.attrs->get_int("keepdims", 1) != 0;
    noop_empty_ = d.attrs->get_int("noop_with_empty_axes", 0) != 0;
    if (d.opset < 18) {
      axes_ = d.attrs->get_ints("axes", {});
      axes_known_ = true;
    } else {
      axes_input_ = d.input_present.size() > 1 && d.input_present[1];
      if (axes_input_ && d.const_inputs.size() > 1 && d.const_inputs[1]) {
        axes_ = d.const_inputs[1]->to_i64_vector();
        axes_known_ = true;
      } else {
        axes_known_ = !axes_input_;
      }
    }
  }
  OpKind kind() const override { return OpKind::AvgPool; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (axes_input_ && in.size() > 1 && in[1].dtype != DType::Int64)
      fail_format("the axes input must be int64, got " + std::string(dtype_name(in[1].dtype)));
    ValueInfo o;
    o.dtype = x.dtype;
    if (!x.has_rank) return {o};
    if (!axes_known_) {
      // Axes only known at run time: with keepdims the rank stays, without it nothing is known.
      if (keepdims_) o = ValueInfo(x.dtype, Shape(x.shape.size(), -1));
      return {o};
    }
    if (axes_.empty() && noop_empty_) return {ValueInfo(x.dtype, x.shape)};
    std::vector<bool> mask;
    std::string err = kernels::reduce_mask(axes_, x.rank(), &mask);
    if (!err.empty()) fail_shape(err + " (input shape " + shape_str(x.shape) + ")");
    return {ValueInfo(x.dtype, kernels::reduced_shape(x.shape, mask, keepdims_))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const bool runtime_axes = axes_input_ && in.size() > 1 && in[1];
    std::vector<int64_t> axes = runtime_axes ? in[1]->to_i64_vector() : axes_;
    if (axes.empty() && noop_empty_) {
      out[0] = x;  // the identity: alias, nothing to compute
      return;
    }
    std::vector<bool> mask;
    std::string err = kernels::reduce_mask(axes, x.rank(), &mask);
    if (!err.empty()) fail_shape(err + " (input shape " + shape_str(x.shape()) + ")");
    out[0] = ctx.alloc(x.dtype(), kernels::reduced_shape(x.shape(), mask, keepdims_));
    int64_t count = 1;
    for (std::size_t d = 0; d < mask.size(); ++d)
      if (mask[d]) count *= x.dim(static_cast<int64_t>(d));
    Tensor& y = out[0];
    if (x.dtype() == DType::Int64) {
      kernels::reduce_sum(x.i64(), x.shape(), mask, y.i64(), ctx.threads());
      int64_t* py = y.i64();
      if (count > 1)
        for (int64_t i = 0; i < y.numel(); ++i) py[i] /= count;
      return;
    }
    kernels::reduce_sum(x.f32(), x.shape(), mask, y.f32(), ctx.threads());
    if (count == 1) return;
    const float s = count > 0 ? 1.f / static_cast<float>(count) : std::numeric_limits<float>::quiet_NaN();
    float* py = y.f32();
    for (int64_t i = 0; i < y.numel(); ++i) py[i] *= s;
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format("only float32 inputs have a gradient");
    const bool runtime_axes = axes_input_ && in.size() > 1 && in[1];
    std::vector<int64_t> axes = runtime_axes ? in[1]->to_i64_vector() : axes_;
    const Tensor* g = gout.empty() ? nullptr : gout[0];
    const bool identity = axes.empty() && noop_empty_;
    std::vector<bool> mask;
    Shape ys = x.shape();
    if (!identity) {
      std::string err = kernels::reduce_mask(axes, x.rank(), &mask);
      if (!err.empty()) fail_shape(err + " (input shape " + shape_str(x.shape()) + ")");
      ys = kernels::reduced_shape(x.shape(), mask, keepdims_);
    }
    if (!g) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());
      return;
    }
    if (g->dtype() != DType::Float32 || g->shape() != ys)
      fail_shape("cotangent of shape " + shape_str(g->shape()) + " does not match the output shape " + shape_str(ys));
    if (identity) {
      gin[0] = *g;
      return;
    }
    int64_t count = 1;
    for (std::size_t d = 0; d < mask.size(); ++d)
      if (mask[d]) count *= x.dim(static_cast<int64_t>(d));
    const float scale = count > 0 ? 1.f / static_cast<float>(count) : 0.f;
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::expand_reduced(g->f32(), x.shape(), mask, scale, gin[0].f32(), ctx.threads());
  }

 private:
  std::vector<int64_t> axes_;
  bool keepdims_ = true;
  bool noop_empty_ = false;
  bool axes_input_ = false;  // opset >= 18 and the axes input given
  bool axes_known_ = true;   // axes_ holds the axes (attribute, constant input, or none)
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ReduceMean, ReduceMean)
