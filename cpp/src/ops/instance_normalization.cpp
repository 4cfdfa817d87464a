// InstanceNormalization — https://onnx.ai/onnx/operators/onnx__InstanceNormalization.html
// (opsets 1, 6, 22; 6 drops consumed_inputs, 22 only adds bfloat16).
// X (N, C, D...) of rank >= 3, scale (C), B (C), epsilon (1e-5): per (n, c) plane of m = prod(D)
// values, mu = mean(x), var = mean((x - mu)^2) (biased), xh = (x - mu) / sqrt(var + epsilon),
//   Y = scale[c] * xh + B[c].
// VJP per plane (g = dY, gh = scale[c] g): dX = inv / m * (m gh - sum(gh) - xh sum(gh xh)),
// inv = 1 / sqrt(var + eps); dscale[c] = sum over n and the plane of g xh, dB[c] = sum of g (the
// parameter gradients only when a model feeds them from its inputs). Statistics in double.
// Kind: Normalization: LRP composites pass relevance through (as Zennit and iNNvestigate do with
// normalisation layers), the gradient family and DeepLIFT use the exact VJP. Not spatially local
// (the statistics span the whole map), so occlusion's local forward runs it on whole maps.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class InstanceNormalization final : public Op {
 public:
  explicit InstanceNormalization(const NodeDesc& d) : Op(d), eps_(d.attrs->get_float("epsilon", 1e-5f)) {
    for (std::size_t i = 0; i < 3; ++i)
      if (i >= d.input_present.size() || !d.input_present[i]) fail_format("expects 3 inputs (input, scale, B)");
  }
  OpKind kind() const override { return OpKind::Normalization; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    static const char* names[] = {"input", "scale", "B"};
    for (std::size_t i = 0; i < 3 && i < in.size(); ++i)
      if (in[i].dtype != DType::Float32)
        fail_format(std::string("expects float32 ") + names[i] + ", got " + dtype_name(in[i].dtype));
    const ValueInfo& x = in.at(0);
    if (x.has_rank && x.rank() < 3) fail_shape("input must have rank >= 3 (N, C, D...), got shape " + shape_str(x.shape));
    const int64_t C = x.has_rank ? x.shape[1] : -1;
    for (std::size_t i = 1; i < 3 && i < in.size(); ++i) {
      const ValueInfo& p = in[i];
      if (!p.has_rank) continue;
      if (p.rank() != 1) fail_shape(std::string(names[i]) + " must have shape (C), got " + shape_str(p.shape));
      if (C >= 0 && p.shape[0] >= 0 && p.shape[0] != C)
        fail_shape(std::string(names[i]) + " of shape " + shape_str(p.shape) + " does not match the " +
                   std::to_string(C) + " channels of input " + shape_str(x.shape));
    }
    ValueInfo y = x;
    y.value = nullptr;
    return {y};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Geo g = geometry(in);
    out[0] = ctx.alloc(DType::Float32, in[0]->shape());
    const float* px = in[0]->f32();
    const float* ps = in[1]->f32();
    const float* pb = in[2]->f32();
    float* py = out[0].f32();
    const int64_t m = g.m;
    kernels::parallel_for(g.planes, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const float* xi = px + pl * m;
        double mu, inv;
        stats(xi, m, &mu, &inv);
        const int64_t c = pl % g.C;
        // (x - mu) a + B, not a x + (B - mu a): with a tiny variance a is huge and the latter cancels.
        const double a = ps[c] * inv, t = pb[c];
        float* yi = py + pl * m;
        for (int64_t j = 0; j < m; ++j) yi[j] = static_cast<float>((xi[j] - mu) * a + t);
      }
    }, grain(m));
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Geo geo = geometry(in);
    if (kernels::zero_vjp(gout.empty() ? nullptr : gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.dtype() != DType::Float32 || g.shape() != in[0]->shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(in[0]->shape()));
    auto needs = [&](std::size_t i) { return i < need.size() && need[i] && i < in.size() && in[i]; };
    const int64_t m = geo.m, C = geo.C;
    const float* px = in[0]->f32();
    const float* ps = in[1]->f32();
    const float* pg = g.f32();
    float* pdx = nullptr;
    if (needs(0)) {
      gin[0] = ctx.alloc(DType::Float32, in[0]->shape());
      pdx = gin[0].f32();
    }
    // Per plane: sum g and sum g xh, for the parameter gradients.
    std::vector<double> sg(static_cast<std::size_t>(geo.planes)), sgx(static_cast<std::size_t>(geo.planes));
    kernels::parallel_for(geo.planes, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const float* xi = px + pl * m;
        const float* gi = pg + pl * m;
        double mu, inv;
        stats(xi, m, &mu, &inv);
        double s0 = 0.0, s1 = 0.0;
        for (int64_t j = 0; j < m; ++j) {
          s0 += gi[j];
          s1 += static_cast<double>(gi[j]) * (xi[j] - mu);
        }
        s1 *= inv;  // sum g xh
        sg[static_cast<std::size_t>(pl)] = s0;
        sgx[static_cast<std::size_t>(pl)] = s1;
        if (!pdx) continue;
        const double sc = ps[pl % C];
        // dX = sc inv (g - s0/m - xh s1/m)
        const double k = sc * inv, k0 = k * s0 / m, k1 = k * s1 * inv / m;
        float* di = pdx + pl * m;
        for (int64_t j = 0; j < m; ++j) di[j] = static_cast<float>(k * gi[j] - k0 - k1 * (xi[j] - mu));
      }
    }, grain(m));
    for (std::size_t i = 1; i < 3; ++i) {
      if (!needs(i)) continue;
      gin[i] = Tensor::zeros(DType::Float32, in[i]->shape());
      const std::vector<double>& src = i == 1 ? sgx : sg;
      std::vector<double> acc(static_cast<std::size_t>(C), 0.0);
      for (int64_t pl = 0; pl < geo.planes; ++pl) acc[static_cast<std::size_t>(pl % C)] += src[static_cast<std::size_t>(pl)];
      for (int64_t c = 0; c < C; ++c) gin[i].f32()[c] = static_cast<float>(acc[static_cast<std::size_t>(c)]);
    }
  }

 private:
  struct Geo {
    int64_t C = 0, planes = 0, m = 0;
  };

  Geo geometry(const std::vector<const Tensor*>& in) const {
    for (std::size_t i = 0; i < 3; ++i)
      if (in.size() <= i || !in[i] || in[i]->dtype() != DType::Float32) fail_format("expects float32 input, scale and B");
    const Tensor& x = *in[0];
    if (x.rank() < 3) fail_shape("input must have rank >= 3 (N, C, D...), got shape " + shape_str(x.shape()));
    Geo g;
    g.C = x.dim(1);
    for (std::size_t i = 1; i < 3; ++i)
      if (in[i]->rank() != 1 || in[i]->dim(0) != g.C)
        fail_shape(std::string(i == 1 ? "scale" : "B") + " of shape " + shape_str(in[i]->shape()) +
                   " does not match the " + std::to_string(g.C) + " channels of input " + shape_str(x.shape()));
    g.planes = x.dim(0) * g.C;
    g.m = g.planes == 0 ? 0 : x.numel() / g.planes;
    return g;
  }

  static int64_t grain(int64_t m) { return std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(4 * m, 1)); }

  // Mean and 1/sqrt(var + eps) of one plane, two passes in double.
  void stats(const float* x, int64_t m, double* mu, double* inv) const {
    double s = 0.0;
    for (int64_t j = 0; j < m; ++j) s += x[j];
    const double mean = m > 0 ? s / m : 0.0;
    double v = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      const double t = x[j] - mean;
      v += t * t;
    }
    *mu = mean;
    *inv = 1.0 / std::sqrt((m > 0 ? v / m : 0.0) + eps_);
  }

  double eps_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(InstanceNormalization, InstanceNormalization)
