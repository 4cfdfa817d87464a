// BatchNormalization — https://onnx.ai/onnx/operators/onnx__BatchNormalization.html
// (opsets 7, 9, 14, 15; inference mode only).
// y = scale * (x - mean) / sqrt(var + epsilon) + B per channel (axis 1) of an input of rank >= 2,
// computed as y = a*x + c with a = scale/sqrt(var + eps), c = B - mean*a. Opset 7's spatial = 0
// has one parameter per (channel, position), i.e. over all of x's axes but the first.
// training_mode = 1 (batch statistics) is rejected: models are explained as exported in eval mode.
// Extra outputs (running / saved statistics, training only) get the input mean and var unchanged.
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
      precomputed_ = true;
    }
  }
  OpKind kind() const override { return OpKind::Normalization; }

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
    const std::vector<float>* a = &a_;
    const std::vector<float>* c = &c_;
    if (!precomputed_) {
      coefficients(*in[1], *in[2], *in[3], *in[4], &a_local, &c_local);
      a = &a_local;
      c = &c_local;
    }
    if (static_cast<int64_t>(a->size()) != P)
      fail_shape("parameters have " + std::to_string(a->size()) + " channels but X " + shape_str(x.shape()) + " has " +
                 std::to_string(P));
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

 private:
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
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(BatchNormalization, BatchNormalization)
