// Dropout — https://onnx.ai/onnx/operators/onnx__Dropout.html (opset 1, 6, 7, 10, 12, 13, 22).
// Inference only: y = x (from opset 7 no scaling happens at inference; the is_test attribute of
// opsets 1-6 is ignored, exported models are run for inference).
// The optional mask output is bool in ONNX; the IR has no bool dtype and maps bool to int64 (as
// Cast does), so a mask that something reads is an int64 tensor of ones (all kept). A
// training_mode input (opset 12+) that is true is refused: training-mode dropout is random.
// Kind: Routing (relevance and gradients pass through). Aliases the input; the remove_identity
// pass drops the node unless its mask is used or it has a training_mode input.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Dropout final : public Op {
 public:
  explicit Dropout(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 1, "data");
    if (d.input_present.size() > 2 && d.input_present[2]) {
      const Tensor* t = d.const_inputs.size() > 2 ? d.const_inputs[2] : nullptr;
      if (t) check_training(*t);
      training_input_ = true;
    }
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    o.value = nullptr;
    ValueInfo mask = o;
    mask.dtype = DType::Int64;
    return {o, mask};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    if (training_input_ && in.size() > 2 && in[2]) check_training(*in[2]);
    const Tensor& x = *in[0];
    out[0] = x;
    if (out.size() > 1) {
      out[1] = ctx.alloc(DType::Int64, x.shape());
      int64_t* p = out[1].i64();
      for (int64_t i = 0; i < x.numel(); ++i) p[i] = 1;
    }
  }

  // The mask is integer, so only y's cotangent flows back; a ratio input gets zero.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    view_vjp(*this, in, in[0]->shape(), gout, need, gin, ctx);
  }

 private:
  void check_training(const Tensor& t) const {
    for (int64_t v : t.to_i64_vector())
      if (v != 0) fail_format("training_mode=true is not supported (onnxplain runs models for inference only)");
  }
  bool training_input_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Dropout, Dropout)
