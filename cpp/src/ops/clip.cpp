// Clip — https://onnx.ai/onnx/operators/onnx__Clip.html (opset 6: `min`/`max` attributes;
// opsets 11, 12, 13: optional scalar inputs 1 (min) and 2 (max)).
// Formula: y = min(max(x, lo), hi). An absent bound is the dtype's lowest/highest value, as in
// the spec and onnxruntime (so +-inf clamp to +-FLT_MAX). NaN passes through. lo > hi gives hi.
// float32, and int64 (opset 12+) for shape arithmetic. ReLU6 is Clip(0, 6).
// Kind: Activation (LRP passes relevance through; the gradient is 1 strictly inside the bounds).
#include <limits>
#include <string>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Clip final : public Op {
 public:
  explicit Clip(const NodeDesc& d) : Op(d) {
    if (d.input_present.empty() || !d.input_present[0]) fail_format("missing input X");
    if (d.opset < 11) {
      attr_min_ = d.attrs->get_float("min", std::numeric_limits<float>::lowest());
      attr_max_ = d.attrs->get_float("max", std::numeric_limits<float>::max());
      use_attrs_ = true;
    } else if (d.input_present.size() > 3) {
      fail_format("expects at most 3 inputs, got " + std::to_string(d.input_present.size()));
    }
  }
  OpKind kind() const override { return OpKind::Activation; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32 && (use_attrs_ || x.dtype != DType::Int64))
      fail_format(std::string("unsupported input dtype ") + dtype_name(x.dtype));
    if (!use_attrs_) {
      for (std::size_t i = 1; i < in.size() && i < 3; ++i) {
        const ValueInfo& b = in[i];
        // Omitted optional inputs arrive with no rank and no value; nothing to check then.
        if (b.dtype != x.dtype && (b.has_rank || b.value))
          fail_format(std::string(i == 1 ? "min" : "max") + " has dtype " + dtype_name(b.dtype) + ", input has " +
                      dtype_name(x.dtype));
        if (b.has_rank && b.fully_known() && shape_numel(b.shape) != 1)
          fail_shape(std::string(i == 1 ? "min" : "max") + " must be a scalar, got shape " + shape_str(b.shape));
      }
    }
    ValueInfo o = x;
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() == DType::Int64 && !use_attrs_) {
      run<int64_t>(x, in, out, ctx);
    } else if (x.dtype() == DType::Float32) {
      run<float>(x, in, out, ctx);
    } else {
      fail_format(std::string("unsupported input dtype ") + dtype_name(x.dtype()));
    }
  }

 private:
  // The value of optional bound input i, or dflt when omitted.
  template <class T>
  T bound(const std::vector<const Tensor*>& in, std::size_t i, T dflt, DType dt) const {
    if (i >= in.size() || in[i] == nullptr) return dflt;
    const Tensor& b = *in[i];
    const char* what = i == 1 ? "min" : "max";
    if (b.dtype() != dt)
      fail_format(std::string(what) + " has dtype " + dtype_name(b.dtype()) + ", input has " + dtype_name(dt));
    if (b.numel() != 1) fail_shape(std::string(what) + " must be a scalar, got shape " + shape_str(b.shape()));
    return static_cast<const T*>(b.raw())[0];
  }

  template <class T>
  void run(const Tensor& x, const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const {
    T lo, hi;
    if (use_attrs_) {
      lo = static_cast<T>(attr_min_);
      hi = static_cast<T>(attr_max_);
    } else {
      lo = bound<T>(in, 1, std::numeric_limits<T>::lowest(), x.dtype());
      hi = bound<T>(in, 2, std::numeric_limits<T>::max(), x.dtype());
    }
    out[0] = ctx.alloc(x.dtype(), x.shape());
    const T* px = static_cast<const T*>(x.raw());
    T* py = static_cast<T*>(out[0].raw());
    // Comparisons written so a NaN input fails both and is returned unchanged.
    kernels::parallel_for(x.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T v = px[i];
        const T c = v < lo ? lo : v;
        py[i] = c > hi ? hi : c;
      }
    });
  }

  bool use_attrs_ = false;
  float attr_min_ = 0.f, attr_max_ = 0.f;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Clip, Clip)
