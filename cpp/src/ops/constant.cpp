// Constant — https://onnx.ai/onnx/operators/onnx__Constant.html (opset 1, 9, 11, 12, 13, 19, 21).
// y = the tensor given by exactly one attribute: value (tensor), value_float(s), value_int(s)
// (opset 12+). sparse_value and value_string(s) are refused (no sparse or string tensors in the
// IR). Kind: Constant (no relevance flows into it); folded into an initializer at load.
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Constant final : public Op {
 public:
  explicit Constant(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 0, "");
    const AttrMap& a = *d.attrs;
    for (const char* n : {"sparse_value", "value_string", "value_strings"})
      if (a.has(n))
        fail_format(std::string("attribute '") + n + "' is not supported (only numeric dense constants are)");
    int given = 0;
    for (const char* n : {"value", "value_float", "value_floats", "value_int", "value_ints"}) given += a.has(n) ? 1 : 0;
    if (given != 1)
      fail_format("needs exactly one of the attributes value, value_float, value_floats, value_int, value_ints (got " +
                  std::to_string(given) + ")");
    if (a.has("value")) {
      value_ = a.get_tensor("value");
    } else if (a.has("value_float")) {
      value_ = Tensor::scalar_f32(a.get_float("value_float", 0.f));
    } else if (a.has("value_floats")) {
      const std::vector<float> v = a.get_floats("value_floats", {});
      value_ = Tensor(DType::Float32, {static_cast<int64_t>(v.size())});
      for (std::size_t i = 0; i < v.size(); ++i) value_.f32()[i] = v[i];
    } else if (a.has("value_int")) {
      value_ = Tensor(DType::Int64, {});
      value_.i64()[0] = a.get_int("value_int", 0);
    } else {
      value_ = Tensor::from_i64(a.get_ints("value_ints", {}));
    }
  }
  OpKind kind() const override { return OpKind::Constant; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>&) const override {
    return {ValueInfo(value_.dtype(), value_.shape())};
  }

  // The output aliases the attribute's tensor: nothing writes into op outputs in place.
  void forward(const std::vector<const Tensor*>&, std::vector<Tensor>& out, ExecContext&) const override {
    out[0] = value_;
  }

 private:
  Tensor value_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Constant, Constant)
