// MaxPool — https://onnx.ai/onnx/operators/onnx__MaxPool.html (opsets 1, 8, 10, 11, 12).
// y[n, c, o] = max over the window taps t of x[n, c, o*stride - pad_begin + t*dilation]; padding
// never wins (-inf). kernel_shape, strides, pads, auto_pad, dilations (10+), ceil_mode (10+);
// storage_order only concerns the Indices output, which is not supported (1-3 spatial axes).
// Kind: MaxPool (reverse passes route relevance/gradient to the winning input of each window).
// VJP: dY to the first maximum of each window in window order (ties: earliest tap; padding never wins).

#include "kernels/pool.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class MaxPool final : public Op {
 public:
  explicit MaxPool(const NodeDesc& d) : Op(d) {
    if (d.num_outputs > 1) fail_format("the Indices output (output 1) is not supported; only output 0 is");
    spec_.kernel = d.attrs->require_ints("kernel_shape");
    spec_.strides = d.attrs->get_ints("strides", {});
    spec_.dilations = d.attrs->get_ints("dilations", {});
    spec_.pads = d.attrs->get_ints("pads", {});
    spec_.ceil_mode = d.attrs->get_int("ceil_mode", 0) != 0;
    std::string err = kernels::parse_auto_pad(d.attrs->get_string("auto_pad", "NOTSET"), &spec_.auto_pad);
    if (err.empty()) err = kernels::normalize_window(&spec_, spec_.nd());
    if (!err.empty()) fail_format(err);
    // A window lying wholly in the padding would have no input to take the max of.
    for (int64_t a = 0; a < spec_.nd(); ++a) {
      const auto u = static_cast<std::size_t>(a);
      const int64_t dk = (spec_.kernel[u] - 1) * spec_.dilations[u] + 1;
      if (spec_.pads[u] >= dk || spec_.pads[u + spec_.kernel.size()] >= dk)
        fail_format("pads must be smaller than the (dilated) kernel on every axis");
    }
  }

  OpKind kind() const override { return OpKind::MaxPool; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (x.dtype != DType::Float32) fail_shape(std::string("expects a float32 input, got ") + dtype_name(x.dtype));
    if (!x.has_rank) return {ValueInfo()};
    return {ValueInfo(DType::Float32, out_shape(x.shape))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Shape ys = out_shape(x.shape());
    kernels::Window3 w{};
    const std::string err = kernels::resolve_window(spec_, Shape(x.shape().begin() + 2, x.shape().end()), &w);
    if (!err.empty()) fail_shape(err);
    out[0] = ctx.alloc(DType::Float32, ys);
    kernels::max_pool(x.f32(), x.dim(0) * x.dim(1), w, out[0].f32(), ctx.threads());
  }

  // Each dY goes to the first maximum of its window, recomputed from the X passed in (no state is
  // kept from the forward: the op is shared and const, and a rule may pass a modified X).
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    (void)out;
    const Tensor& x = *in[0];
    const Shape ys = out_shape(x.shape());
    kernels::Window3 w{};
    const std::string err = kernels::resolve_window(spec_, Shape(x.shape().begin() + 2, x.shape().end()), &w);
    if (!err.empty()) fail_shape(err);
    const Tensor* gy = gout.empty() ? nullptr : gout[0];
    if (gy && (gy->dtype() != DType::Float32 || gy->shape() != ys))
      fail_shape("the cotangent of Y has shape " + shape_str(gy->shape()) + " (" + dtype_name(gy->dtype()) +
                 ") but Y has shape " + shape_str(ys) + " (float32)");
    if (need.empty() || !need[0]) return;
    if (gin.empty()) gin.resize(1);
    if (!gy) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());
      return;
    }
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::max_pool_backward(x.f32(), gy->f32(), x.dim(0) * x.dim(1), w, gin[0].f32(), ctx.threads());
  }

 private:
  Shape out_shape(const Shape& xs) const {
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

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(MaxPool, MaxPool)
