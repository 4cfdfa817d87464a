// Conv — https://onnx.ai/onnx/operators/onnx__Conv.html (opsets 1, 11).
// y[n, m, o] = b[m] + sum over c in m's group and taps t of
//              w[m, c, t] * x[n, g*C/G + c, o*stride - pad_begin + t*dilation]   (zero padding)
// x [N, C, spatial...] (1-3 spatial axes), w [M, C/group, k...], optional b [M]; strides, pads,
// auto_pad, dilations, group (depthwise when group == C), kernel_shape (else from w).
// Kind: Linear, weight input 1, bias input 2 (LRP rules run it with modified weights/inputs).
// VJP: dX = col2im(W^T dY); dW and dB too when W/B are graph inputs (need[1], need[2]).
#include "kernels/conv.hpp"
#include "kernels/small_conv.hpp"
#include "kernels/winograd.hpp"
#include "ops/derived_cache.hpp"
#include "ops/local_window.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Conv final : public Op {
 public:
  explicit Conv(const NodeDesc& d) : Op(d) {
    if (d.input_present.size() < 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("needs the inputs X and W");
    has_bias_ = d.input_present.size() > 2 && d.input_present[2];
    groups_ = d.attrs->get_int("group", 1);
    if (groups_ < 1) fail_format("group must be >= 1, got " + std::to_string(groups_));
    spec_.kernel = d.attrs->get_ints("kernel_shape", {});
    spec_.strides = d.attrs->get_ints("strides", {});
    spec_.dilations = d.attrs->get_ints("dilations", {});
    spec_.pads = d.attrs->get_ints("pads", {});
    const std::string err = kernels::parse_auto_pad(d.attrs->get_string("auto_pad", "NOTSET"), &spec_.auto_pad);
    if (!err.empty()) fail_format(err);
    // Attribute lengths are checked now when the number of spatial axes is known already.
    const Tensor* w = d.const_inputs.size() > 1 ? d.const_inputs[1] : nullptr;
    const int64_t nd = !spec_.kernel.empty() ? static_cast<int64_t>(spec_.kernel.size())
                       : w && w->rank() >= 3 ? w->rank() - 2
                                             : -1;
    if (nd > 0) {
      kernels::WindowSpec s = spec_;
      if (s.kernel.empty()) s.kernel.assign(w->shape().begin() + 2, w->shape().end());
      const std::string e = kernels::normalize_window(&s, nd);
      if (!e.empty()) fail_format(e);
    }
  }

  OpKind kind() const override { return OpKind::Linear; }
  int weight_input() const override { return 1; }
  int bias_input() const override { return has_bias_ ? 2 : -1; }
  bool stacks_on_channels() const override { return groups_ == 1; }
  int weight_neuron_axis(int64_t) const override { return 0; }
  int out_neuron_axis(int64_t) const override { return 1; }
  int64_t neuron_groups() const override { return groups_; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.size() < 2 || !in[0] || !in[1] || in[1]->rank() != in[0]->rank()) return false;
    return window_of(spec_, in, Shape(in[1]->shape().begin() + 2, in[1]->shape().end()), w);
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& w = in.at(1);
    const ValueInfo* b = has_bias_ && in.size() > 2 ? &in[2] : nullptr;
    const char* names[] = {"X", "W", "B"};
    for (int i = 0; i < (b ? 3 : 2); ++i)
      if (in[static_cast<std::size_t>(i)].dtype != DType::Float32)
        fail_shape(std::string("expects float32 ") + names[i] + ", got " + dtype_name(in[static_cast<std::size_t>(i)].dtype));
    if (!x.has_rank && !w.has_rank) return {ValueInfo()};
    return {ValueInfo(DType::Float32, out_shape(x, w, b, nullptr))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    // Weight and bias come from `in` every call: rules run this op with modified weights.
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = bias_of(in);
    kernels::ConvShape cs;
    const Shape ys = geometry(x, w, b, &cs);
    out[0] = ctx.alloc(DType::Float32, ys);
    float* y = out[0].f32();
    kernels::Epilogue ep;
    if (const Tensor* r = ctx.residual_epilogue()) {
      if (r->dtype() == DType::Float32 && r->shape() == ys) {
        ep.residual = r->f32();
        ep.relu = ctx.relu_epilogue();
        ep.residual_first = ctx.residual_first();
        ctx.residual_applied();
      }
    } else {
      ep.relu = ctx.relu_epilogue();
    }
    if (!run_conv(cs, x.f32(), w, kWinograd, kPanel, [&] { return w.f32(); }, b ? b->f32() : nullptr, y, ctx, ep))
      kernels::apply_epilogue_parallel(ep, y, out[0].numel(), ctx.threads());
  }
  bool fuses_rectifier() const override { return true; }
  bool fuses_residual() const override { return true; }
  // dX reads W, dW reads X, dB reads neither; nothing reads Y.
  void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const override {
    bilinear_vjp_reads(constant, in, out);
  }

  // dX = col2im(W^T dY), dW = dY im2col(X)^T, dB = dY summed over images and positions; W and X
  // are the tensors passed in (a rule's modified weight or input), never load-time copies.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = bias_of(in);
    kernels::ConvShape cs;
    const Shape ys = geometry(x, w, b, &cs);
    const Tensor* gy = gout.empty() ? nullptr : gout[0];
    if (gy && (gy->dtype() != DType::Float32 || gy->shape() != ys))
      fail_shape("the cotangent of Y has shape " + shape_str(gy->shape()) + " (" + dtype_name(gy->dtype()) +
                 ") but Y has shape " + shape_str(ys) + " (float32)");
    auto wanted = [&](std::size_t i) { return i < need.size() && need[i] && i < in.size() && in[i]; };
    if (gin.size() < in.size()) gin.resize(in.size());
    for (std::size_t i = 0; i < in.size() && i < 3; ++i) {
      if (!wanted(i)) continue;
      gin[i] = gy ? ctx.alloc(DType::Float32, in[i]->shape()) : Tensor::zeros(DType::Float32, in[i]->shape());
    }
    if (!gy) return;
    float* dx = wanted(0) ? gin[0].f32() : nullptr;
    float* dw = wanted(1) ? gin[1].f32() : nullptr;
    float* db = b && wanted(2) ? gin[2].f32() : nullptr;
    if (!dx && !dw && !db) return;
    if (dx && kernels::input_grad_is_conv(cs)) {
      // dX as a convolution of dY with the flipped weight (kept for frozen weights): the
      // forward's tiling and threading, no col2im scatter.
      const int threads = ctx.threads();
      const kernels::ConvShape gcs = kernels::input_grad_conv_shape(cs);
      DerivedCache::Data wf;
      DerivedCache::Vec wf_once;
      auto flipped = [&]() -> const float* {
        auto flip = [&](DerivedCache::Vec& v) {
          v.resize(static_cast<std::size_t>(w.numel()));
          kernels::flip_conv_weight(cs, w.f32(), v.data(), threads);
        };
        // Under Winograd or the small-map path the flipped weight is only the source of the
        // transformed or packed one (which is cached): keeping it too would hold one more copy
        // of the weight for nothing.
        if ((ctx.winograd() && kernels::winograd_applies(gcs)) || kernels::small_conv_applies(gcs)) {
          if (wf_once.empty()) flip(wf_once);
          return wf_once.data();
        }
        if (!wf) wf = cache_.get(w, kFlipped, flip);
        return wf->data();
      };
      run_conv(gcs, gy->f32(), w, kWinogradFlipped, kPanelFlipped, flipped, nullptr, dx, ctx);
      dx = nullptr;
      if (!dw && !db) return;
    }
    const int64_t scratch = kernels::conv_backward_scratch_floats(cs);
    float* buf = scratch > 0 ? ctx.scratch(static_cast<std::size_t>(scratch)) : nullptr;
    kernels::conv_backward(cs, x.f32(), w.f32(), gy->f32(), dx, dw, db, buf, ctx.threads());
  }

 private:
  const Tensor* bias_of(const std::vector<const Tensor*>& in) const {
    return has_bias_ && in.size() > 2 ? in[2] : nullptr;
  }

  // Checks concrete inputs and resolves the window: the output shape and the kernel geometry.
  Shape geometry(const Tensor& x, const Tensor& w, const Tensor* b, kernels::ConvShape* cs) const {
    if (x.dtype() != DType::Float32 || w.dtype() != DType::Float32 || (b && b->dtype() != DType::Float32))
      fail_shape("expects float32 inputs");
    const ValueInfo xi = ValueInfo::of(x), wi = ValueInfo::of(w);
    const ValueInfo bi = b ? ValueInfo::of(*b) : ValueInfo();
    kernels::WindowSpec spec;
    const Shape ys = out_shape(xi, wi, b ? &bi : nullptr, &spec);
    cs->batch = x.dim(0);
    cs->in_channels = x.dim(1);
    cs->out_channels = w.dim(0);
    cs->groups = groups_;
    const std::string err = kernels::resolve_window(spec, Shape(x.shape().begin() + 2, x.shape().end()), &cs->win);
    if (!err.empty()) fail_shape(err);
    return ys;
  }

  // Output shape from what is known (dims < 0 unknown); checks everything that can be checked.
  // With `spec_out`, also returns the window attributes resolved for this rank.
  Shape out_shape(const ValueInfo& x, const ValueInfo& w, const ValueInfo* b, kernels::WindowSpec* spec_out) const {
    const int64_t rank = x.has_rank ? x.rank() : w.rank();
    if (rank < 3 || rank > 5)
      fail_shape("X must have rank 3 to 5 (N, C, 1-3 spatial axes), got shape " +
                 (x.has_rank ? shape_str(x.shape) : std::string("of rank ") + std::to_string(rank)));
    if (x.has_rank && w.has_rank && w.rank() != rank)
      fail_shape("W must have the rank of X: expected rank " + std::to_string(rank) + ", got W of shape " +
                 shape_str(w.shape) + " for X of shape " + shape_str(x.shape));
    const int64_t nd = rank - 2;
    auto xdim = [&](int64_t i) { return x.has_rank ? x.shape[static_cast<std::size_t>(i)] : int64_t{-1}; };
    auto wdim = [&](int64_t i) { return w.has_rank ? w.shape[static_cast<std::size_t>(i)] : int64_t{-1}; };
    const int64_t C = xdim(1), M = wdim(0), Cw = wdim(1);
    if (C >= 0 && C % groups_ != 0)
      fail_shape("group " + std::to_string(groups_) + " does not divide the " + std::to_string(C) +
                 " input channels of X " + shape_str(x.shape));
    if (C >= 0 && Cw >= 0 && Cw * groups_ != C)
      fail_shape("W " + shape_str(w.shape) + " does not fit X " + shape_str(x.shape) + " with group " +
                 std::to_string(groups_) + ": expected W.shape[1] = " + std::to_string(C / groups_) + ", got " +
                 std::to_string(Cw));
    if (M >= 0 && M % groups_ != 0)
      fail_shape("group " + std::to_string(groups_) + " does not divide the " + std::to_string(M) +
                 " output channels of W " + shape_str(w.shape));
    if (b && b->has_rank && (b->rank() != 1 || (M >= 0 && b->shape[0] >= 0 && b->shape[0] != M)))
      fail_shape("B must have shape (" + std::to_string(M) + "), expected one bias per output channel, got " +
                 shape_str(b->shape));

    kernels::WindowSpec spec = spec_;
    bool kernel_known = true;
    if (w.has_rank) {
      const Shape wk(w.shape.begin() + 2, w.shape.end());
      for (int64_t k : wk) kernel_known = kernel_known && k >= 0;
      if (spec.kernel.empty()) {
        spec.kernel = wk;
      } else if (kernel_known && spec.kernel != wk) {
        fail_shape("kernel_shape does not match W: expected W's spatial shape " + shape_str(spec.kernel) +
                   ", got W " + shape_str(w.shape));
      }
    }
    Shape ys{xdim(0), M};
    if (spec.kernel.empty() || !kernel_known) {
      if (spec_out) fail_shape("the kernel shape is unknown");
      for (int64_t i = 0; i < nd; ++i) ys.push_back(-1);
      return ys;
    }
    std::string err = kernels::normalize_window(&spec, nd);
    if (!err.empty()) fail_shape(err);
    Shape in_sp(static_cast<std::size_t>(nd), -1);
    if (x.has_rank) in_sp.assign(x.shape.begin() + 2, x.shape.end());
    Shape sp;
    err = kernels::window_out_dims(spec, in_sp, &sp);
    if (!err.empty()) fail_shape(err + " (X " + shape_str(x.shape) + ", W " + shape_str(w.shape) + ")");
    ys.insert(ys.end(), sp.begin(), sp.end());
    if (spec_out) *spec_out = spec;
    return ys;
  }

  // y = conv(x, weight) for the geometry cs; `weight()` gives the weight's floats (derived from w
  // as tagged), transformed for Winograd under `wino_tag` or packed into GEMM panels under
  // `panel_tag` when that path applies. Returns whether `ep` was applied as y was written; where
  // not (a residual through the Winograd or small-map kernels, which fuse only the rectifier),
  // the caller applies it after.
  template <class WeightOf>
  bool run_conv(const kernels::ConvShape& cs, const float* x, const Tensor& w, int wino_tag, int panel_tag,
                WeightOf weight, const float* bias, float* y, ExecContext& ctx,
                const kernels::Epilogue& ep = {}) const {
    const bool relu = ep.relu && !ep.residual;
    const int threads = ctx.threads();
    if (ctx.winograd() && kernels::winograd_applies(cs) && !kernels::small_conv_beats_winograd(cs)) {
      // Over few tiles the weight's transform costs a fifth of the product or more: keep it even
      // past the derived data's cap (see DerivedCache).
      const int64_t tiles = cs.batch * ((cs.win.out[1] + 3) / 4) * ((cs.win.out[2] + 3) / 4);
      const DerivedCache::Data u = cache_.get(
          w, wino_tag,
          [&](DerivedCache::Vec& v) {
            v.resize(static_cast<std::size_t>(kernels::winograd_weight_floats(cs)));
            kernels::winograd_transform_weight(cs, weight(), v.data(), threads);
          },
          tiles < 64);
      kernels::winograd_conv(cs, x, u->data(), bias, y, threads, relu);
      return !ep.residual;
    }
    if (kernels::small_conv_applies(cs)) {
      // Likewise over few positions (ResNet-50's 512-channel layers at batch 1: 49): packing a
      // 9 MB weight took longer than the product (a 7x7 layer's z+ reverse: 5.5 ms, its
      // forward 1.5 ms).
      const DerivedCache::Data a = cache_.get(
          w, panel_tag,
          [&](DerivedCache::Vec& v) {
            v.resize(static_cast<std::size_t>(kernels::small_conv_weight_floats(cs)));
            kernels::small_conv_pack_weight(cs, weight(), v.data());
          },
          cs.batch * cs.win.out_size() < 1024);
      kernels::small_conv_forward(cs, x, a->data(), bias, y, threads, relu);
      return !ep.residual;
    }
    const int64_t n = kernels::conv_scratch_floats(cs);
    kernels::conv_forward(cs, x, weight(), bias, y, n > 0 ? ctx.scratch(static_cast<std::size_t>(n)) : nullptr,
                          threads, ep);
    return true;
  }

  static constexpr int kFlipped = 0, kWinograd = 1, kWinogradFlipped = 2, kPanel = 3, kPanelFlipped = 4;
  mutable DerivedCache cache_;
  kernels::WindowSpec spec_;  // kernel may be empty: taken from W
  int64_t groups_ = 1;
  bool has_bias_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Conv, Conv)
