// Expand — https://onnx.ai/onnx/operators/onnx__Expand.html (opsets 8, 13).
// y = x broadcast (numpy rules, both ways) with the int64 `shape` input: dims of 1 in `shape`
// keep x's dim. The dynamo exporter writes Conv biases and BatchNorm parameters through it; those
// fold to constants at load. Kind: Routing (copies values, no arithmetic).
#include <string>

#include <algorithm>
#include <cstring>

#include "kernels/broadcast.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

/// Copies x (shape xs, right-aligned) into y (shape ys) with broadcasting: one odometer over
/// y's outer dims, the innermost dim copied as a run or filled from one value.
template <class T>
void expand_copy(const T* x, const Shape& xs, T* y, const Shape& ys) {
  const std::size_t r = ys.size();
  std::vector<int64_t> xstride(r, 0);
  int64_t s = 1;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const std::size_t d = r - 1 - k;
    const int64_t dim = xs[xs.size() - 1 - k];
    xstride[d] = dim == 1 ? 0 : s;
    s *= dim;
  }
  const int64_t inner = r ? ys[r - 1] : 1;
  const int64_t outer = inner ? shape_numel(ys) / inner : 0;
  const bool run = r && xstride[r - 1] != 0;
  std::vector<int64_t> idx(r ? r - 1 : 0, 0);
  int64_t off = 0;
  for (int64_t o = 0; o < outer; ++o) {
    T* row = y + o * inner;
    if (run) std::memcpy(row, x + off, static_cast<std::size_t>(inner) * sizeof(T));
    else std::fill(row, row + inner, x[off]);
    for (std::size_t d = idx.size(); d-- > 0;) {
      off += xstride[d];
      if (++idx[d] < ys[d]) break;
      off -= xstride[d] * ys[d];
      idx[d] = 0;
    }
  }
}

class Expand final : public Op {
 public:
  explicit Expand(const NodeDesc& d) : Op(d) {}
  OpKind kind() const override { return OpKind::Routing; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& s = in.at(1);
    if (s.dtype != DType::Int64) fail_format("the shape input must be int64, got " + std::string(dtype_name(s.dtype)));
    ValueInfo o;
    o.dtype = x.dtype;
    if (s.value) {
      Shape target = s.value->to_i64_vector();
      for (int64_t d : target)
        if (d < 0) fail_shape("shape " + shape_str(target) + " has a negative dimension");
      if (!x.has_rank) return {o};
      Shape y;
      if (!kernels::broadcast_shapes(x.shape, target, y))
        fail_shape(kernels::broadcast_error(x.shape, target));
      return {ValueInfo(x.dtype, y)};
    }
    if (x.has_rank && s.has_rank && s.rank() == 1 && s.shape[0] >= 0)
      o = ValueInfo(x.dtype, Shape(static_cast<std::size_t>(std::max<int64_t>(s.shape[0], x.rank())), -1));
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    Shape target = in[1]->to_i64_vector();
    for (int64_t d : target)
      if (d < 0) fail_shape("shape " + shape_str(target) + " has a negative dimension");
    Shape y;
    if (!kernels::broadcast_shapes(x.shape(), target, y)) fail_shape(kernels::broadcast_error(x.shape(), target));
    if (y == x.shape()) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(x.dtype(), y);
    if (x.dtype() == DType::Int64) expand_copy(x.i64(), x.shape(), out[0].i64(), y);
    else expand_copy(x.f32(), x.shape(), out[0].f32(), y);
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Expand, Expand)
