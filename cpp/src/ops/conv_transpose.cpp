// ConvTranspose — https://onnx.ai/onnx/operators/onnx__ConvTranspose.html (opsets 1, 11, 22; 11
// makes the bias optional explicitly and fixes auto_pad's split, 22 only adds bfloat16).
// The adjoint of a convolution: with X (N, C_in, in...), W (C_in, C_out/group, k...) and the
// convolution A_W from (N, C_out, out...) to (N, C_in, in...) that has W as its weight
// ([M = C_in, C = C_out / group, k...] in Conv's layout), strides s, dilations d and pads,
//   Y = A_W^T X + B[c]:  y[n, g*Cg + c, o] += w[m, c, t] x[n, m, i] where o = i*s - pad_begin + t*d
// for every input channel m of group g. Output size per axis:
//   out = s (in - 1) + output_padding + (k - 1) d + 1 - pad_begin - pad_end,
// or output_shape (then the total padding s (in - 1) + output_padding + (k - 1) d + 1 - out is split
// as the spec says: the larger half at the end for SAME_UPPER, at the beginning otherwise; the same
// split for auto_pad SAME_* with out = in * s). 1 to 3 spatial axes (tests: 1-D and 2-D).
// Forward runs kernels::conv_backward's input gradient (col2im of W^T X); the VJP with respect to X
// is the convolution conv_forward(dY, W), with respect to W the convolution's weight gradient
// with dY as its input and X as its output cotangent, with respect to B the sum of dY.
// Kind: Linear, weight input 1, bias input 2, weight neuron axis 1 (the output channels), output
// neuron axis 1, neuron_groups = group (LRP rules run forward/VJP with modified weights and inputs).
#include <algorithm>
#include <string>
#include <vector>

