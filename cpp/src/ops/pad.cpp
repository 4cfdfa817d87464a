// Pad — https://onnx.ai/onnx/operators/onnx__Pad.html (opset 1 (`paddings`), 2: attributes `pads`,
// `value`; 11, 13: inputs pads, constant_value; 18, 19, 21: optional axes input).
// y = x surrounded by pads[k] elements before and pads[k + n] after on axis k (n = len(axes) or
// rank), filled with constant_value; negative pads crop. Only mode "constant" is supported:
// "reflect", "edge" and "wrap" are refused at load (ModelFormatError naming the mode).
// Kind: Routing (relevance and gradients are cropped back to the input region; the padding
// constant receives none).
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Pad final : public Op {
 public:
  explicit Pad(const NodeDesc& d) : Op(d) {
    const std::string mode = d.attrs->get_string("mode", "constant");
    if (mode != "constant")
      fail_format("Pad mode '" + mode + "' is not supported (only mode 'constant' is)");
    require_io(*this, d, d.opset < 11 ? 1 : 2, "data, pads");
    auto present = [&](std::size_t i) { return i < d.input_present.size() && d.input_present[i]; };
    if (d.opset < 11) {
      attr_pads_ = d.attrs->has("pads") ? d.attrs->require_ints("pads") : d.attrs->require_ints("paddings");
      attr_value_ = d.attrs->get_float("value", 0.f);
    } else {
      pads_input_ = true;
      value_input_ = present(2);
      axes_input_ = d.opset >= 18 && present(3);
    }
  }
  OpKind kind() const override { return OpKind::Routing; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    ValueInfo unknown;
    unknown.dtype = x.dtype;
    if (!x.has_rank) return {unknown};
    std::vector<int64_t> pads = attr_pads_, axes;
    if (pads_input_ && !known_ints(in, 1, pads)) return {ValueInfo(x.dtype, Shape(x.shape.size(), -1))};
    if (axes_input_ && !known_ints(in, 3, axes)) return {ValueInfo(x.dtype, Shape(x.shape.size(), -1))};
    std::vector<int64_t> b, e;
    per_axis(x.rank(), pads, axes_input_, axes, b, e);
    Shape s = x.shape;
    for (std::size_t k = 0; k < s.size(); ++k) {
      if (s[k] < 0) continue;
      s[k] += b[k] + e[k];
      if (s[k] < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " + shape_str(x.shape) +
                   " holds");
    }
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const std::vector<int64_t> pads = pads_input_ ? in[1]->to_i64_vector() : attr_pads_;
    std::vector<int64_t> axes;
    if (axes_input_) axes = in[3]->to_i64_vector();
    std::vector<int64_t> b, e;
    per_axis(x.rank(), pads, axes_input_, axes, b, e);
    const std::size_t r = x.shape().size();
    Shape s(r), inner(r);  // output shape; shape of the part of x that lands in the output
    int64_t s_off = 0, d_off = 0;
    const std::vector<int64_t> xs = strides_of(x.shape());
    for (std::size_t k = 0; k < r; ++k) {
      s[k] = x.shape()[k] + b[k] + e[k];
      if (s[k] < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " +
                   shape_str(x.shape()) + " holds");
    }
    const std::vector<int64_t> ys = strides_of(s);
    for (std::size_t k = 0; k < r; ++k) {
      // Negative pads start reading inside x; positive ones start writing inside y.
      const int64_t lo = std::max<int64_t>(0, -b[k]), hi = std::max<int64_t>(0, -e[k]);
      inner[k] = std::max<int64_t>(0, x.shape()[k] - lo - hi);
      s_off += lo * xs[k];
      d_off += std::max<int64_t>(0, b[k]) * ys[k];
    }
    out[0] = ctx.alloc(x.dtype(), s);
    Tensor& y = out[0];
    if (y.numel() != known_numel(inner)) fill(y, in);
    copy_strided(x.raw(), s_off, xs, y.raw(), d_off, ys, inner, dtype_size(x.dtype()), ctx.threads());
  }

 private:
  // Splits pads into begin/end per axis of a rank-r input; pads list [begins..., ends...] over
  // `axes` (opset 18) or over all axes.
  void per_axis(int64_t r, const std::vector<int64_t>& pads, bool use_axes, const std::vector<int64_t>& axes,
                std::vector<int64_t>& b, std::vector<int64_t>& e) const {
    b.assign(static_cast<std::size_t>(r), 0);
    e.assign(static_cast<std::size_t>(r), 0);
    std::vector<int64_t> ax;
    if (use_axes) {
      ax = normalize_axes(*this, axes, r);
    } else {
      for (int64_t k = 0; k < r; ++k) ax.push_back(k);
    }
    if (pads.size() != 2 * ax.size())
      fail_shape("pads " + ints_str(pads) + " should hold " + std::to_string(2 * ax.size()) +
                 " values (begin and end for " +
                 (use_axes ? "each of the axes " + ints_str(axes) : "each of the " + std::to_string(r) + " axes") +
                 ")");
    for (std::size_t i = 0; i < ax.size(); ++i) {
      b[static_cast<std::size_t>(ax[i])] = pads[i];
      e[static_cast<std::size_t>(ax[i])] = pads[i + ax.size()];
    }
  }

  void fill(Tensor& y, const std::vector<const Tensor*>& in) const {
    const Tensor* v = value_input_ ? input_or_null(in, 2) : nullptr;
    if (v && v->numel() != 1)
      fail_shape("constant_value should hold one value, not " + std::to_string(v->numel()));
    const int64_t n = y.numel();
    if (y.dtype() == DType::Int64) {
      const int64_t c = v ? v->to_i64_vector()[0] : static_cast<int64_t>(attr_value_);
      int64_t* p = y.i64();
      for (int64_t i = 0; i < n; ++i) p[i] = c;
    } else {
      const float c = v ? (v->dtype() == DType::Float32 ? v->f32()[0] : static_cast<float>(v->i64()[0])) : attr_value_;
      float* p = y.f32();
      for (int64_t i = 0; i < n; ++i) p[i] = c;
    }
  }

  std::vector<int64_t> attr_pads_;
  float attr_value_ = 0.f;
  bool pads_input_ = false, value_input_ = false, axes_input_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Pad, Pad)
