// Reshape — https://onnx.ai/onnx/operators/onnx__Reshape.html (opset 1 attribute `shape`; 5, 13,
// 14 (allowzero), 19, 21: `shape` input).
// y = x viewed with the requested shape: 0 copies the input dim at that position (unless
// allowzero=1, where 0 means 0), one -1 is inferred from the element count.
// Kind: Routing (relevance and gradients are reshaped back unchanged). Aliases the input.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Reshape final : public Op {
 public:
  explicit Reshape(const NodeDesc& d) : Op(d), allowzero_(d.attrs->get_int("allowzero", 0) != 0) {
    if (d.opset < 5) {
      require_io(*this, d, 1, "data");
      attr_shape_ = d.attrs->require_ints("shape");
      use_attr_ = true;
    } else {
      require_io(*this, d, 2, "data, shape");
    }
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    std::vector<int64_t> req;
    if (use_attr_) {
      req = attr_shape_;
    } else if (!known_ints(in, 1, req)) {
      const ValueInfo& s = in.at(1);
      if (s.has_rank && s.rank() == 1 && s.shape[0] >= 0)
        return {ValueInfo(x.dtype, Shape(static_cast<std::size_t>(s.shape[0]), -1))};
      ValueInfo o;
      o.dtype = x.dtype;
      return {o};
    }
    return {ValueInfo(x.dtype, resolve(x.has_rank ? x.shape : Shape(), x.has_rank, req))};
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
    return resolve(in[0]->shape(), true, use_attr_ ? attr_shape_ : in[1]->to_i64_vector());
  }

  // The output shape for input dims `in` (entries < 0 unknown); with `ranked` false nothing is
  // known of the input. Unknown output dims are -1. Throws when the shapes can never match.
  // The -1 dim is solved with the copied dims (0 entries) cancelled on both sides: they are the
  // same on input and output, so [0, -1] on (?, 512, 1, 1) infers (?, 512), and on a batch of 0
  // samples gives (0, 512) instead of an ambiguous 0 / 0.
  Shape resolve(const Shape& in, bool ranked, const std::vector<int64_t>& req) const {
    auto bad = [&](const std::string& why) {
      fail_shape("cannot reshape " + (ranked ? shape_str(in) : std::string("a tensor")) + " to " + ints_str(req) +
                 ": " + why);
    };
    Shape out(req.size());
    std::vector<bool> copied(in.size(), false);
    int infer_at = -1;
    bool unranked_copy = false;  // a 0 copies a dim of an input of unknown rank
    int64_t known = 1;           // product of the explicit output dims
    for (std::size_t i = 0; i < req.size(); ++i) {
      int64_t v = req[i];
      if (v == -1) {
        if (infer_at >= 0) bad("more than one -1");
        if (allowzero_ && std::find(req.begin(), req.end(), 0) != req.end())
          bad("-1 together with 0 while allowzero=1");
        infer_at = static_cast<int>(i);
        out[i] = -1;
        continue;
      }
      if (v < -1) bad("negative dimension " + std::to_string(v));
      if (v == 0 && !allowzero_) {
        if (!ranked) {
          out[i] = -1;
          unranked_copy = true;
          continue;
        }
        if (i >= in.size())
          bad("0 at position " + std::to_string(i) + " copies a dimension the input does not have");
        out[i] = in[i];
        copied[i] = true;
        continue;
      }
      out[i] = v;
      known = checked_numel_mul(known, v);
    }
    if (!ranked) return out;
    if (infer_at >= 0) {
      Shape rest;
      for (std::size_t k = 0; k < in.size(); ++k)
        if (!copied[k]) rest.push_back(in[k]);
      int64_t n = known_numel(rest);
      if (n >= 0 && !unranked_copy) {
        if (known == 0) bad("-1 is ambiguous when the other dims have no elements");
        if (n % known != 0)
          bad(std::to_string(n) + " elements" + (rest.size() < in.size() ? " (besides the dims 0 copies)" : "") +
              " do not divide into dims of " + std::to_string(known) + " elements");
        out[static_cast<std::size_t>(infer_at)] = n / known;
      }
    } else {
      int64_t n = known_numel(in), m = known_numel(out);
      if (n >= 0 && m >= 0 && n != m)
        bad(std::to_string(n) + " elements do not fit " + std::to_string(m));
    }
    return out;
  }

  bool allowzero_;
  bool use_attr_ = false;
  std::vector<int64_t> attr_shape_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Reshape, Reshape)
