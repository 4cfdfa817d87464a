// Unsqueeze — https://onnx.ai/onnx/operators/onnx__Unsqueeze.html (opset 1, 11 (negative axes):
// axes attribute; 13, 21: axes input).
// y = x with a size-1 dim inserted at each listed axis; axes index the output, in [-r', r') with
// r' = rank(x) + len(axes).
// Kind: Routing (relevance and gradients are reshaped back unchanged). Aliases the input.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Unsqueeze final : public Op {
 public:
  explicit Unsqueeze(const NodeDesc& d) : Op(d) {
    if (d.opset < 13) {
      require_io(*this, d, 1, "data");
      axes_ = d.attrs->require_ints("axes");
    } else {
      require_io(*this, d, 2, "data, axes");
      axes_input_ = true;
    }
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    ValueInfo unknown;
    unknown.dtype = x.dtype;
    std::vector<int64_t> axes = axes_;
    if (axes_input_ && !known_ints(in, 1, axes)) {
      const ValueInfo& a = in.at(1);
      if (x.has_rank && a.has_rank && a.rank() <= 1) {
        const int64_t n = a.rank() == 0 ? 1 : a.shape[0];
        if (n >= 0) return {ValueInfo(x.dtype, Shape(static_cast<std::size_t>(x.rank() + n), -1))};
      }
      return {unknown};
    }
    if (!x.has_rank) return {unknown};
    return {ValueInfo(x.dtype, unsqueezed(x.shape, axes))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext&) const override {
    out[0] = in[0]->reshaped(out_shape(in));
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    view_vjp(*this, in, out_shape(in), gout, need, gin, ctx);
  }

 private:
  Shape out_shape(const std::vector<const Tensor*>& in) const {
    return unsqueezed(in[0]->shape(), axes_input_ ? in[1]->to_i64_vector() : axes_);
  }

  Shape unsqueezed(const Shape& s, const std::vector<int64_t>& axes) const {
    const int64_t r = static_cast<int64_t>(s.size() + axes.size());
    std::vector<bool> ins(static_cast<std::size_t>(r), false);
    for (int64_t a : normalize_axes(*this, axes, r)) ins[static_cast<std::size_t>(a)] = true;
    Shape o(static_cast<std::size_t>(r));
    std::size_t j = 0;
    for (std::size_t k = 0; k < o.size(); ++k) o[k] = ins[k] ? 1 : s[j++];
    return o;
  }

  bool axes_input_ = false;
  std::vector<int64_t> axes_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Unsqueeze, Unsqueeze)
