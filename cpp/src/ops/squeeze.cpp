// Squeeze — https://onnx.ai/onnx/operators/onnx__Squeeze.html (opset 1, 11 (negative axes): axes
// attribute; 13, 21: axes input, optional).
// y = x without the listed size-1 dims; without axes, without every size-1 dim.
// Kind: Routing (relevance and gradients are reshaped back unchanged). Aliases the input.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Squeeze final : public Op {
 public:
  explicit Squeeze(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 1, "data");
    if (d.opset < 13) {
      has_axes_ = d.attrs->has("axes");
      axes_ = d.attrs->get_ints("axes", {});
    } else {
      axes_input_ = d.input_present.size() > 1 && d.input_present[1];
    }
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    ValueInfo unknown;
    unknown.dtype = x.dtype;
    std::vector<int64_t> axes = axes_;
    bool have = has_axes_;
    if (axes_input_) {
      have = known_ints(in, 1, axes);
      if (!have) {
        const ValueInfo& a = in.at(1);
        if (x.has_rank && a.has_rank && a.rank() == 1 && a.shape[0] >= 0 && a.shape[0] <= x.rank())
          return {ValueInfo(x.dtype, Shape(static_cast<std::size_t>(x.rank() - a.shape[0]), -1))};
        return {unknown};
      }
    }
    if (!x.has_rank) return {unknown};
    if (!have) {
      // Which dims go depends on the sizes: unknown dims leave the rank unknown.
      for (int64_t d : x.shape)
        if (d < 0) return {unknown};
    }
    return {ValueInfo(x.dtype, squeezed(x.shape, have, axes))};
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
    if (axes_input_) return squeezed(in[0]->shape(), true, in[1]->to_i64_vector());
    return squeezed(in[0]->shape(), has_axes_, axes_);
  }

  Shape squeezed(const Shape& s, bool have, const std::vector<int64_t>& axes) const {
    const int64_t r = static_cast<int64_t>(s.size());
    std::vector<bool> drop(s.size(), false);
    if (have) {
      for (int64_t a : normalize_axes(*this, axes, r)) {
        const int64_t d = s[static_cast<std::size_t>(a)];
        if (d >= 0 && d != 1)
          fail_shape("cannot squeeze axis " + std::to_string(a) + " of " + shape_str(s) + ": its size is " +
                     std::to_string(d) + ", not 1");
        drop[static_cast<std::size_t>(a)] = true;
      }
    } else {
      for (std::size_t k = 0; k < s.size(); ++k) drop[k] = s[k] == 1;
    }
    Shape o;
    for (std::size_t k = 0; k < s.size(); ++k)
      if (!drop[k]) o.push_back(s[k]);
    return o;
  }

  bool has_axes_ = false;    // axes attribute given (opset < 13)
  bool axes_input_ = false;  // axes input given (opset 13+)
  std::vector<int64_t> axes_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Squeeze, Squeeze)
