// ConstantOfShape — https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html (opsets 9, 20; 20 only
// adds element types).
// y = a tensor of the shape given by the int64 1-D input, every entry the one value of the
// attribute `value` (a one-element tensor; default float32 0). An empty shape gives a scalar, a 0
// dim an empty tensor; negative dims are refused. Integer and bool values come as int64, other
// float types as float32 (the IR's two dtypes).
// Kind: Constant (no relevance or gradient flows into it: its only input is a shape). Exporters
// feed it from Shape, so it folds to a constant at load whenever the input shapes are static.
#include <algorithm>
#include <string>

#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class ConstantOfShape final : public Op {
 public:
  explicit ConstantOfShape(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 1, "input (the shape)");
    if (d.attrs->has("value")) {
      value_ = d.attrs->get_tensor("value");
      if (value_.numel() != 1)
        fail_format("the attribute value must hold exactly one element, got shape " + shape_str(value_.shape()));
    } else {
      value_ = Tensor::scalar_f32(0.f);
    }
  }
  OpKind kind() const override { return OpKind::Constant; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& s = in.at(0);
    if (s.dtype != DType::Int64) fail_format(std::string("the shape input must be int64, got ") + dtype_name(s.dtype));
    if (s.has_rank && s.rank() != 1) fail_shape("the shape input must be 1-D, got shape " + shape_str(s.shape));
    ValueInfo o;
    o.dtype = value_.dtype();
    if (s.value) return {ValueInfo(o.dtype, target(*s.value))};
    if (s.has_rank && s.shape[0] >= 0) return {ValueInfo(o.dtype, Shape(static_cast<std::size_t>(s.shape[0]), -1))};
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& s = *in[0];
    if (s.dtype() != DType::Int64)
      fail_format(std::string("the shape input must be int64, got ") + dtype_name(s.dtype()));
    if (s.rank() != 1) fail_shape("the shape input must be 1-D, got shape " + shape_str(s.shape()));
    out[0] = ctx.alloc(value_.dtype(), target(s));
    const int64_t n = out[0].numel();
    if (value_.dtype() == DType::Int64) {
      int64_t* p = out[0].i64();
      const int64_t v = value_.i64()[0];
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
    } else {
      float* p = out[0].f32();
      const float v = value_.f32()[0];
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
    }
  }

  // The shape input is integer: nothing flows back into it.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&, const std::vector<const Tensor*>&,
           const std::vector<bool>& need, std::vector<Tensor>& gin, ExecContext& ctx) const override {
    zero_grads(in, need, gin, 0, ctx);
  }

 private:
  Shape target(const Tensor& s) const {
    Shape dims = s.to_i64_vector();
    for (int64_t d : dims)
      if (d < 0) fail_shape("shape " + ints_str(dims) + " has a negative dimension");
    return dims;
  }

  Tensor value_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ConstantOfShape, ConstantOfShape)
