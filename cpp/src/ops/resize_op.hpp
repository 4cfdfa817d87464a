// Shared by Resize (resize.cpp) and Upsample (upsample.cpp): nearest and linear resampling as
// per-axis maps (ops/axis_map.hpp), the output size and each axis's scale from a scales or sizes
// input (or Upsample-7's attribute), and the coordinate transformations:
//   half_pixel x_o = (x + 0.5) / s - 0.5; pytorch_half_pixel: the same, 0 where the output axis has
//   length 1; align_corners x_o = x (in - 1) / (out - 1) (0 for out = 1); asymmetric x_o = x / s;
//   tf_half_pixel_for_nn x_o = (x + 0.5) / s; half_pixel_symmetric (opset 19): half_pixel shifted by
//   in / 2 (1 - out / (s in)),
// in float, as onnxruntime computes them. Nearest rounds x_o by nearest_mode (round_prefer_floor,
// round_prefer_ceil, floor, ceil; before opset 11: truncation when upsampling, ceil when
// downsampling, onnxruntime's rule for Upsample and Resize-10) and clamps to [0, in - 1]. Linear
// clamps x_o to [0, in - 1] and mixes floor(x_o) and the next entry by the fraction; it is
// separable, so a bilinear resize is a linear one along each axis in turn (any rank here; tests
// cover NCHW). Output size: floor(in * s) from scales, the sizes as given otherwise (s = out / in).
// Kinds: nearest is Routing (each output copies one input: relevance and gradients go back to that
// input, summed over the copies), linear is AvgPool (each output a non-negative weighted average:
// LRP's proportional Norm rule, the gradient family and DeepLIFT the exact VJP). The VJP
// scatter-adds the cotangent back along the maps.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "ops/axis_map.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {

class ResizeBase : public Op {
 public:
  enum class Ctm { HalfPixel, PytorchHalfPixel, AlignCorners, Asymmetric, TfHalfPixelForNn, HalfPixelSymmetric };
  enum class Nearest { RoundPreferFloor, RoundPreferCeil, Floor, Ceil, Simple };
  enum class Policy { Stretch, NotLarger, NotSmaller };

  explicit ResizeBase(const NodeDesc& d) : Op(d) {}

