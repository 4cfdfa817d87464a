// Clip — https://onnx.ai/onnx/operators/onnx__Clip.html (opset 6: `min`/`max` attributes;
// opsets 11, 12, 13: optional scalar inputs 1 (min) and 2 (max)).
// Formula: y = min(max(x, lo), hi). An absent bound is the dtype's lowest/highest value, as in
// the spec and onnxruntime (so +-inf clamp to +-FLT_MAX). NaN passes through. lo > hi gives hi.
// float32, and int64 (opset 12+) for shape arithmetic. ReLU6 is Clip(0, 6).
// Kind: Activation (LRP passes relevance through). VJP as torch.clamp: gradient 1 where
// min <= x <= max (bounds included); runtime min/max inputs get the sum of g where they are the output.
#include <limits>
#include <string>

#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Clip final : public Op {
 public:
  explicit Clip(const NodeDesc& d) : Op(d) {
    if (d.input_present.empty() || !d.input_present[0]) fail_format("missing input X");
    if (d.opset < 11) {
      has_attr_min_ = d.attrs->has("min");
      has_attr_max_ = d.attrs->has("max");
      attr_min_ = d.attrs->get_float("min", std::numeric_limits<float>::lowest());
      attr_max_ = d.attrs->get_float("max", std::numeric_limits<float>::max());
      use_attrs_ = true;
    } else if (d.input_present.size() > 3) {
      fail_format("expects at most 3 inputs, got " + std::to_string(d.input_present.size()));
    }
  }
  OpKind kind() const override { return OpKind::Activation; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/false);
    return true;
  }

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

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format(std::string("no gradient for a ") + dtype_name(x.dtype()) + " input");
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    // An absent bound constrains nothing (torch.clamp without it), so it does not zero the
    // gradient at x = -inf or +inf.
    constexpr float kInf = std::numeric_limits<float>::infinity();
    bool has_lo, has_hi;
    float lo, hi;
    if (use_attrs_) {
      has_lo = has_attr_min_;
      has_hi = has_attr_max_;
      lo = attr_min_;
      hi = attr_max_;
    } else {
      has_lo = in.size() > 1 && in[1] != nullptr;
      has_hi = in.size() > 2 && in[2] != nullptr;
      lo = bound<float>(in, 1, 0.f, DType::Float32);
      hi = bound<float>(in, 2, 0.f, DType::Float32);
    }
    if (!has_lo) lo = -kInf;
    if (!has_hi) hi = kInf;
    const float* px = x.f32();
    const float* pg = g.f32();
    if (need[0]) {
      // torch.clamp's convention: gradient 1 where lo <= x <= hi, bounds included; 0 for NaN.
      if (!has_lo && !has_hi) {
        gin[0] = g;  // the identity (NaN included); g is never written to, so it can be shared
      } else {
        gin[0] = ctx.alloc(DType::Float32, x.shape());
        kernels::binary_map(px, pg, gin[0].f32(), x.numel(), ctx.threads(),
                            [lo, hi](float v, float gv) { return v >= lo && v <= hi ? gv : 0.f; });
      }
    }
    // A runtime bound collects the cotangent wherever it is the output (torch's rule: when the
    // bounds cross, hi wins).
    if (need.size() > 1 && need[1]) {
      const bool crossed_ok = !has_hi || lo < hi;
      gin[1] = ctx.alloc(DType::Float32, in[1]->shape());
      gin[1].f32()[0] = crossed_ok ? masked_sum(px, pg, x.numel(), [lo](float v) { return v < lo; }) : 0.f;
    }
    if (need.size() > 2 && need[2]) {
      const bool crossed = has_lo && hi < lo;
      gin[2] = ctx.alloc(DType::Float32, in[2]->shape());
      gin[2].f32()[0] = masked_sum(px, pg, x.numel(), [hi, crossed](float v) { return crossed || v > hi; });
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

  template <class Pred>
  static float masked_sum(const float* x, const float* g, int64_t n, const Pred& pred) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
      if (pred(x[i])) s += g[i];
    return static_cast<float>(s);
  }

  bool use_attrs_ = false;
  bool has_attr_min_ = false, has_attr_max_ = false;
  float attr_min_ = 0.f, attr_max_ = 0.f;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Clip, Clip)
