// CastLike — https://onnx.ai/onnx/operators/onnx__CastLike.html (opsets 15, 19, 21).
// y = x converted to the element type of the second input (only its dtype is read). The dynamo
// exporter writes bias-free Conv layers as CastLike(0, x) expanded to the output channels; since
// only x's dtype matters, the node folds to a constant at load even though x is an activation
// (see input_use). Like Cast, targets map onto the IR's two dtypes. Kind: Routing.
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class CastLike final : public Op {
 public:
  explicit CastLike(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::Routing; }
  InputUse input_use(std::size_t input) const override { return input == 0 ? InputUse::Value : InputUse::DType; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    o.value = nullptr;
    o.dtype = in.at(1).dtype;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const DType to = in[1]->dtype();
    if (x.dtype() == to) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(to, x.shape());
    const int64_t n = x.numel();
    if (to == DType::Float32) {
      const int64_t* p = x.i64();
      float* q = out[0].f32();
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) q[i] = static_cast<float>(p[i]);
      });
      return;
    }
    const float* p = x.f32();
    int64_t* q = out[0].i64();
    kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float v = p[i];
        // Truncation toward zero; NaN and out-of-range values give INT64_MIN (x86 behaviour,
        // without the undefined conversion).
        q[i] = (std::isnan(v) || std::fabs(v) >= 9.2233720368547758e18f) ? std::numeric_limits<int64_t>::min()
                                                                         : static_cast<int64_t>(v);
      }
    });
  }

  // As Cast: identity for float -> float, zero through an integer result; the target input is
  // read only for its dtype, so it gets zero too.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (!need.empty() && need[0]) {
      const Tensor& x = *in[0];
      const Tensor* g =
          in[1]->dtype() == DType::Float32 ? checked_cotangent(*this, gout, 0, x.shape()) : nullptr;
      gin[0] = g ? *g : zeros_f32(ctx, x.shape());
    }
    zero_grads(in, need, gin, 1, ctx);
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(CastLike, CastLike)