  OpKind kind() const override { return linear_ ? OpKind::AvgPool : OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32) fail_format(std::string("expects float32 X, got ") + dtype_name(x.dtype));
    if (!x.has_rank) return {ValueInfo()};
    const ValueInfo* sc = scales_input_ >= 0 && input_given(in, static_cast<std::size_t>(scales_input_))
                              ? &in[static_cast<std::size_t>(scales_input_)]
                              : nullptr;
    const ValueInfo* sz = sizes_input_ >= 0 && input_given(in, static_cast<std::size_t>(sizes_input_))
                              ? &in[static_cast<std::size_t>(sizes_input_)]
                              : nullptr;
    if (sc && sc->has_rank && known_numel(sc->shape) == 0) sc = nullptr;  // an empty scales tensor: not given
    if (sz && sz->has_rank && known_numel(sz->shape) == 0 && sc) sz = nullptr;
    if (sc && sz) fail_format("takes scales or sizes, not both");
    if ((sc && !sc->value) || (sz && !sz->value)) return {ValueInfo(x.dtype, Shape(x.shape.size(), -1))};
    if (!sc && !sz && scales_input_ >= 0) fail_format("needs one of scales and sizes");
    Shape out;
    std::vector<float> s;
    // Unknown dims of X (a dynamic batch) stay unknown unless sizes fix them.
    resolve(x.shape, sc ? sc->value : nullptr, sz ? sz->value : nullptr, &out, &s);
    return {ValueInfo(x.dtype, out)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format("expects float32 X");
    Shape ys;
    if (empty_output(in, &ys)) {
      out[0] = ctx.alloc(x.dtype(), ys);
      return;
    }
    out[0] = apply_axis_maps(x, maps(in), ctx);
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (need.empty() || !need[0]) return;
    const Tensor& x = *in[0];
    Shape ys0;
    if (empty_output(in, &ys0)) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());  // nothing flows back from an empty output
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
    gin[0] = adjoint_axis_maps(*g, x.shape(), mp, ctx);
  }

 protected:
  // Attributes common to the two ops; `opset11` selects Resize-11's attributes (else the rules
  // of Upsample and Resize-10: asymmetric coordinates, onnxruntime's simple nearest rounding).
  void parse_mode(const NodeDesc& d, bool opset11) {
    const std::string mode = d.attrs->get_string("mode", "nearest");
    if (mode == "linear" || (!opset11 && mode == "bilinear")) {
      linear_ = true;
    } else if (mode != "nearest") {
      fail_format(op_type_ + " mode '" + mode + "' is not supported (nearest and linear are" +
                  (mode == "cubic" ? "; cubic is not implemented" : "") + ")");
    }
    if (!opset11) {
      ctm_ = Ctm::Asymmetric;
      nearest_ = Nearest::Simple;
      return;
    }
    const std::string c = d.attrs->get_string("coordinate_transformation_mode", "half_pixel");
    if (c == "half_pixel") ctm_ = Ctm::HalfPixel;
    else if (c == "pytorch_half_pixel") ctm_ = Ctm::PytorchHalfPixel;
    else if (c == "align_corners") ctm_ = Ctm::AlignCorners;
    else if (c == "asymmetric") ctm_ = Ctm::Asymmetric;
    else if (c == "tf_half_pixel_for_nn") ctm_ = Ctm::TfHalfPixelForNn;
    else if (c == "half_pixel_symmetric" && d.opset >= 19) ctm_ = Ctm::HalfPixelSymmetric;
    else
      fail_format("coordinate_transformation_mode '" + c + "' is not supported" +
                  (c == "tf_crop_and_resize" ? " (crop-and-resize needs roi)" : ""));
    const std::string n = d.attrs->get_string("nearest_mode", "round_prefer_floor");
    if (n == "round_prefer_floor") nearest_ = Nearest::RoundPreferFloor;
    else if (n == "round_prefer_ceil") nearest_ = Nearest::RoundPreferCeil;
    else if (n == "floor") nearest_ = Nearest::Floor;
    else if (n == "ceil") nearest_ = Nearest::Ceil;
    else fail_format("nearest_mode '" + n + "' is not supported");
  }

  bool linear_ = false;
  Ctm ctm_ = Ctm::HalfPixel;
  Nearest nearest_ = Nearest::RoundPreferFloor;
  Policy policy_ = Policy::Stretch;
  int scales_input_ = -1, sizes_input_ = -1;  // -1: no such input
  std::vector<float> attr_scales_;           // Upsample-7
  std::vector<int64_t> axes_;                // opset 18; empty: all axes

 private:
  // Output shape and per-axis scales for X's shape `xs` (dims < 0 unknown: their outputs are
  // unknown unless sizes give them) from scales or sizes (constants or the inputs at run time).
  void resolve(const Shape& xs, const Tensor* scales, const Tensor* sizes, Shape* out, std::vector<float>* s) const {
    const int64_t r = static_cast<int64_t>(xs.size());
    std::vector<int64_t> ax;
    if (axes_.empty()) {
      for (int64_t k = 0; k < r; ++k) ax.push_back(k);
    } else {
      ax = normalize_axes(*this, axes_, r, "axes");
    }
    *out = xs;
    s->assign(static_cast<std::size_t>(r), 1.f);
    // An output dim computed in floating point: NaN, infinite or beyond kMaxNumel is refused (its
    // conversion to an integer would be undefined).
    auto out_dim = [&](float v) -> int64_t {
      if (!(v >= 0.f) || static_cast<double>(v) >= static_cast<double>(kMaxNumel))
        fail_shape("scales/sizes give an output dim of " + std::to_string(v) + " for X of shape " + shape_str(xs));
      return static_cast<int64_t>(v);
    };
    if (scales && scales->numel() == 0) scales = nullptr;
    std::vector<float> sv;
    if (scales) {
      if (scales->dtype() != DType::Float32) fail_shape("scales must be float32");
      sv.assign(scales->f32(), scales->f32() + scales->numel());
    } else if (!sizes) {
      sv = attr_scales_;
    }
    if (!sizes) {
      if (sv.size() != ax.size())
        fail_shape("scales " + floats_str(sv) + " should hold " + std::to_string(ax.size()) + " values (one per " +
                   (axes_.empty() ? "axis of X " + shape_str(xs) : "of the axes " + ints_str(axes_)) + ")");
      for (std::size_t i = 0; i < ax.size(); ++i) {
        const auto k = static_cast<std::size_t>(ax[i]);
        if (!(sv[i] > 0.f)) fail_shape("scales " + floats_str(sv) + " must be positive");
        (*s)[k] = sv[i];
        (*out)[k] = xs[k] < 0 ? -1 : out_dim(sv[i] * static_cast<float>(xs[k]));
      }
      return;
    }
    if (sizes->dtype() != DType::Int64) fail_shape("sizes must be int64");
    const std::vector<int64_t> zv = sizes->to_i64_vector();
    if (zv.size() != ax.size())
      fail_shape("sizes " + ints_str(zv) + " should hold " + std::to_string(ax.size()) + " values (one per " +
                 (axes_.empty() ? "axis of X" : "of the axes " + ints_str(axes_)) + ")");
    for (int64_t v : zv)
      if (v < 0) fail_shape("sizes " + ints_str(zv) + " must not be negative");
    if (policy_ != Policy::Stretch) {
      float sc = policy_ == Policy::NotLarger ? 1e30f : 0.f;
      bool known = true;
      for (std::size_t i = 0; i < ax.size(); ++i) known = known && xs[static_cast<std::size_t>(ax[i])] >= 0;
      for (std::size_t i = 0; i < ax.size() && !known; ++i) (*out)[static_cast<std::size_t>(ax[i])] = -1;
      for (std::size_t i = 0; i < ax.size() && known; ++i) {
        const float q = static_cast<float>(zv[i]) / static_cast<float>(xs[static_cast<std::size_t>(ax[i])]);
        sc = policy_ == Policy::NotLarger ? std::min(sc, q) : std::max(sc, q);
      }
      for (std::size_t i = 0; i < ax.size() && known; ++i) {
        const auto k = static_cast<std::size_t>(ax[i]);
        (*s)[k] = sc;
        (*out)[k] = out_dim(std::round(sc * static_cast<float>(xs[k])));
      }
      return;
    }
    for (std::size_t i = 0; i < ax.size(); ++i) {
      const auto k = static_cast<std::size_t>(ax[i]);
      (*out)[k] = zv[i];
      (*s)[k] = xs[k] <= 0 ? 1.f : static_cast<float>(zv[i]) / static_cast<float>(xs[k]);
    }
  }

  static std::string floats_str(const std::vector<float>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  }

  float original(float x, float scale, int64_t out, int64_t in) const {
    switch (ctm_) {
      case Ctm::HalfPixel: return (x + 0.5f) / scale - 0.5f;
      case Ctm::PytorchHalfPixel: return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.f;
      case Ctm::AlignCorners:
        return out == 1 ? 0.f : x * static_cast<float>(in - 1) / static_cast<float>(out - 1);
      case Ctm::Asymmetric: return x / scale;
      case Ctm::TfHalfPixelForNn: return (x + 0.5f) / scale;
      case Ctm::HalfPixelSymmetric: {
        const float adj = static_cast<float>(out) / (scale * static_cast<float>(in));
        const float center = static_cast<float>(in) / 2.f;
        return center * (1.f - adj) + (x + 0.5f) / scale - 0.5f;
      }
    }
    return x;
  }

  int64_t round_nearest(float x, bool downsample) const {
    switch (nearest_) {
      case Nearest::RoundPreferFloor:
        if (x == static_cast<float>(static_cast<int64_t>(x)) + 0.5f) return static_cast<int64_t>(x);
        return static_cast<int64_t>(std::round(x));
      case Nearest::RoundPreferCeil: return static_cast<int64_t>(std::round(x));
      case Nearest::Floor: return static_cast<int64_t>(std::floor(x));
      case Nearest::Ceil: return static_cast<int64_t>(std::ceil(x));
      case Nearest::Simple: return downsample ? static_cast<int64_t>(std::ceil(x)) : static_cast<int64_t>(x);
    }
    return 0;
  }

  // The output shape (and per-axis scales) for these inputs.
  Shape out_shape(const std::vector<const Tensor*>& in, std::vector<float>* s) const {
    const Tensor& x = *in[0];
    const Tensor* sc = scales_input_ >= 0 ? input_or_null(in, static_cast<std::size_t>(scales_input_)) : nullptr;
    const Tensor* sz = sizes_input_ >= 0 ? input_or_null(in, static_cast<std::size_t>(sizes_input_)) : nullptr;
    if (sc && sc->numel() == 0) sc = nullptr;
    if (sz && sz->numel() == 0 && sc) sz = nullptr;
    if (!sc && !sz && scales_input_ >= 0) fail_shape("needs one of scales and sizes");
    if (sc && sz) fail_shape("takes scales or sizes, not both");
    Shape out;
    resolve(x.shape(), sc, sz, &out, s);
    return out;
  }

  // Whether the output is empty: then nothing is resampled, and no index map is built for its
  // other axes, however long (callers return before maps()).
  bool empty_output(const std::vector<const Tensor*>& in, Shape* ys) const {
    std::vector<float> s;
    *ys = out_shape(in, &s);
    return shape_numel(*ys) == 0;
  }

  std::vector<AxisMap> maps(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    std::vector<float> s;
    const Shape out = out_shape(in, &s);
    check_tensor_size(x.dtype(), out);  // before an index map per output position is built
    std::vector<AxisMap> mp;
    for (int64_t k = 0; k < x.rank(); ++k) {
      const auto ku = static_cast<std::size_t>(k);
      const int64_t n = x.dim(k), L = out[ku];
      if (n == L && s[ku] == 1.f && ctm_ != Ctm::TfHalfPixelForNn) continue;  // every transformation is the identity
      if (n == 0 && L > 0) fail_shape("cannot resize the empty axis " + std::to_string(k) + " of " + shape_str(x.shape()));
      AxisMap m;
      m.axis = k;
      m.in_len = n;
      m.i0.resize(static_cast<std::size_t>(L));
      if (linear_) {
        m.i1.resize(static_cast<std::size_t>(L));
        m.w0.resize(static_cast<std::size_t>(L));
        m.w1.resize(static_cast<std::size_t>(L));
      }
      for (int64_t i = 0; i < L; ++i) {
        const auto iu = static_cast<std::size_t>(i);
        float xo = original(static_cast<float>(i), s[ku], L, n);
        if (!linear_) {
          int64_t j = round_nearest(xo, s[ku] < 1.f);
          m.i0[iu] = std::min<int64_t>(std::max<int64_t>(j, 0), n - 1);
          continue;
        }
        xo = std::max(0.f, std::min(xo, static_cast<float>(n - 1)));
        const int64_t j0 = std::min<int64_t>(static_cast<int64_t>(xo), n - 1), j1 = std::min<int64_t>(j0 + 1, n - 1);
        const float f = j0 == j1 ? 0.f : xo - static_cast<float>(j0);
        m.i0[iu] = j0;
        m.i1[iu] = j1;
        m.w0[iu] = 1.f - f;
        m.w1[iu] = f;
      }
      mp.push_back(std::move(m));
    }
    return mp;
  }
};

}  // namespace onnxplain::ops
