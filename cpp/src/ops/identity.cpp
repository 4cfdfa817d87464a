// Identity — https://onnx.ai/onnx/operators/onnx__Identity.html (opset 1, 13, 14, 16, 19, 21;
// tensors only, no sequences or optionals).
// y = x. Kind: Routing (relevance and gradients pass through). Aliases the input; the
// remove_identity pass usually drops the node before it ever runs.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Identity final : public Op {
 public:
  explicit Identity(const NodeDesc& d) : Op(d) { require_io(*this, d, 1, "input"); }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext&) const override {
    out[0] = *in[0];
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    view_vjp(*this, in, in[0]->shape(), gout, need, gin, ctx);
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Identity, Identity)
