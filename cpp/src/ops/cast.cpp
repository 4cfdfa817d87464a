// Cast — https://onnx.ai/onnx/operators/onnx__Cast.html (opset 1 (`to` as a string), 6, 9, 13,
// 19, 21). y = x converted to the type `to`.
// The IR has two dtypes, so targets map onto them: floating types (float, double, float16,
// bfloat16, float8*, float4) -> float32; integer types and bool -> int64. float -> int truncates
// toward zero (NaN and out-of-range values give INT64_MIN, as x86 does); a bool target gives
// 0/1 (x != 0). Narrowing (to int8, float16, ...) is not emulated: the values stay exact in the
// wider type. string and complex targets are refused at load.
// Kind: Routing (for float -> float32 a pure pass-through of relevance and gradients; the int64
// results only feed shape arithmetic).
#include <cctype>
#include <cstdint>
#include <string>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Cast final : public Op {
 public:
  explicit Cast(const NodeDesc& d) : Op(d) {
    require_io(*this, d, 1, "input");
    const AttrMap& a = *d.attrs;
    int64_t to = 0;
    if (a.has("to") && a.all().at("to").type == Attribute::Type::String)
      to = from_name(a.get_string("to", ""));  // opset 1 spelled the type
    else
      to = a.require_int("to");
    switch (to) {
      case 1: case 10: case 11: case 16: case 17: case 18: case 19: case 20: case 23:
        to_ = DType::Float32;
        break;
      case 2: case 3: case 4: case 5: case 6: case 7: case 12: case 13: case 21: case 22:
        to_ = DType::Int64;
        break;
      case 9:
        to_ = DType::Int64;
        to_bool_ = true;
        break;
      default:
        fail_format("cast to ONNX type " + std::to_string(to) +
                    " is not supported (only numeric and bool types; string and complex are not)");
    }
  }
  OpKind kind() const override { return OpKind::Routing; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    o.value = nullptr;
    o.dtype = to_;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() == to_ && !to_bool_) {
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(to_, x.shape());
    const int64_t n = x.numel();
    if (to_ == DType::Float32) {  // from int64
      const int64_t* p = x.i64();
      float* q = out[0].f32();
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) q[i] = static_cast<float>(p[i]);
      });
    } else if (x.dtype() == DType::Int64) {  // int64 -> bool
      const int64_t* p = x.i64();
      int64_t* q = out[0].i64();
      for (int64_t i = 0; i < n; ++i) q[i] = p[i] != 0 ? 1 : 0;
    } else {
      const float* p = x.f32();
      int64_t* q = out[0].i64();
      const bool to_bool = to_bool_;
      kernels::parallel_for(n, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const float v = p[i];
          if (to_bool)
            q[i] = v != 0.f ? 1 : 0;  // NaN is true, as in C and numpy
          else
            // 2^63 is exactly representable; anything at or above it (and NaN) would be UB to convert.
            q[i] = (v >= -9223372036854775808.f && v < 9223372036854775808.f) ? static_cast<int64_t>(v) : INT64_MIN;
        }
      });
    }
  }

  // float -> float32 is the identity (narrowing is not emulated, so not differentiated either);
  // an integer or bool result is piecewise constant, so its gradient is zero.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    const Tensor* g = to_ == DType::Float32 ? checked_cotangent(*this, gout, 0, x.shape()) : nullptr;
    gin[0] = g ? *g : zeros_f32(ctx, x.shape());
  }

 private:
  int64_t from_name(std::string s) const {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    static const char* names[] = {"", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING",
                                  "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128",
                                  "BFLOAT16"};
    for (int64_t k = 1; k < static_cast<int64_t>(sizeof(names) / sizeof(names[0])); ++k)
      if (s == names[k]) return k;
    fail_format("unknown cast target type '" + s + "'");
  }

  DType to_ = DType::Float32;
  bool to_bool_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Cast, Cast)