#include "kernels/conv.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class ConvTranspose final : public Op {
 public:
  explicit ConvTranspose(const NodeDesc& d) : Op(d) {
    if (d.input_present.size() < 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("needs the inputs X and W");
    has_bias_ = d.input_present.size() > 2 && d.input_present[2];
    groups_ = d.attrs->get_int("group", 1);
    if (groups_ < 1) fail_format("group must be >= 1, got " + std::to_string(groups_));
    kernel_ = d.attrs->get_ints("kernel_shape", {});
    strides_ = d.attrs->get_ints("strides", {});
    dilations_ = d.attrs->get_ints("dilations", {});
    pads_ = d.attrs->get_ints("pads", {});
    output_padding_ = d.attrs->get_ints("output_padding", {});
    output_shape_ = d.attrs->get_ints("output_shape", {});
    const std::string err = kernels::parse_auto_pad(d.attrs->get_string("auto_pad", "NOTSET"), &auto_pad_);
    if (!err.empty()) fail_format(err);
    for (int64_t v : strides_)
      if (v < 1) fail_format("strides must be >= 1, got " + ints_str(strides_));
    for (int64_t v : dilations_)
      if (v < 1) fail_format("dilations must be >= 1, got " + ints_str(dilations_));
    for (int64_t v : output_padding_)
      if (v < 0) fail_format("output_padding must be >= 0, got " + ints_str(output_padding_));
    for (int64_t v : pads_)
      if (v < 0) fail_format("pads must be >= 0, got " + ints_str(pads_));
  }

  OpKind kind() const override { return OpKind::Linear; }
  int weight_input() const override { return 1; }
  int bias_input() const override { return has_bias_ ? 2 : -1; }
  int weight_neuron_axis(int64_t) const override { return 1; }
  int out_neuron_axis(int64_t) const override { return 1; }
  int64_t neuron_groups() const override { return groups_; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    const ValueInfo& w = in.at(1);
    const char* names[] = {"X", "W", "B"};
    for (std::size_t i = 0; i < (has_bias_ && in.size() > 2 ? 3u : 2u); ++i)
      if (in[i].dtype != DType::Float32)
        fail_shape(std::string("expects float32 ") + names[i] + ", got " + dtype_name(in[i].dtype));
    if (!x.has_rank && !w.has_rank) return {ValueInfo()};
    const ValueInfo* b = has_bias_ && in.size() > 2 ? &in[2] : nullptr;
    return {ValueInfo(DType::Float32, resolve(x, w, b, nullptr))};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = bias_of(in);
    kernels::ConvShape cs;
    const Shape ys = geometry(x, w, b, &cs);
    out[0] = ctx.alloc(DType::Float32, ys);
    float* y = out[0].f32();
    if (out[0].numel() == 0) return;
    if (x.numel() == 0) {
      std::fill(y, y + out[0].numel(), 0.f);
    } else {
      const int64_t n = kernels::conv_backward_scratch_floats(cs);
      kernels::conv_backward(cs, nullptr, w.f32(), x.f32(), y, nullptr, nullptr,
                             n > 0 ? ctx.scratch(static_cast<std::size_t>(n)) : nullptr, ctx.threads());
    }
    if (!b) return;
    const int64_t planes = ys[0] * ys[1], P = cs.win.in_size(), C = ys[1];
    const float* pb = b->f32();
    kernels::parallel_for(planes, ctx.threads(), [&](int64_t lo, int64_t hi) {
      for (int64_t pl = lo; pl < hi; ++pl) {
        const float v = pb[pl % C];
        float* yp = y + pl * P;
        for (int64_t j = 0; j < P; ++j) yp[j] += v;
      }
    }, std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(P, 1)));
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = bias_of(in);
    kernels::ConvShape cs;
    const Shape ys = geometry(x, w, b, &cs);
    const Tensor* gy = gout.empty() ? nullptr : gout[0];
    if (gy && (gy->dtype() != DType::Float32 || gy->shape() != ys))
      fail_shape("the cotangent of Y has shape " + shape_str(gy->shape()) + " but Y has shape " + shape_str(ys));
    auto wanted = [&](std::size_t i) { return i < need.size() && need[i] && i < in.size() && in[i]; };
    if (gin.size() < in.size()) gin.resize(in.size());
    for (std::size_t i = 0; i < in.size() && i < 3; ++i)
      if (wanted(i)) gin[i] = Tensor::zeros(DType::Float32, in[i]->shape());
    if (!gy || gy->numel() == 0) return;
    if (wanted(0) && x.numel() > 0) {
      // dX = A_W dY: the convolution itself.
      const int64_t n = kernels::conv_scratch_floats(cs);
      kernels::conv_forward(cs, gy->f32(), w.f32(), nullptr, gin[0].f32(),
                            n > 0 ? ctx.scratch(static_cast<std::size_t>(n)) : nullptr, ctx.threads());
    }
    float* dw = wanted(1) && x.numel() > 0 ? gin[1].f32() : nullptr;
    if (dw) {
      // <A_W^T X, dY> = <X, A_W dY>: the convolution's weight gradient with input dY, cotangent X.
      const int64_t n = kernels::conv_backward_scratch_floats(cs);
      kernels::conv_backward(cs, gy->f32(), w.f32(), x.f32(), nullptr, dw, nullptr,
                             n > 0 ? ctx.scratch(static_cast<std::size_t>(n)) : nullptr, ctx.threads());
    }
    if (b && wanted(2)) {
      const int64_t N = ys[0], C = ys[1], P = cs.win.in_size();
      const float* g = gy->f32();
      float* db = gin[2].f32();
      for (int64_t c = 0; c < C; ++c) {
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t j = 0; j < P; ++j) acc += g[(n * C + c) * P + j];
        db[c] = static_cast<float>(acc);
      }
    }
  }

 private:
  const Tensor* bias_of(const std::vector<const Tensor*>& in) const {
    return has_bias_ && in.size() > 2 ? in[2] : nullptr;
  }

  Shape geometry(const Tensor& x, const Tensor& w, const Tensor* b, kernels::ConvShape* cs) const {
    if (x.dtype() != DType::Float32 || w.dtype() != DType::Float32 || (b && b->dtype() != DType::Float32))
      fail_shape("expects float32 inputs");
    const ValueInfo xi = ValueInfo::of(x), wi = ValueInfo::of(w);
    const ValueInfo bi = b ? ValueInfo::of(*b) : ValueInfo();
    Geo g;
    const Shape ys = resolve(xi, wi, b ? &bi : nullptr, &g);
    cs->batch = x.dim(0);
    cs->in_channels = ys[1];   // the convolution's input is Y
    cs->out_channels = x.dim(1);
    cs->groups = groups_;
    const int64_t nd = x.rank() - 2, lead = 3 - nd;
    kernels::Window3& win = cs->win;
    for (int64_t i = 0; i < lead; ++i) {
      win.in[i] = win.out[i] = win.k[i] = win.s[i] = win.d[i] = 1;
      win.pb[i] = win.pe[i] = 0;
    }
    for (int64_t a = 0; a < nd; ++a) {
      const auto ua = static_cast<std::size_t>(a);
      const int64_t i = lead + a;
      win.in[i] = ys[ua + 2];
      win.out[i] = x.dim(a + 2);
      win.k[i] = g.k[ua];
      win.s[i] = g.s[ua];
      win.d[i] = g.d[ua];
      win.pb[i] = g.pb[ua];
      // The end pad that makes the convolution's output exactly X's size (negative where Y has
      // positions no window reaches: output_padding, a larger output_shape).
      win.pe[i] = (win.out[i] - 1) * win.s[i] + (win.k[i] - 1) * win.d[i] + 1 - win.pb[i] - win.in[i];
    }
    return ys;
  }

  struct Geo {
    std::vector<int64_t> k, s, d, pb;
  };

  // Output shape (dims < 0 unknown), checking what can be checked; with `g`, the resolved window.
  Shape resolve(const ValueInfo& x, const ValueInfo& w, const ValueInfo* b, Geo* g) const {
    const int64_t rank = x.has_rank ? x.rank() : w.rank();
    if (rank < 3 || rank > 5)
      fail_shape("X must have rank 3 to 5 (N, C, 1-3 spatial axes), got " +
                 (x.has_rank ? "shape " + shape_str(x.shape) : "rank " + std::to_string(rank)));
    if (x.has_rank && w.has_rank && w.rank() != rank)
      fail_shape("W must have the rank of X, got W " + shape_str(w.shape) + " for X " + shape_str(x.shape));
    const int64_t nd = rank - 2;
    auto xdim = [&](int64_t i) { return x.has_rank ? x.shape[static_cast<std::size_t>(i)] : int64_t{-1}; };
    auto wdim = [&](int64_t i) { return w.has_rank ? w.shape[static_cast<std::size_t>(i)] : int64_t{-1}; };
    const int64_t C = xdim(1), Cw = wdim(0), Mg = wdim(1);
    if (C >= 0 && C % groups_ != 0)
      fail_shape("group " + std::to_string(groups_) + " does not divide the " + std::to_string(C) +
                 " input channels of X " + shape_str(x.shape));
    if (C >= 0 && Cw >= 0 && Cw != C)
      fail_shape("W " + shape_str(w.shape) + " does not fit X " + shape_str(x.shape) +
                 ": expected W.shape[0] = " + std::to_string(C) + " (ConvTranspose's W is (C_in, C_out/group, k...))");
    const int64_t M = Mg >= 0 ? Mg * groups_ : -1;
    if (b && b->has_rank && (b->rank() != 1 || (M >= 0 && b->shape[0] >= 0 && b->shape[0] != M)))
      fail_shape("B must have shape (" + std::to_string(M) + "), one bias per output channel, got " + shape_str(b->shape));
    auto check_len = [&](const std::vector<int64_t>& v, std::size_t n, const char* name) {
      if (!v.empty() && v.size() != n)
        fail_shape(std::string(name) + " " + ints_str(v) + " should hold " + std::to_string(n) + " values for " +
                   std::to_string(nd) + " spatial axes");
    };
    const auto und = static_cast<std::size_t>(nd);
    check_len(strides_, und, "strides");
    check_len(dilations_, und, "dilations");
    check_len(pads_, 2 * und, "pads");
    check_len(output_padding_, und, "output_padding");
    check_len(kernel_, und, "kernel_shape");
    std::vector<int64_t> outs = output_shape_;
    if (outs.size() == und + 2) outs.erase(outs.begin(), outs.begin() + 2);
    check_len(outs, und, "output_shape");
    Shape ys{xdim(0), M};
    Geo geo;
    for (std::size_t a = 0; a < und; ++a) {
      int64_t k = kernel_.empty() ? wdim(static_cast<int64_t>(a) + 2) : kernel_[a];
      const int64_t wk = wdim(static_cast<int64_t>(a) + 2);
      if (!kernel_.empty() && wk >= 0 && wk != k)
        fail_shape("kernel_shape " + ints_str(kernel_) + " does not match W " + shape_str(w.shape));
      const int64_t s = strides_.empty() ? 1 : strides_[a], d = dilations_.empty() ? 1 : dilations_[a];
      const int64_t op = output_padding_.empty() ? 0 : output_padding_[a];
      if (op >= s && op >= d)
        fail_shape("output_padding " + ints_str(output_padding_) + " must be smaller than the stride or the dilation");
      int64_t pb = pads_.empty() ? 0 : pads_[a], pe = pads_.empty() ? 0 : pads_[a + und];
      const int64_t in = xdim(static_cast<int64_t>(a) + 2);
      int64_t out = -1;
      if (k >= 0 && in >= 0) {
        const int64_t full = s * (in - 1) + op + (k - 1) * d + 1;
        int64_t target = -1;
        if (!outs.empty()) target = outs[a];
        else if (auto_pad_ == kernels::AutoPad::SameUpper || auto_pad_ == kernels::AutoPad::SameLower) target = in * s;
        if (target >= 0) {
          const int64_t total = std::max<int64_t>(0, full - target);
          if (auto_pad_ == kernels::AutoPad::SameUpper) {
            pb = total / 2;
          } else {
            pb = total - total / 2;
          }
          pe = total - pb;
          out = target;
        } else if (auto_pad_ == kernels::AutoPad::Valid) {
          pb = pe = 0;
          out = full;
        } else {
          out = full - pb - pe;
        }
        if (out < 0)
          fail_shape("pads " + ints_str(pads_) + " leave no output on spatial axis " + std::to_string(a) + " (X " +
                     shape_str(x.shape) + ", W " + shape_str(w.shape) + ")");
      } else if (!outs.empty()) {
        out = outs[a];
      }
      ys.push_back(out);
      geo.k.push_back(k);
      geo.s.push_back(s);
      geo.d.push_back(d);
      geo.pb.push_back(pb);
    }
    if (g) *g = geo;
    return ys;
  }

  std::vector<int64_t> kernel_, strides_, dilations_, pads_, output_padding_, output_shape_;
  kernels::AutoPad auto_pad_ = kernels::AutoPad::NotSet;
  int64_t groups_ = 1;
  bool has_bias_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(ConvTranspose, ConvTranspose)
