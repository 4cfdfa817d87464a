// What MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool share: a float32 input of shape
// (N, C, spatial...) pooled plane by plane (N*C planes), shape inference through the output shape,
// and the cotangent checks every VJP starts with. WindowPoolOp adds the window attributes
// (kernel_shape, strides, pads, auto_pad, dilations, ceil_mode) and their geometry; GlobalPoolOp
// the whole-plane output shape. Each op file adds its kind, its own attributes and its kernels.
#pragma once

#include <string>

#include "kernels/pool.hpp"
#include "ops/local_window.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

class PoolOp : public Op {
 public:
  using Op::Op;

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32) fail_shape(std::string("expects a float32 input, got ") + dtype_name(x.dtype));
    if (!x.has_rank) return {ValueInfo()};
    return {ValueInfo(DType::Float32, out_shape(x.shape))};
  }

 protected:
  /// Y's shape for X's shape (dims < 0 unknown); fails when X cannot be pooled.
  virtual Shape out_shape(const Shape& xs) const = 0;

  /// The (batch, channel) planes the kernels pool independently; X's rank is checked already.
  static int64_t planes(const Tensor& x) { return x.dim(0) * x.dim(1); }

  /// The start of every VJP, once Y's shape `ys` is known: the cotangent is checked even when dX
  /// is not needed, so a mismatched one never passes unnoticed. Returns the cotangent with gin[0]
  /// allocated for dX, or nullptr when gin is already complete (dX not needed, or zeros for an
  /// absent cotangent).
  const Tensor* vjp_prologue(const Tensor& x, const Shape& ys, const std::vector<const Tensor*>& gout,
                             const std::vector<bool>& need, std::vector<Tensor>& gin, ExecContext& ctx) const {
    const Tensor* gy = gout.empty() ? nullptr : gout[0];
    if (gy && (gy->dtype() != DType::Float32 || gy->shape() != ys))
      fail_shape("the cotangent of Y has shape " + shape_str(gy->shape()) + " (" + dtype_name(gy->dtype()) +
                 ") but Y has shape " + shape_str(ys) + " (float32)");
    if (need.empty() || !need[0]) return nullptr;
    if (gin.empty()) gin.resize(1);
    if (!gy) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());
      return nullptr;
    }
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    return gy;
  }
};

class WindowPoolOp : public PoolOp {
 public:
  explicit WindowPoolOp(const NodeDesc& d) : PoolOp(d) {
    spec_.kernel = d.attrs->require_ints("kernel_shape");
    spec_.strides = d.attrs->get_ints("strides", {});
    spec_.dilations = d.attrs->get_ints("dilations", {});
    spec_.pads = d.attrs->get_ints("pads", {});
    spec_.ceil_mode = d.attrs->get_int("ceil_mode", 0) != 0;
    std::string err = kernels::parse_auto_pad(d.attrs->get_string("auto_pad", "NOTSET"), &spec_.auto_pad);
    if (err.empty()) err = kernels::normalize_window(&spec_, spec_.nd());
    if (!err.empty()) fail_format(err);
    // A window lying wholly in the padding would have no input to pool (no maximum, an average
    // over a count of 0).
    for (int64_t a = 0; a < spec_.nd(); ++a) {
      const auto u = static_cast<std::size_t>(a);
      const int64_t dk = (spec_.kernel[u] - 1) * spec_.dilations[u] + 1;
      if (spec_.pads[u] >= dk || spec_.pads[u + spec_.kernel.size()] >= dk)
        fail_format("pads must be smaller than the (dilated) kernel on every axis");
    }
  }

  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    return window_of(spec_, in, spec_.kernel, w);
  }

 protected:
  /// The geometry of one call: Y's shape and the window resolved for X's spatial sizes.
  struct Geometry {
    Shape out_shape;
    kernels::Window3 w{};
  };

  Geometry resolve(const Shape& xs) const {
    Geometry g;
    g.out_shape = out_shape(xs);
    const std::string err = kernels::resolve_window(spec_, Shape(xs.begin() + 2, xs.end()), &g.w);
    if (!err.empty()) fail_shape(err);
    return g;
  }

  Shape out_shape(const Shape& xs) const override {
    const int64_t nd = spec_.nd();
    if (static_cast<int64_t>(xs.size()) != nd + 2)
      fail_shape("kernel_shape has " + std::to_string(nd) + " axes, so the input must have rank " +
                 std::to_string(nd + 2) + " (N, C, spatial...), got shape " + shape_str(xs));
    Shape spatial;
    const std::string err = kernels::window_out_dims(spec_, Shape(xs.begin() + 2, xs.end()), &spatial);
    if (!err.empty()) fail_shape(err + " (input shape " + shape_str(xs) + ")");
    Shape ys{xs[0], xs[1]};
    ys.insert(ys.end(), spatial.begin(), spatial.end());
    return ys;
  }

  kernels::WindowSpec spec_;
};

class GlobalPoolOp : public PoolOp {
 public:
  using PoolOp::PoolOp;

 protected:
  /// Elements per plane: all spatial axes at once (0 when there are no planes to divide by).
  static int64_t plane_size(const Tensor& x) {
    const int64_t p = planes(x);
    return p > 0 ? x.numel() / p : 0;
  }

  Shape out_shape(const Shape& xs) const override {
    if (xs.size() < 3) fail_shape("the input must have rank >= 3 (N, C, spatial...), got shape " + shape_str(xs));
    Shape ys(xs.size(), 1);
    ys[0] = xs[0];
    ys[1] = xs[1];
    return ys;
  }
};

}  // namespace onnxplain::ops
