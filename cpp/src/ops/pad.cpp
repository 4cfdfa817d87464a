// Pad — https://onnx.ai/onnx/operators/onnx__Pad.html (opset 1 (`paddings`), 2: attributes `pads`,
// `value`, `mode`; 11, 13: inputs pads, constant_value; 18: optional axes input; 19, 21: mode "wrap").
// y = x surrounded by pads[k] elements before and pads[k + n] after on axis k (n = len(axes) or
// rank); negative pads crop. Output index i on axis k reads x at j = i - pads[k], or where j falls
// outside [0, n_k): mode "constant": constant_value; "edge": x at clamp(j, 0, n_k - 1); "reflect":
// x mirrored about its first and last entries (period 2 (n_k - 1), as numpy.pad's 'reflect');
// "wrap" (opset >= 19): x at j mod n_k. Edge/reflect/wrap refuse to pad an empty axis.
// Kind: Routing (relevance and gradients go back to the entries they were copied from: cropped to
// the input region in constant mode, zero where negative pads cut x off, a padding constant
// computed from the input getting the sum of the rest; summed over the copies in the other modes).
#include "ops/axis_map.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Pad final : public Op {
 public:
  explicit Pad(const NodeDesc& d) : Op(d) {
    const std::string mode = d.attrs->get_string("mode", "constant");
    if (mode == "constant") {
      mode_ = Mode::Constant;
    } else if (mode == "edge") {
      mode_ = Mode::Edge;
    } else if (mode == "reflect") {
      mode_ = Mode::Reflect;
    } else if (mode == "wrap" && d.opset >= 19) {
      mode_ = Mode::Wrap;
    } else {
      fail_format("Pad mode '" + mode + "' is not supported (constant, reflect and edge are" +
                  (d.opset >= 19 ? ", and wrap" : "; wrap from opset 19 on") + ")");
    }
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
      if (mode_ != Mode::Constant && x.shape[k] == 0 && s[k] > 0)
        fail_shape("cannot pad the empty axis " + std::to_string(k) + " of " + shape_str(x.shape) + " in mode " +
                   mode_name());
      if (s[k] < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " + shape_str(x.shape) +
                   " holds");
    }
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (mode_ != Mode::Constant) {
      Shape ys;
      if (empty_output(in, &ys)) {
        out[0] = ctx.alloc(x.dtype(), ys);
        return;
      }
      out[0] = apply_axis_maps(x, maps(in), ctx);
      return;
    }
    const Geometry gm = geometry(in);
    out[0] = ctx.alloc(x.dtype(), gm.y);
    Tensor& y = out[0];
    if (y.numel() != known_numel(gm.inner)) fill(y, in);
    copy_strided(x.raw(), gm.x_off, gm.xs, y.raw(), gm.y_off, gm.ys, gm.inner, dtype_size(x.dtype()), ctx.threads());
  }

  // dx is dy cropped to where x landed (and zero where negative pads cut x off); the padding
  // constant, when it depends on the input, collects the rest of dy.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    auto needed = [&](std::size_t i) { return i < need.size() && i < in.size() && need[i] && in[i]; };
    const bool need_value = value_input_ && needed(2);
    if (!needed(0) && !need_value) return;
    const Tensor& x = *in[0];
    if (mode_ != Mode::Constant) {
      Shape ys0;
      if (empty_output(in, &ys0)) {
        zero_grads(in, need, gin, 0, ctx);  // nothing flows back from an empty output
        return;
      }
      const std::vector<AxisMap> mp = maps(in);
      Shape ys = x.shape();
      for (const AxisMap& m : mp) ys[static_cast<std::size_t>(m.axis)] = m.out_len();
      const Tensor* g = checked_cotangent(*this, gout, 0, ys);
      if (!g) {
        zero_grads(in, need, gin, 0, ctx);
        return;
      }
      if (needed(0)) gin[0] = adjoint_axis_maps(*g, x.shape(), mp, ctx);
      if (need_value) gin[2] = Tensor::zeros(DType::Float32, in[2]->shape());  // the constant is unused
      return;
    }
    const Geometry gm = geometry(in);
    const Tensor* g = checked_cotangent(*this, gout, 0, gm.y);
    if (!g) {
      zero_grads(in, need, gin, 0, ctx);
      return;
    }
    Tensor dx;
    if (gm.inner == x.shape()) {
      dx = ctx.alloc(DType::Float32, x.shape());
    } else {
      dx = zeros_f32(ctx, x.shape());
    }
    copy_strided(g->raw(), gm.y_off, gm.ys, dx.raw(), gm.x_off, gm.xs, gm.inner, 4, ctx.threads());
    if (need_value) {
      // Every element of dy not copied into dx is a padding element; dx holds the copied ones.
      double total = 0.0, copied = 0.0;
      const float* pg = g->f32();
      const float* pd = dx.f32();
      for (int64_t i = 0; i < g->numel(); ++i) total += pg[i];
      for (int64_t i = 0; i < dx.numel(); ++i) copied += pd[i];
      gin[2] = ctx.alloc(DType::Float32, in[2]->shape());
      if (gin[2].numel() != 1)
        fail_shape("constant_value should hold one value, not " + std::to_string(gin[2].numel()));
      gin[2].f32()[0] = static_cast<float>(total - copied);
    }
    if (needed(0)) gin[0] = dx;
  }

 private:
  // Where x lands in y: y's shape, the part of x that is copied (`inner`), and the offsets and
  // strides of that part in x and in y.
  struct Geometry {
    Shape y, inner;
    std::vector<int64_t> xs, ys;
    int64_t x_off = 0, y_off = 0;
  };

  // The pads in effect (attribute or input) and, per axis of x, what they add before and after.
  void begin_end(const std::vector<const Tensor*>& in, std::vector<int64_t>& pads, std::vector<int64_t>& b,
                 std::vector<int64_t>& e) const {
    pads = pads_input_ ? in[1]->to_i64_vector() : attr_pads_;
    std::vector<int64_t> axes;
    if (axes_input_) axes = in[3]->to_i64_vector();
    per_axis(in[0]->rank(), pads, axes_input_, axes, b, e);
  }

  Geometry geometry(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    std::vector<int64_t> pads, b, e;
    begin_end(in, pads, b, e);
    const std::size_t r = x.shape().size();
    Geometry gm;
    gm.y.resize(r);
    gm.inner.resize(r);
    gm.xs = strides_of(x.shape());
    for (std::size_t k = 0; k < r; ++k) {
      gm.y[k] = x.shape()[k] + b[k] + e[k];
      if (gm.y[k] < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " +
                   shape_str(x.shape()) + " holds");
    }
    check_tensor_size(x.dtype(), gm.y);  // before its strides are multiplied out
    gm.ys = strides_of(gm.y);
    for (std::size_t k = 0; k < r; ++k) {
      // Negative pads start reading inside x; positive ones start writing inside y.
      const int64_t lo = std::max<int64_t>(0, -b[k]), hi = std::max<int64_t>(0, -e[k]);
      gm.inner[k] = std::max<int64_t>(0, x.shape()[k] - lo - hi);
      gm.x_off += lo * gm.xs[k];
      gm.y_off += std::max<int64_t>(0, b[k]) * gm.ys[k];
    }
    return gm;
  }

  // Edge / reflect / wrap: whether the output is empty (its shape in *ys). Then nothing is
  // copied, and no index map is built for its other axes, however long (callers return before
  // maps()).
  bool empty_output(const std::vector<const Tensor*>& in, Shape* ys) const {
    const Tensor& x = *in[0];
    std::vector<int64_t> pads, b, e;
    begin_end(in, pads, b, e);
    *ys = x.shape();
    for (std::size_t k = 0; k < ys->size(); ++k) {
      const int64_t n = (*ys)[k], len = n + b[k] + e[k];
      if (len < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " +
                   shape_str(x.shape()) + " holds");
      if (n == 0 && len > 0)
        fail_shape("cannot pad the empty axis " + std::to_string(k) + " of " + shape_str(x.shape()) + " in mode " +
                   mode_name());
      (*ys)[k] = len;
    }
    return shape_numel(*ys) == 0;
  }

  // Edge / reflect / wrap: for each axis, which x index every y index copies.
  std::vector<AxisMap> maps(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    std::vector<int64_t> pads, b, e;
    begin_end(in, pads, b, e);
    Shape ys = x.shape();
    for (std::size_t k = 0; k < ys.size(); ++k) ys[k] = std::max<int64_t>(0, ys[k] + b[k] + e[k]);
    check_tensor_size(x.dtype(), ys);  // before an index map per output position is built
    std::vector<AxisMap> out;
    for (int64_t k = 0; k < x.rank(); ++k) {
      const auto ku = static_cast<std::size_t>(k);
      const int64_t n = x.dim(k), len = n + b[ku] + e[ku];
      if (len < 0)
        fail_shape("pads " + ints_str(pads) + " crop more than dim " + std::to_string(k) + " of " +
                   shape_str(x.shape()) + " holds");
      if (b[ku] == 0 && e[ku] == 0) continue;
      if (n == 0 && len > 0)
        fail_shape("cannot pad the empty axis " + std::to_string(k) + " of " + shape_str(x.shape()) + " in mode " +
                   mode_name());
      AxisMap m;
      m.axis = k;
      m.in_len = n;
      m.i0.resize(static_cast<std::size_t>(len));
      for (int64_t i = 0; i < len; ++i) {
        int64_t j = i - b[ku];
        if (j < 0 || j >= n) {
          if (mode_ == Mode::Edge) {
            j = std::min<int64_t>(std::max<int64_t>(j, 0), n - 1);
          } else if (mode_ == Mode::Wrap) {
            j = ((j % n) + n) % n;
          } else if (n == 1) {
            j = 0;
          } else {
            const int64_t p = 2 * (n - 1);
            j = ((j % p) + p) % p;
            if (j >= n) j = p - j;
          }
        }
        m.i0[static_cast<std::size_t>(i)] = j;
      }
      out.push_back(std::move(m));
    }
    return out;
  }

  const char* mode_name() const {
    return mode_ == Mode::Edge ? "edge" : mode_ == Mode::Reflect ? "reflect" : mode_ == Mode::Wrap ? "wrap" : "constant";
  }

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
    for (int64_t p : pads)
      if (p > kMaxNumel || p < -kMaxNumel) fail_shape("pads " + ints_str(pads) + " are out of range");
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

  enum class Mode { Constant, Edge, Reflect, Wrap };
  Mode mode_ = Mode::Constant;
  std::vector<int64_t> attr_pads_;
  float attr_value_ = 0.f;
  bool pads_input_ = false, value_input_ = false, axes_input_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Pad, Pad)
