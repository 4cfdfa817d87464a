// Slice — https://onnx.ai/onnx/operators/onnx__Slice.html (opset 1: attributes starts, ends,
// axes; 10, 11 (negative axes), 13: inputs starts, ends, axes, steps).
// y = x[starts[i]:ends[i]:steps[i]] on axes[i] (all other axes whole). Negative starts/ends count
// from the end; both are clamped to the dim ([0, dim] for positive steps, [-1, dim-1] for
// negative ones), so exporters' INT64_MAX / INT64_MIN "to the end" bounds work.
// Kind: Routing (relevance and gradients are scattered back into the sliced region).
#include <algorithm>

#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Slice final : public Op {
 public:
  explicit Slice(const NodeDesc& d) : Op(d) {
    auto present = [&](std::size_t i) { return i < d.input_present.size() && d.input_present[i]; };
    require_io(*this, d, d.opset < 10 ? 1 : 3, "data, starts, ends");
    if (d.opset < 10) {
      starts_ = d.attrs->require_ints("starts");
      ends_ = d.attrs->require_ints("ends");
      has_axes_ = d.attrs->has("axes");
      axes_ = d.attrs->get_ints("axes", {});
    } else {
      inputs_ = true;
      has_axes_ = present(3);
      has_steps_ = present(4);
    }
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    ValueInfo o;
    o.dtype = x.dtype;
    if (!x.has_rank) return {o};
    Params p;
    if (!params(in, p)) {
      // Known axes leave the other dims known; otherwise every dim may change.
      Shape s = x.shape;
      std::vector<int64_t> axes;
      if (has_axes_ && (inputs_ ? known_ints(in, 3, axes) : (axes = axes_, true))) {
        for (int64_t a : normalize_axes(*this, axes, x.rank())) s[static_cast<std::size_t>(a)] = -1;
      } else {
        std::fill(s.begin(), s.end(), -1);
      }
      return {ValueInfo(x.dtype, s)};
    }
    Shape s = x.shape;
    std::vector<int64_t> start, step;
    plan(s, p, start, step);
    return {ValueInfo(x.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Region rg = region(in);
    if (rg.whole) {  // nothing cut: alias
      out[0] = x;
      return;
    }
    out[0] = ctx.alloc(x.dtype(), rg.y);
    copy_strided(x.raw(), rg.off, rg.xs, out[0].raw(), 0, strides_of(rg.y), rg.y, dtype_size(x.dtype()),
                 ctx.threads());
  }

  // dx = zeros with dy written back at the sliced positions (the forward copy reversed; the
  // positions are distinct, so no accumulation).
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    const Region rg = region(in);
    const Tensor* g = checked_cotangent(*this, gout, 0, rg.y);
    if (g && rg.whole) {
      gin[0] = *g;
      return;
    }
    gin[0] = zeros_f32(ctx, x.shape());
    if (g) copy_strided(g->raw(), 0, strides_of(rg.y), gin[0].raw(), rg.off, rg.xs, rg.y, 4, ctx.threads());
  }

 private:
  struct Params {
    std::vector<int64_t> starts, ends, axes, steps;
  };

  // The sliced elements of x: output shape `y`, first element at `off`, strides `xs` in x (in
  // elements, negative for negative steps); `whole` when the slice is all of x in order.
  struct Region {
    Shape y;
    std::vector<int64_t> xs;
    int64_t off = 0;
    bool whole = true;
  };

  Region region(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    Params p;
    if (inputs_) {
      p.starts = in[1]->to_i64_vector();
      p.ends = in[2]->to_i64_vector();
      if (has_axes_) p.axes = in[3]->to_i64_vector();
      if (has_steps_) p.steps = in[4]->to_i64_vector();
    } else {
      p.starts = starts_;
      p.ends = ends_;
      p.axes = axes_;
    }
    Region rg;
    rg.y = x.shape();
    std::vector<int64_t> start, step;
    plan(rg.y, p, start, step);
    const std::vector<int64_t> xs = strides_of(x.shape());
    rg.xs.resize(rg.y.size());
    for (std::size_t k = 0; k < rg.y.size(); ++k) {
      rg.off += start[k] * xs[k];
      rg.xs[k] = rg.y[k] > 1 ? step[k] * xs[k] : 0;  // a huge step only ever takes one element
      if (rg.y[k] != x.shape()[k] || step[k] != 1) rg.whole = false;
    }
    return rg;
  }

  // All slice parameters, when they are known before running.
  bool params(const std::vector<ValueInfo>& in, Params& p) const {
    if (!inputs_) {
      p.starts = starts_;
      p.ends = ends_;
      p.axes = axes_;
      return true;
    }
    if (!known_ints(in, 1, p.starts) || !known_ints(in, 2, p.ends)) return false;
    if (has_axes_ && !known_ints(in, 3, p.axes)) return false;
    if (has_steps_ && !known_ints(in, 4, p.steps)) return false;
    return true;
  }

  // Turns the parameters into per-dim start and step; `s` (the input shape on entry, dims < 0
  // unknown) becomes the output shape.
  void plan(Shape& s, const Params& p, std::vector<int64_t>& start, std::vector<int64_t>& step) const {
    const int64_t r = static_cast<int64_t>(s.size());
    std::vector<int64_t> axes = p.axes;
    if (!has_axes_) {
      axes.clear();
      for (int64_t k = 0; k < static_cast<int64_t>(p.starts.size()); ++k) axes.push_back(k);
    }
    const std::size_t n = p.starts.size();
    if (p.ends.size() != n || axes.size() != n || (has_steps_ && p.steps.size() != n))
      fail_shape("starts " + ints_str(p.starts) + ", ends " + ints_str(p.ends) +
                 (has_axes_ ? ", axes " + ints_str(axes) : std::string()) +
                 (has_steps_ ? ", steps " + ints_str(p.steps) : std::string()) + " differ in length");
    axes = normalize_axes(*this, axes, r);
    start.assign(s.size(), 0);
    step.assign(s.size(), 1);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t a = static_cast<std::size_t>(axes[i]);
      const int64_t st = has_steps_ ? p.steps[i] : 1;
      if (st == 0) fail_shape("step 0 on axis " + std::to_string(a));
      step[a] = st;
      const int64_t dim = s[a];
      if (dim < 0) continue;  // unknown: stays unknown
      int64_t b = p.starts[i], e = p.ends[i];
      if (b < 0) b += dim;
      if (e < 0) e += dim;
      int64_t len;
      if (st > 0) {
        b = std::clamp<int64_t>(b, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
        len = e > b ? (e - b - 1) / st + 1 : 0;  // not (e - b + st - 1) / st: huge steps overflow
      } else {
        if (dim == 0) {
          b = e = 0;
        } else {
          b = std::clamp<int64_t>(b, 0, dim - 1);
          e = std::clamp<int64_t>(e, -1, dim - 1);
        }
        // A step of INT64_MIN has no positive counterpart; any step below -dim takes one element.
        const int64_t ns = st == INT64_MIN ? INT64_MAX : -st;
        len = b > e ? (b - e - 1) / ns + 1 : 0;
      }
      if (len == 0) b = 0;
      s[a] = len;
      start[a] = b;
    }
  }

  bool inputs_ = false, has_axes_ = false, has_steps_ = false;
  std::vector<int64_t> starts_, ends_, axes_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Slice, Slice)
