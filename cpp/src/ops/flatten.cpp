// Flatten — https://onnx.ai/onnx/operators/onnx__Flatten.html (opset 1, 9, 11, 13, 21).
// y = reshape(x, [prod(x.shape[:axis]), prod(x.shape[axis:])]), axis in [-r, r] (default 1).
// Kind: Routing (relevance and gradients are reshaped back unchanged). Aliases the input.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Flatten final : public Op {
 public:
  explicit Flatten(const NodeDesc& d) : Op(d), axis_(d.attrs->get_int("axis", 1)) { require_io(*this, d, 1, "data"); }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (!x.has_rank) return {ValueInfo(x.dtype, {-1, -1})};
    int64_t a = split(x.rank());
    Shape outer(x.shape.begin(), x.shape.begin() + a), inner(x.shape.begin() + a, x.shape.end());
    return {ValueInfo(x.dtype, {known_numel(outer), known_numel(inner)})};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext&) const override {
    out[0] = in[0]->reshaped(out_shape(*in[0]));
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    view_vjp(*this, in, out_shape(*in[0]), gout, need, gin, ctx);
  }

 private:
  Shape out_shape(const Tensor& x) const {
    int64_t a = split(x.rank());
    int64_t outer = 1;
    for (int64_t k = 0; k < a; ++k) outer *= x.dim(k);
    int64_t inner = 1;
    for (int64_t k = a; k < x.rank(); ++k) inner *= x.dim(k);
    return {outer, inner};
  }

  // Flatten's axis ranges over [-r, r]: axis == r puts everything in the outer dim.
  int64_t split(int64_t rank) const {
    if (axis_ < -rank || axis_ > rank)
      fail_shape("axis " + std::to_string(axis_) + " is out of range for rank " + std::to_string(rank));
    return axis_ < 0 ? axis_ + rank : axis_;
  }
  int64_t axis_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Flatten, Flatten)
