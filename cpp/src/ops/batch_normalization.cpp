// BatchNormalization — https://onnx.ai/onnx/operators/onnx__BatchNormalization.html
// (opsets 7, 9, 14, 15; inference mode only).
// y = scale * (x - mean) / sqrt(var + epsilon) + B per channel (axis 1) of an input of rank >= 2,
// computed as y = a*x + c with a = scale/sqrt(var + eps), c = B - mean*a. Opset 7's spatial = 0
// has one parameter per (channel, position), i.e. over all of x's axes but the first.
// training_mode = 1 (batch statistics) is rejected: models are explained as exported in eval mode.
// Extra outputs (running / saved statistics, training only) get the input mean and var unchanged.
// VJP (G = dY, sums over all positions of a channel): dX = a*G, dscale = sum G*(x - mean)/sqrt(var + eps),
// dB = sum G, dmean = -a*sum G, dvar = -a/(2*(var + eps)) * sum G*(x - mean); the parameter
// gradients only when a model feeds them from its inputs.
// The coefficients a, c are computed once at load for constant parameters, and used only while
// forward()/vjp() receive those very tensors (same storage); a rule passing modified parameters
// gets them recomputed.
// Kind: Normalization. The fold_batch_norm pass merges it into a preceding Conv/Gemm/MatMul; a
// standalone one (after an input, an Add, ...) runs here as the affine map above.
#include <algorithm>
#include <cmath>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class BatchNormalization final : public Op {
 public:
  explicit BatchNormalization(const NodeDesc& d) : Op(d) {
    if (d.attrs->get_int("training_mode", 0) != 0)
      fail_format("training mode (training_mode=1) is not supported: export the model in eval mode");
    eps_ = d.attrs->get_float("epsilon", 1e-5f);
    num_outputs_ = std::max<std::size_t>(d.num_outputs, 1);
    spatial_ = d.opset >= 9 || d.attrs->get_int("spatial", 1) != 0;
    bool present = d.input_present.size() >= 5;
    for (std::size_t i = 0; present && i < 5; ++i) present = d.input_present[i];
    if (!present)
      fail_format("expects 5 inputs (X, scale, B, mean, var)");
    bool all_const = d.const_inputs.size() >= 5;
    for (std::size_t i = 1; all_const && i < 5; ++i)
      all_const = d.const_inputs[i] && d.const_inputs[i]->dtype() == DType::Float32;
    // The usual case: constant statistics, so the affine coefficients are computed once.
    if (all_const) {
      coefficients(*d.const_inputs[1], *d.const_inputs[2], *d.const_inputs[3], *d.const_inputs[4], &a_, &c_);
      // Holding the tensors keeps their storage alive, so equal data pointers mean the same values.
      for (std::size_t i = 1; i < 5; ++i) params_[i - 1] = *d.const_inputs[i];
      precomputed_ = true;
    }
  }
  OpKind kind() const override { return OpKind::Normalization; }
  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/false);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    for (std::size_t i = 0; i < in.size() && i < 5; ++i)
      if (in[i].dtype != DType::Float32)
        fail_format("expects float32 inputs, input " + std::to_string(i) + " is " + dtype_name(in[i].dtype));
    const ValueInfo& x = in.at(0);
    std::vector<ValueInfo> outs;
    ValueInfo y;
    y.dtype = DType::Float32;
    if (x.has_rank) {
      if (x.rank() < 2) fail_shape("X must have rank >= 2 (N, C, ...), got shape " + shape_str(x.shape));
      y = ValueInfo(DType::Float32, x.shape);
      int64_t P = x.shape[1];
      for (std::size_t k = 2; !spatial_ && k < x.shape.size(); ++k) P = (P < 0 || x.shape[k] < 0) ? -1 : P * x.shape[k];
      static const char* names[] = {"", "scale", "B", "mean", "var"};
      for (std::size_t i = 1; i < in.size() && i < 5 && P >= 0; ++i) {
        const ValueInfo& p = in[i];
        if (!p.has_rank || !std::all_of(p.shape.begin(), p.shape.end(), [](int64_t v) { return v >= 0; })) continue;
        if (shape_numel(p.shape) != P)
          fail_shape(std::string(names[i]) + " of shape " + shape_str(p.shape) + " does not match the " +
                     std::to_string(P) + " channels of X " + shape_str(x.shape));
      }
    }
    outs.push_back(y);
    for (std::size_t k = 1; k < num_outputs_; ++k)
      outs.push_back(in.size() > 4 ? strip(in[k % 2 == 1 ? 3 : 4]) : ValueInfo());
    return outs;
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    for (std::size_t i = 0; i < 5; ++i)
      if (in[i]->dtype() != DType::Float32) fail_format("expects float32 inputs");
    if (x.rank() < 2) fail_shape("X must have rank >= 2 (N, C, ...), got shape " + shape_str(x.shape()));
    int64_t P = x.dim(1);
    for (int64_t k = 2; !spatial_ && k < x.rank(); ++k) P *= x.dim(k);
    std::vector<float> a_local, c_local;
    const std::vector<float>* a;
    const std::vector<float>* c;
    resolve(in, P, &a_local, &c_local, &a, &c);
    const int64_t N = x.dim(0);
    const int64_t inner = N * P == 0 ? 0 : x.numel() / (N * P);

    out[0] = ctx.alloc(DType::Float32, x.shape());
    const float* px = x.f32();
    float* py = out[0].f32();
    const float* pa = a->data();
    const float* pc = c->data();
    // One work item per (n, channel) plane; the plane loop is a contiguous axpy the compiler vectorises.
    const int64_t planes = N * P;
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(inner, 1));
    kernels::parallel_for(planes, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const int64_t ch = pl % P;
        const float s = pa[ch], t = pc[ch];
        const float* xi = px + pl * inner;
        float* yi = py + pl * inner;
        for (int64_t i = 0; i < inner; ++i) yi[i] = s * xi[i] + t;
      }
    }, grain);
    for (std::size_t k = 1; k < out.size(); ++k) out[k] = *in[k % 2 == 1 ? 3 : 4];
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    for (std::size_t i = 0; i < 5; ++i)
      if (in[i]->dtype() != DType::Float32) fail_format("expects float32 inputs");
    if (x.rank() < 2) fail_shape("X must have rank >= 2 (N, C, ...), got shape " + shape_str(x.shape()));
    int64_t P = x.dim(1);
    for (int64_t k = 2; !spatial_ && k < x.rank(); ++k) P *= x.dim(k);
    std::vector<float> a_local, c_local;
    const std::vector<float>* a;
    const std::vector<float>* c;
    resolve(in, P, &a_local, &c_local, &a, &c);
    auto needs = [&](std::size_t i) { return i < need.size() && need[i]; };
    for (std::size_t i = 0; i < 5; ++i)
      if (needs(i)) gin[i] = Tensor::zeros(DType::Float32, in[i]->shape());
    // Outputs 1.. return mean / var unchanged, so their cotangents pass straight through.
    for (std::size_t k = 1; k < gout.size(); ++k) {
      const std::size_t i = k % 2 == 1 ? 3 : 4;
      if (!gout[k] || !needs(i)) continue;
      if (gout[k]->shape() != in[i]->shape())
        fail_shape("cotangent of shape " + shape_str(gout[k]->shape()) + " does not match output " +
                   std::to_string(k) + " of shape " + shape_str(in[i]->shape()));
      float* d = gin[i].f32();
      const float* gk = gout[k]->f32();
      for (int64_t j = 0; j < in[i]->numel(); ++j) d[j] += gk[j];
    }
    const Tensor* g = gout.empty() ? nullptr : gout[0];
    if (!g) return;
    if (g->dtype() != DType::Float32 || g->shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g->shape()) + " does not match the output shape " +
                 shape_str(x.shape()));
    const int64_t N = x.dim(0);
    const int64_t planes = N * P;
    const int64_t inner = planes == 0 ? 0 : x.numel() / planes;
    const float* pg = g->f32();
    const float* pa = a->data();
    const int64_t grain = std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(inner, 1));
    if (needs(0)) {
      float* pdx = gin[0].f32();
      kernels::parallel_for(planes, ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t pl = b; pl < e; ++pl) {
          const float s = pa[pl % P];
          const float* gi = pg + pl * inner;
          float* di = pdx + pl * inner;
          for (int64_t i = 0; i < inner; ++i) di[i] = s * gi[i];
        }
      }, grain);
    }
    if (!needs(1) && !needs(2) && !needs(3) && !needs(4)) return;
    // Per channel: S0 = sum G, S1 = sum G*x, in double (sums over the whole batch).
    std::vector<double> s0(static_cast<std::size_t>(P), 0.0), s1(static_cast<std::size_t>(P), 0.0);
    const float* px = x.f32();
    for (int64_t pl = 0; pl < planes; ++pl) {
      const auto ch = static_cast<std::size_t>(pl % P);
      const float* gi = pg + pl * inner;
      const float* xi = px + pl * inner;
      double t0 = 0.0, t1 = 0.0;
      for (int64_t i = 0; i < inner; ++i) {
        t0 += gi[i];
        t1 += static_cast<double>(gi[i]) * xi[i];
      }
      s0[ch] += t0;
      s1[ch] += t1;
    }
    const float* scale = in[1]->f32();
    const float* mean = in[3]->f32();
    const float* var = in[4]->f32();
    for (int64_t k = 0; k < P; ++k) {
      const auto ck = static_cast<std::size_t>(k);
      const double ve = static_cast<double>(var[k]) + eps_;
      const double inv = 1.0 / std::sqrt(ve);
      const double gxm = s1[ck] - mean[k] * s0[ck];  // sum G*(x - mean)
      if (needs(1)) gin[1].f32()[k] += static_cast<float>(gxm * inv);
      if (needs(2)) gin[2].f32()[k] += static_cast<float>(s0[ck]);
      if (needs(3)) gin[3].f32()[k] += static_cast<float>(-scale[k] * inv * s0[ck]);
      if (needs(4)) gin[4].f32()[k] += static_cast<float>(-0.5 * scale[k] * inv / ve * gxm);
    }
  }

 private:
  // The coefficients for these inputs: the load-time ones when `in` holds the very parameter
  // tensors they came from, else computed from `in` into the locals. ShapeError unless P channels.
  void resolve(const std::vector<const Tensor*>& in, int64_t P, std::vector<float>* a_local,
               std::vector<float>* c_local, const std::vector<float>** a, const std::vector<float>** c) const {
    bool same = precomputed_;
    for (std::size_t i = 1; same && i < 5; ++i) same = in[i]->raw() == params_[i - 1].raw();
    if (same) {
      *a = &a_;
      *c = &c_;
    } else {
      coefficients(*in[1], *in[2], *in[3], *in[4], a_local, c_local);
      *a = a_local;
      *c = c_local;
    }
    if (static_cast<int64_t>((*a)->size()) != P)
      fail_shape("parameters have " + std::to_string((*a)->size()) + " channels but X " + shape_str(in[0]->shape()) +
                 " has " + std::to_string(P));
  }

  static ValueInfo strip(ValueInfo v) {
    v.value = nullptr;
    return v;
  }

  // a = scale/sqrt(var + eps) and c = B - mean*a in double (var + eps can be tiny); ShapeError
  // when the four parameters differ in size.
  void coefficients(const Tensor& s, const Tensor& b, const Tensor& m, const Tensor& v, std::vector<float>* a,
                    std::vector<float>* c) const {
    const int64_t P = s.numel();
    if (b.numel() != P || m.numel() != P || v.numel() != P)
      fail_shape("scale, B, mean and var must have the same size, got " + shape_str(s.shape()) + ", " +
                 shape_str(b.shape()) + ", " + shape_str(m.shape()) + ", " + shape_str(v.shape()));
    a->resize(static_cast<std::size_t>(P));
    c->resize(static_cast<std::size_t>(P));
    for (int64_t k = 0; k < P; ++k) {
      const double ak = s.f32()[k] / std::sqrt(static_cast<double>(v.f32()[k]) + eps_);
      (*a)[static_cast<std::size_t>(k)] = static_cast<float>(ak);
      (*c)[static_cast<std::size_t>(k)] = static_cast<float>(b.f32()[k] - m.f32()[k] * ak);
    }
  }

  double eps_ = 1e-5;
  std::size_t num_outputs_ = 1;
  bool spatial_ = true;
  bool precomputed_ = false;
  std::vector<float> a_, c_;
  Tensor params_[4];  // scale, B, mean, var the coefficients were computed from
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(BatchNormalization, BatchNormalization)
