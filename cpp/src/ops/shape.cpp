// Shape — https://onnx.ai/onnx/operators/onnx__Shape.html (opset 1, 13, 15 (start/end), 19, 21).
// y = int64 1-D tensor of x's dims [start, end) (negative start/end count from the end, both
// clamped to [0, rank]). Kind: ShapeOf (integer metadata: no relevance or gradient flows).
// Folded at load when x is constant; otherwise runs on every call (it reads no data).
#include <algorithm>

#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class ShapeOp final : public Op {
 public:
  explicit ShapeOp(const NodeDesc& d)
      : Op(d), start_(d.attrs->get_int("start", 0)), end_(d.attrs->get_int("end", INT64_MAX)) {
    require_io(*this, d, 1, "data");
  }
  OpKind kind() const override { return OpKind::ShapeOf; }
  InputUse input_use(std::size_t) const override { return InputUse::Shape; }  // folds when the shape is known

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (!x.has_rank) return {ValueInfo(DType::Int64, {-1})};
    int64_t b, e;
    range(x.rank(), b, e);
    return {ValueInfo(DType::Int64, {e - b})};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext&) const override {
    const Tensor& x = *in[0];
    int64_t b, e;
    range(x.rank(), b, e);
    out[0] = Tensor::from_i64(std::vector<int64_t>(x.shape().begin() + b, x.shape().begin() + e));
  }

 private:
  void range(int64_t r, int64_t& b, int64_t& e) const {
    auto clamp = [r](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + r : v, 0, r); };
    b = clamp(start_);
    e = std::max(b, clamp(end_));
  }
  int64_t start_, end_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Shape, ShapeOp)
