// Split — https://onnx.ai/onnx/operators/onnx__Split.html (opsets 2 and 11 (negative axis): sizes
// in the `split` attribute; 13: sizes in the optional int64 input 1; 18: or the `num_outputs`
// attribute, one of the two required).
// The input is cut along `axis` (default 0) into consecutive parts, one per output, of the given
// sizes (which must add up to the axis's length); without sizes (before opset 18) into equal
// parts, the length divisible by the number of outputs; with num_outputs = n into parts of
// ceil(len / n), the last one smaller (refused where that leaves it negative, as onnxruntime does).
// float32 or int64. Parts that are contiguous in the input (all dims before the axis are 1) are
// views of it, not copies.
// Kind: Routing (moves values: LRP and gradients give each input slab the relevance / cotangent
// of its output, zero where an output receives nothing).
#include <string>

#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Split final : public Op {
 public:
  explicit Split(const NodeDesc& d) : Op(d), axis_(d.attrs->get_int("axis", 0)), outputs_(d.num_outputs) {
    require_io(*this, d, 1, "input");
    const bool split_input = d.input_present.size() > 1 && d.input_present[1];
    if (d.opset > 0 && d.opset < 13) {
      if (split_input) fail_format("before opset 13 the sizes are the attribute 'split', not an input");
      if (d.attrs->has("split")) {
        sizes_ = d.attrs->get_ints("split", {});
        has_sizes_ = true;
      }
    } else if (split_input) {
      split_input_ = true;
      if (d.opset >= 18 && d.attrs->has("num_outputs"))
        fail_format("give either the split input or the attribute num_outputs, not both");
    } else if (d.opset >= 18) {
      if (!d.attrs->has("num_outputs"))
        fail_format("from opset 18 either the split input or the attribute num_outputs is required");
      num_outputs_ = d.attrs->get_int("num_outputs", 0);
      if (num_outputs_ < 1) fail_format("num_outputs must be positive, got " + std::to_string(num_outputs_));
      if (num_outputs_ != static_cast<int64_t>(outputs_))
        fail_format("num_outputs is " + std::to_string(num_outputs_) + " but the node has " +
                    std::to_string(outputs_) + " outputs");
    }
    if (has_sizes_) check_sizes(sizes_);
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32 && x.dtype != DType::Int64)
      fail_format(std::string("unsupported input dtype ") + dtype_name(x.dtype));
    if (split_input_ && in.size() > 1 && in[1].dtype != DType::Int64)
      fail_format(std::string("the split input must be int64, got ") + dtype_name(in[1].dtype));
    std::vector<ValueInfo> outs(outputs_);
    for (ValueInfo& o : outs) o.dtype = x.dtype;
    if (!x.has_rank) return outs;
    const auto a = static_cast<std::size_t>(normalize_axis(*this, axis_, x.rank()));
    std::vector<int64_t> sizes;
    if (split_input_ && (in.size() < 2 || !in[1].value)) {
      sizes.assign(outputs_, -1);  // sizes known only when the graph runs
    } else {
      const std::vector<int64_t> given = split_input_ ? in[1].value->to_i64_vector() : std::vector<int64_t>{};
      sizes = part_sizes(x.shape[a], split_input_ ? &given : nullptr);
    }
    for (std::size_t k = 0; k < outputs_; ++k) {
      Shape s = x.shape;
      s[a] = sizes[k];
      outs[k] = ValueInfo(x.dtype, s);
    }
    return outs;
  }

  InputUse input_use(std::size_t) const override { return InputUse::Value; }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    Geometry g = geometry(in);
    const std::size_t es = dtype_size(x.dtype());
    int64_t off = 0;
    for (std::size_t k = 0; k < outputs_; ++k) {
      Shape s = x.shape();
      s[g.axis] = g.sizes[k];
      const int64_t chunk = g.sizes[k] * g.inner;
      if (g.outer == 1) {
        out[k] = x.view(s, off);  // contiguous in x: a view
      } else {
        out[k] = ctx.alloc(x.dtype(), s);
        copy_strided(x.raw(), off, {g.row, 1}, out[k].raw(), 0, {chunk, 1}, {g.outer, chunk}, es, ctx.threads());
      }
      off += chunk;
    }
  }

  // The input's gradient: each output's cotangent in its slab (the forward copy run backwards),
  // zeros for outputs that receive none.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    Geometry g = geometry(in);
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    int64_t off = 0;
    for (std::size_t k = 0; k < outputs_; ++k) {
      Shape s = x.shape();
      s[g.axis] = g.sizes[k];
      const int64_t chunk = g.sizes[k] * g.inner;
      const Tensor* gk = checked_cotangent(*this, gout, k, s);
      if (gk) {
        copy_strided(gk->raw(), 0, {chunk, 1}, gin[0].raw(), off, {g.row, 1}, {g.outer, chunk}, 4, ctx.threads());
      } else {
        const Tensor z = zeros_f32(ctx, s);
        copy_strided(z.raw(), 0, {chunk, 1}, gin[0].raw(), off, {g.row, 1}, {g.outer, chunk}, 4, ctx.threads());
      }
      off += chunk;
    }
  }

 private:
  struct Geometry {
    std::size_t axis = 0;
    std::vector<int64_t> sizes;
    int64_t outer = 1, inner = 1, row = 0;  // row: elements of x from the axis on
  };

  Geometry geometry(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    Geometry g;
    g.axis = static_cast<std::size_t>(normalize_axis(*this, axis_, x.rank()));
    std::vector<int64_t> given;
    if (split_input_) {
      const Tensor* s = input_or_null(in, 1);
      if (!s || s->dtype() != DType::Int64) fail_format("the split input must be int64");
      given = s->to_i64_vector();
    }
    g.sizes = part_sizes(x.dim(static_cast<int64_t>(g.axis)), split_input_ ? &given : nullptr);
    for (std::size_t k = 0; k < g.axis; ++k) g.outer *= x.shape()[k];
    for (std::size_t k = g.axis + 1; k < x.shape().size(); ++k) g.inner *= x.shape()[k];
    g.row = x.dim(static_cast<int64_t>(g.axis)) * g.inner;
    return g;
  }

  void check_sizes(const std::vector<int64_t>& sizes) const {
    if (sizes.size() != outputs_)
      fail_format("split has " + std::to_string(sizes.size()) + " sizes " + ints_str(sizes) + " for " +
                  std::to_string(outputs_) + " outputs");
    for (int64_t v : sizes)
      if (v < 0) fail_format("split sizes " + ints_str(sizes) + " must not be negative");
  }

  // The length of each part for an axis of length `len` (< 0: unknown, then so are the parts
  // unless the sizes are given).
  std::vector<int64_t> part_sizes(int64_t len, const std::vector<int64_t>* given) const {
    const auto n = static_cast<int64_t>(outputs_);
    std::vector<int64_t> sizes;
    if (given || has_sizes_) {
      sizes = given ? *given : sizes_;
      check_sizes(sizes);
      int64_t total = 0;
      for (int64_t v : sizes) {
        if (v > kMaxNumel - total) fail_shape("split sizes " + ints_str(sizes) + " add up to more than 2^60");
        total += v;
      }
      if (len >= 0 && total != len)
        fail_shape("split sizes " + ints_str(sizes) + " add up to " + std::to_string(total) + ", not to the length " +
                   std::to_string(len) + " of axis " + std::to_string(axis_));
      return sizes;
    }
    if (len < 0) return std::vector<int64_t>(outputs_, -1);
    if (num_outputs_ > 0) {
      const int64_t chunk = (len + n - 1) / n;
      sizes.assign(outputs_, chunk);
      sizes.back() = len - chunk * (n - 1);
      if (sizes.back() < 0)
        fail_shape("num_outputs " + std::to_string(n) + " is too many for an axis of length " + std::to_string(len) +
                   " (parts of " + std::to_string(chunk) + " leave the last one negative)");
      return sizes;
    }
    if (len % n != 0)
      fail_shape("axis " + std::to_string(axis_) + " of length " + std::to_string(len) +
                 " does not split evenly into " + std::to_string(n) + " outputs");
    return std::vector<int64_t>(outputs_, len / n);
  }

  int64_t axis_;
  std::size_t outputs_;
  std::vector<int64_t> sizes_;
  bool has_sizes_ = false;
  bool split_input_ = false;
  int64_t num_outputs_ = 0;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Split, Split)
