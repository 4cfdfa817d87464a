// Tile — https://onnx.ai/onnx/operators/onnx__Tile.html (opsets 6, 13; 13 only adds bfloat16).
// y = the input repeated repeats[k] times along each axis k (repeats: int64 1-D, one per axis,
// >= 0): y[i_0, ..., i_r] = x[i_0 mod d_0, ..., i_r mod d_r], y's dims d_k * repeats[k]. float32 or
// int64.
// VJP: dx = dy summed over the copies (dy viewed as [repeats_0, d_0, repeats_1, d_1, ...] and
// reduced over the repeat axes).
// Kind: Routing (copies values: LRP and gradients sum what reaches the copies of each entry).
#include <string>

#include "kernels/broadcast.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Tile final : public Op {
 public:
  explicit Tile(const NodeDesc& d) : Op(d) { require_io(*this, d, 2, "input, repeats"); }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& r = in.at(1);
    if (x.dtype != DType::Float32 && x.dtype != DType::Int64)
      fail_format(std::string("unsupported input dtype ") + dtype_name(x.dtype));
    if (r.dtype != DType::Int64) fail_format(std::string("repeats must be int64, got ") + dtype_name(r.dtype));
    if (r.has_rank && r.rank() != 1) fail_shape("repeats must be 1-D, got shape " + shape_str(r.shape));
    ValueInfo o;
    o.dtype = x.dtype;
    if (!x.has_rank) return {o};
    if (!r.value) return {ValueInfo(x.dtype, Shape(x.shape.size(), -1))};
    const std::vector<int64_t> reps = repeats(*r.value, x.rank());
    Shape s = x.shape;
    for (std::size_t k = 0; k < s.size(); ++k)
      s[k] = s[k] < 0 ? (reps[k] == 0 ? 0 : -1) : checked_numel_mul(s[k], reps[k]);
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const std::vector<int64_t> reps = repeats(*in[1], x.rank());
    Shape ys = x.shape();
    for (std::size_t k = 0; k < ys.size(); ++k) ys[k] = checked_numel_mul(ys[k], reps[k]);
    out[0] = ctx.alloc(x.dtype(), ys);
    // y viewed as [r_0, d_0, r_1, d_1, ...]: x's strides on the d axes, 0 on the repeat axes.
    Shape shape;
    std::vector<int64_t> ss;
    const std::vector<int64_t> xs = strides_of(x.shape());
    for (std::size_t k = 0; k < ys.size(); ++k) {
      shape.push_back(reps[k]);
      ss.push_back(0);
      shape.push_back(x.shape()[k]);
      ss.push_back(xs[k]);
    }
    copy_strided(x.raw(), 0, ss, out[0].raw(), 0, strides_of(shape), shape, dtype_size(x.dtype()), ctx.threads());
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format("no gradient for int64 inputs");
    const std::vector<int64_t> reps = repeats(*in[1], x.rank());
    Shape ys = x.shape(), full, target;
    for (std::size_t k = 0; k < ys.size(); ++k) {
      ys[k] *= reps[k];
      full.push_back(reps[k]);
      full.push_back(x.shape()[k]);
      target.push_back(1);
      target.push_back(x.shape()[k]);
    }
    const Tensor* g = checked_cotangent(*this, gout, 0, ys);
    if (!g || g->numel() == 0) {
      gin[0] = zeros_f32(ctx, x.shape());
      return;
    }
    if (g->numel() == x.numel()) {  // every repeat is 1
      gin[0] = g->reshaped(x.shape());
      return;
    }
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    if (!kernels::reduce_to_shape(g->f32(), full, target, gin[0].f32(), ctx.threads()))
      fail_shape("internal: cannot reduce " + shape_str(full) + " to " + shape_str(target));
  }

 private:
  std::vector<int64_t> repeats(const Tensor& r, int64_t rank) const {
    if (r.dtype() != DType::Int64) fail_format(std::string("repeats must be int64, got ") + dtype_name(r.dtype()));
    std::vector<int64_t> v = r.to_i64_vector();
    if (r.rank() != 1 || static_cast<int64_t>(v.size()) != rank)
      fail_shape("repeats " + shape_str(r.shape()) + " must be 1-D with one entry per input axis (" +
                 std::to_string(rank) + ")");
    for (int64_t k : v)
      if (k < 0) fail_shape("repeats " + ints_str(v) + " must not be negative");
    return v;
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Tile, Tile)
