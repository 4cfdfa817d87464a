// LayerNormalization — https://onnx.ai/onnx/operators/onnx__LayerNormalization.html (opset 17).
// X of rank r, axis a (default -1, negative counts from the end): each row of the D = prod(X.shape[a:])
// trailing values is normalised, mu = mean(x), var = mean((x - mu)^2), inv = 1/sqrt(var + epsilon),
//   Y = (x - mu) inv * Scale + B   (Scale and the optional B broadcast to X.shape[a:]),
// optional outputs Mean = mu and InvStdDev = inv of shape X.shape[:a] + [1] * (r - a).
// stash_type (1 = float32) only names the precision of the statistics; they are taken in double
// here whatever it says.
// VJP per row (xh = (x - mu) inv, gh = g * Scale, gm / gi the cotangents of Mean / InvStdDev):
//   dX = inv (gh - mean(gh) - xh mean(gh xh)) + gm / D - gi inv^2 xh / D,
// dScale = sum over rows of g xh and dB = sum of g, reduced to their own (broadcast) shapes.
// Kind: Normalization (LRP passes relevance through, as for the other normalisation layers; the
// gradient family and DeepLIFT use the exact VJP). Not spatially local.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class LayerNormalization final : public Op {
 public:
  explicit LayerNormalization(const NodeDesc& d)
      : Op(d),
        axis_(d.attrs->get_int("axis", -1)),
        eps_(d.attrs->get_float("epsilon", 1e-5f)),
        num_outputs_(std::max<std::size_t>(d.num_outputs, 1)) {
    if (d.input_present.size() < 2 || !d.input_present[0] || !d.input_present[1])
      fail_format("expects the inputs X and Scale");
    has_bias_ = d.input_present.size() > 2 && d.input_present[2];
    const int64_t st = d.attrs->get_int("stash_type", 1);
    if (st != 1) fail_format("stash_type " + std::to_string(st) + " is not supported (only 1, float32)");
  }
  OpKind kind() const override { return OpKind::Normalization; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    for (std::size_t i = 0; i < in.size() && i < 3; ++i)
      if (in[i].dtype != DType::Float32)
        fail_format("expects float32 inputs, input " + std::to_string(i) + " is " + dtype_name(in[i].dtype));
    const ValueInfo& x = in.at(0);
    std::vector<ValueInfo> outs;
    ValueInfo y;
    y.dtype = DType::Float32;
    ValueInfo stat = y;
    if (x.has_rank) {
      const int64_t a = axis_of(x.rank());
      y = ValueInfo(DType::Float32, x.shape);
      Shape ss(x.shape.begin(), x.shape.begin() + a);
      ss.resize(x.shape.size(), 1);
      stat = ValueInfo(DType::Float32, ss);
      const Shape tail(x.shape.begin() + a, x.shape.end());
      for (std::size_t i = 1; i < in.size() && i < 3; ++i)
        if (in[i].has_rank) check_broadcast(in[i].shape, tail, i);
    }
    outs.push_back(y);
    for (std::size_t k = 1; k < num_outputs_; ++k) outs.push_back(stat);
    return outs;
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Geo g = geometry(in);
    const Tensor& x = *in[0];
    out[0] = ctx.alloc(DType::Float32, x.shape());
    Shape ss(x.shape().begin(), x.shape().begin() + g.axis);
    ss.resize(x.shape().size(), 1);
    for (std::size_t k = 1; k < out.size(); ++k) out[k] = ctx.alloc(DType::Float32, ss);
    float* pmu = out.size() > 1 ? out[1].f32() : nullptr;
    float* pinv = out.size() > 2 ? out[2].f32() : nullptr;
    const float* px = x.f32();
    float* py = out[0].f32();
    const int64_t D = g.D;
    kernels::parallel_for(g.rows, ctx.threads(), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* xi = px + r * D;
        double mu, inv;
        stats(xi, D, &mu, &inv);
        if (pmu) pmu[r] = static_cast<float>(mu);
        if (pinv) pinv[r] = static_cast<float>(inv);
        float* yi = py + r * D;
        for (int64_t j = 0; j < D; ++j) {
          const float xh = static_cast<float>((xi[j] - mu) * inv);
          yi[j] = xh * g.scale[j] + (g.bias.empty() ? 0.f : g.bias[j]);
        }
      }
    }, grain(D));
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Geo geo = geometry(in);
    auto needs = [&](std::size_t i) { return i < need.size() && need[i] && i < in.size() && in[i]; };
    const Tensor& x = *in[0];
    const Tensor* gk[3] = {nullptr, nullptr, nullptr};
    for (std::size_t k = 0; k < gout.size() && k < 3; ++k) {
      gk[k] = gout[k];
      if (!gk[k]) continue;
      const int64_t want = k == 0 ? x.numel() : geo.rows;
      if (gk[k]->dtype() != DType::Float32 || gk[k]->numel() != want || (k == 0 && gk[k]->shape() != x.shape()))
        fail_shape("cotangent of output " + std::to_string(k) + " has shape " + shape_str(gk[k]->shape()) +
                   ", which does not fit input " + shape_str(x.shape()));
    }
    const int64_t D = geo.D, R = geo.rows;
    const float* px = x.f32();
    const float* pg = gk[0] ? gk[0]->f32() : nullptr;
    const float* pgm = gk[1] ? gk[1]->f32() : nullptr;
    const float* pgi = gk[2] ? gk[2]->f32() : nullptr;
    float* pdx = nullptr;
    if (needs(0)) {
      gin[0] = ctx.alloc(DType::Float32, x.shape());
      pdx = gin[0].f32();
    }
    const bool params = needs(1) || (has_bias_ && needs(2));
    // Parameter gradients in the normalised (D) layout, summed per thread, then over threads.
    const int threads = ctx.threads();
    std::vector<std::vector<double>> dsc(static_cast<std::size_t>(threads)), dbi(static_cast<std::size_t>(threads));
    const int64_t chunks = R < threads ? std::max<int64_t>(R, 1) : threads;
    kernels::parallel_for(chunks, threads, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c) {
        std::vector<double>* ds = nullptr;
        std::vector<double>* db = nullptr;
        if (params && pg) {
          ds = &dsc[static_cast<std::size_t>(c)];
          db = &dbi[static_cast<std::size_t>(c)];
          ds->assign(static_cast<std::size_t>(D), 0.0);
          db->assign(static_cast<std::size_t>(D), 0.0);
        }
        for (int64_t r = R * c / chunks; r < R * (c + 1) / chunks; ++r) {
          const float* xi = px + r * D;
          const float* gi = pg ? pg + r * D : nullptr;
          double mu, inv;
          stats(xi, D, &mu, &inv);
          double s0 = 0.0, s1 = 0.0;  // sum gh, sum gh xh
          for (int64_t j = 0; gi && j < D; ++j) {
            const double xh = (xi[j] - mu) * inv, gh = static_cast<double>(gi[j]) * geo.scale[j];
            s0 += gh;
            s1 += gh * xh;
            if (ds) {
              (*ds)[static_cast<std::size_t>(j)] += gi[j] * xh;
              (*db)[static_cast<std::size_t>(j)] += gi[j];
            }
          }
          if (!pdx) continue;
          const double gm = pgm ? pgm[r] : 0.0, gv = pgi ? pgi[r] : 0.0;
          float* di = pdx + r * D;
          for (int64_t j = 0; j < D; ++j) {
            const double xh = (xi[j] - mu) * inv;
            const double gh = gi ? static_cast<double>(gi[j]) * geo.scale[j] : 0.0;
            di[j] = static_cast<float>(inv * (gh - s0 / D - xh * s1 / D) + gm / D - gv * inv * inv * xh / D);
          }
        }
      }
    }, 1);
    for (std::size_t i = 1; i < 3; ++i) {
      if (!needs(i) || (i == 2 && !has_bias_)) continue;
      const Tensor& p = *in[i];
      std::vector<double> acc(static_cast<std::size_t>(p.numel()), 0.0);
      for (const auto& part : (i == 1 ? dsc : dbi))
        for (int64_t j = 0; j < static_cast<int64_t>(part.size()); ++j)
          acc[static_cast<std::size_t>(geo.index[i - 1][static_cast<std::size_t>(j)])] += part[static_cast<std::size_t>(j)];
      gin[i] = ctx.alloc(DType::Float32, p.shape());
      for (int64_t j = 0; j < p.numel(); ++j) gin[i].f32()[j] = static_cast<float>(acc[static_cast<std::size_t>(j)]);
    }
  }

 private:
  struct Geo {
    int64_t axis = 0, rows = 0, D = 0;
    std::vector<float> scale, bias;           // expanded to D
    std::vector<int64_t> index[2];            // position j of the D values -> entry of Scale / B
  };

  int64_t axis_of(int64_t rank) const {
    const int64_t a = axis_ < 0 ? axis_ + rank : axis_;
    if (a < 0 || a >= rank)
      fail_format("axis " + std::to_string(axis_) + " is out of range for an input of rank " + std::to_string(rank));
    return a;
  }

  void check_broadcast(const Shape& p, const Shape& tail, std::size_t i) const {
    const char* name = i == 1 ? "Scale" : "B";
    bool ok = p.size() <= tail.size();
    for (std::size_t k = 0; ok && k < p.size(); ++k) {
      const int64_t pd = p[p.size() - 1 - k], td = tail[tail.size() - 1 - k];
      ok = pd < 0 || td < 0 || pd == 1 || pd == td;
    }
    if (!ok)
      fail_shape(std::string(name) + " of shape " + shape_str(p) + " does not broadcast to the normalised shape " +
                 shape_str(tail));
  }

  Geo geometry(const std::vector<const Tensor*>& in) const {
    for (std::size_t i = 0; i < in.size() && i < 3; ++i)
      if (in[i] && in[i]->dtype() != DType::Float32) fail_format("expects float32 inputs");
    const Tensor& x = *in[0];
    Geo g;
    g.axis = axis_of(x.rank());
    const Shape tail(x.shape().begin() + g.axis, x.shape().end());
    g.D = 1;
    for (int64_t t : tail) g.D *= t;
    g.rows = g.D == 0 ? 0 : x.numel() / g.D;
    for (std::size_t i = 1; i < 3; ++i) {
      const Tensor* p = i < in.size() ? in[i] : nullptr;
      if (i == 2 && (!has_bias_ || !p)) continue;
      check_broadcast(p->shape(), tail, i);
      // Index of each of the D positions in p (right-aligned broadcasting).
      std::vector<int64_t>& idx = g.index[i - 1];
      idx.resize(static_cast<std::size_t>(g.D));
      const Shape& ps = p->shape();
      const std::size_t off = tail.size() - ps.size();
      for (int64_t j = 0; j < g.D; ++j) {
        int64_t rem = j, pi = 0, stride = 1;
        for (std::size_t k = tail.size(); k-- > 0;) {
          const int64_t c = rem % tail[k];
          rem /= tail[k];
          if (k >= off) {
            const int64_t pd = ps[k - off];
            if (pd != 1) pi += c * stride;
            stride *= pd;
          }
        }
        idx[static_cast<std::size_t>(j)] = pi;
      }
      std::vector<float>& v = i == 1 ? g.scale : g.bias;
      v.resize(static_cast<std::size_t>(g.D));
      for (int64_t j = 0; j < g.D; ++j) v[static_cast<std::size_t>(j)] = p->f32()[idx[static_cast<std::size_t>(j)]];
    }
    return g;
  }

  static int64_t grain(int64_t D) { return std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(4 * D, 1)); }

  void stats(const float* x, int64_t D, double* mu, double* inv) const {
    double s = 0.0;
    for (int64_t j = 0; j < D; ++j) s += x[j];
    const double mean = D > 0 ? s / D : 0.0;
    double v = 0.0;
    for (int64_t j = 0; j < D; ++j) {
      const double t = x[j] - mean;
      v += t * t;
    }
    *mu = mean;
    *inv = 1.0 / std::sqrt((D > 0 ? v / D : 0.0) + eps_);
  }

  int64_t axis_;
  double eps_;
  std::size_t num_outputs_;
  bool has_bias_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(LayerNormalization, LayerNormalization)
