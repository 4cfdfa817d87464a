// Transpose — https://onnx.ai/onnx/operators/onnx__Transpose.html (opset 1, 13, 21).
// y[i_perm[0], ..., i_perm[r-1]] = x[i_0, ..., i_{r-1}], i.e. y.shape[k] = x.shape[perm[k]];
// perm defaults to the reversed axes.
// Kind: Routing (relevance and gradients go back through the inverse permutation).
// tf2onnx wraps every Conv in NHWC<->NCHW transposes ([0,3,1,2], [0,2,3,1]); the strided copy
// reduces those to batched 2-D transposes and copies them through cache tiles.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Transpose final : public Op {
 public:
  explicit Transpose(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 1, "data");
    has_perm_ = d.attrs->has("perm");
    if (has_perm_) perm_ = d.attrs->get_ints("perm", {});
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (!x.has_rank) {
      ValueInfo o;
      o.dtype = x.dtype;
      if (has_perm_) o = ValueInfo(x.dtype, Shape(perm_.size(), -1));
      return {o};
    }
    std::vector<int64_t> p = perm_for(x.rank());
    Shape s(p.size());
    for (std::size_t k = 0; k < p.size(); ++k) s[k] = x.shape[static_cast<std::size_t>(p[k])];
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    std::vector<int64_t> p = perm_for(x.rank());
    bool identity = true;
    Shape s(p.size());
    std::vector<int64_t> xs = strides_of(x.shape()), ss(p.size());
    for (std::size_t k = 0; k < p.size(); ++k) {
      s[k] = x.dim(p[k]);
      ss[k] = xs[static_cast<std::size_t>(p[k])];
      if (p[k] != static_cast<int64_t>(k)) identity = false;
    }
    if (identity) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(x.dtype(), s);
    copy_strided(x.raw(), 0, ss, out[0].raw(), 0, strides_of(s), s, dtype_size(x.dtype()), ctx.threads());
  }

  // dx = dy transposed by the inverse permutation: input axis perm[k] reads the cotangent's axis k.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    std::vector<int64_t> p = perm_for(x.rank());
    Shape s(p.size());
    bool identity = true;
    for (std::size_t k = 0; k < p.size(); ++k) {
      s[k] = x.dim(p[k]);
      if (p[k] != static_cast<int64_t>(k)) identity = false;
    }
    const Tensor* g = checked_cotangent(*this, gout, 0, s);
    if (!g) {
      gin[0] = zeros_f32(ctx, x.shape());
      return;
    }
    if (identity) {
      gin[0] = *g;
      return;
    }
    const std::vector<int64_t> gs = strides_of(s);
    std::vector<int64_t> src(p.size());
    for (std::size_t k = 0; k < p.size(); ++k) src[static_cast<std::size_t>(p[k])] = gs[k];
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    copy_strided(g->raw(), 0, src, gin[0].raw(), 0, strides_of(x.shape()), x.shape(), 4, ctx.threads());
  }

 private:
  std::vector<int64_t> perm_for(int64_t rank) const {
    if (!has_perm_) {
      std::vector<int64_t> p(static_cast<std::size_t>(rank));
      for (int64_t k = 0; k < rank; ++k) p[static_cast<std::size_t>(k)] = rank - 1 - k;
      return p;
    }
    bool ok = static_cast<int64_t>(perm_.size()) == rank;
    std::vector<bool> seen(static_cast<std::size_t>(rank), false);
    for (int64_t a : perm_) {
      if (!ok) break;
      if (a < 0 || a >= rank || seen[static_cast<std::size_t>(a)])
        ok = false;
      else
        seen[static_cast<std::size_t>(a)] = true;
    }
    if (!ok)
      fail_shape("perm " + ints_str(perm_) + " is not a permutation of the " + std::to_string(rank) +
                 " axes of the input");
    return perm_;
  }

  bool has_perm_ = false;
  std::vector<int64_t> perm_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Transpose, Transpose)
