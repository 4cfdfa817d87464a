// Gemm — https://onnx.ai/onnx/operators/onnx__Gemm.html (opsets 1, 6, 7, 9, 11, 13).
// Y[M,N] = alpha * A' * B' + beta * C, A' = transA ? A^T : A, B' = transB ? B^T : B, with the
// optional C broadcast one way to [M, N] (scalar, [N], [1,N], [M,1] or [M,N]). The `broadcast`
// attribute of opsets < 7 is not needed: any C that broadcasts is accepted.
// VJP (G = dY): dA' = alpha*G*B'^T, dB' = alpha*A'^T*G (transposed back for transA/transB),
// dC = beta*G summed over the axes C was broadcast along. forward() and vjp() compute only from
// their `in` (rules pass modified weights); nothing is cached at load.
// Kind: Linear (weight = input 1, bias = input 2 when given) when B is a constant at load, the
// usual fully connected layer; Product when B is itself an activation (attention-style products),
// since then there is no weight for the linear rules to modify.
#include <algorithm>
#include <cstring>

#include "kernels/gemm.hpp"
#include "kernels/reduce.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

class Gemm final : public Op {
 public:
  explicit Gemm(const NodeDesc& d) : Op(d) {
    alpha_ = d.attrs->get_float("alpha", 1.f);
    beta_ = d.attrs->get_float("beta", 1.f);
    trans_a_ = d.attrs->get_int("transA", 0) != 0;
    trans_b_ = d.attrs->get_int("transB", 0) != 0;
    has_c_ = d.input_present.size() > 2 && d.input_present[2];
    linear_ = d.const_inputs.size() > 1 && d.const_inputs[1] != nullptr;
  }
  OpKind kind() const override { return linear_ ? OpKind::Linear : OpKind::Product; }
  // dA reads B, dB reads A, dC neither; nothing reads Y.
  void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const override {
    bilinear_vjp_reads(constant, in, out);
  }
  int weight_input() const override { return linear_ ? 1 : -1; }
  int bias_input() const override { return linear_ && has_c_ ? 2 : -1; }
  int weight_neuron_axis(int64_t) const override { return linear_ ? (trans_b_ ? 0 : 1) : -1; }
  int out_neuron_axis(int64_t) const override { return linear_ ? 1 : -1; }
  float bias_scale() const override { return beta_; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    for (std::size_t i = 0; i < in.size() && i < 3; ++i)
      if (in[i].dtype != DType::Float32)
        fail_format("expects float32 inputs, input " + std::to_string(i) + " is " + dtype_name(in[i].dtype));
    const ValueInfo& a = in.at(0);
    const ValueInfo& b = in.at(1);
    // Caffe2's first ONNX exports (the zoo's original opset-3 files) fed Gemm a pooled [N, C, H, W].
    if (a.has_rank && a.rank() != 2)
      fail_shape("A must be 2-D, got shape " + shape_str(a.shape) +
                 "; Gemm takes a matrix: flatten A first (Flatten with axis=1, or Reshape to [N, -1])");
    if (b.has_rank && b.rank() != 2) fail_shape("B must be 2-D, got shape " + shape_str(b.shape));
    int64_t M = -1, K = -1, Kb = -1, N = -1;
    if (a.has_rank) {
      M = a.shape[trans_a_ ? 1 : 0];
      K = a.shape[trans_a_ ? 0 : 1];
    }
    if (b.has_rank) {
      Kb = b.shape[trans_b_ ? 1 : 0];
      N = b.shape[trans_b_ ? 0 : 1];
    }
    if (K >= 0 && Kb >= 0 && K != Kb) fail_shape(mismatch(a.shape, b.shape));
    if (has_c_ && in.size() > 2 && in[2].has_rank) check_c(in[2].shape, M, N);
    return {ValueInfo(DType::Float32, {M, N})};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* c = has_c_ && in.size() > 2 ? in[2] : nullptr;
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32) fail_format("expects float32 inputs A and B");
    if (a.rank() != 2) fail_shape("A must be 2-D, got shape " + shape_str(a.shape()));
    if (b.rank() != 2) fail_shape("B must be 2-D, got shape " + shape_str(b.shape()));
    const int64_t M = a.dim(trans_a_ ? 1 : 0), K = a.dim(trans_a_ ? 0 : 1);
    const int64_t Kb = b.dim(trans_b_ ? 1 : 0), N = b.dim(trans_b_ ? 0 : 1);
    if (K != Kb) fail_shape(mismatch(a.shape(), b.shape()));
    out[0] = ctx.alloc(DType::Float32, {M, N});
    float* y = out[0].f32();
    if (c && c->dtype() != DType::Float32) fail_format("C must be float32, got " + std::string(dtype_name(c->dtype())));
    if (c) check_c(c->shape(), M, N, true);
    float beta = 0.f;
    if (c && beta_ != 0.f) {
      broadcast_c(*c, M, N, y);
      beta = beta_;
    }
    kernels::sgemm(trans_a_, trans_b_, M, N, K, alpha_, a.f32(), a.dim(1), b.f32(), b.dim(1), beta, y, N);
  }

  // One row (a dense layer at batch 1) with a bias that is one value per output or none: the
  // sign-split products in one pass over B (kernels::gemv_sign_split).
  bool forward_sign_split(const std::vector<const Tensor*>& in, Tensor& pos, Tensor& neg, ExecContext& ctx,
                          const kernels::SignSplitMod& mod) const override {
    int64_t N = 0, K = 0;
    const Tensor* c = nullptr;
    if (!one_row_split(in, &N, &K, &c)) return false;
    pos = ctx.alloc(DType::Float32, {1, N});
    neg = ctx.alloc(DType::Float32, {1, N});
    float* pp = pos.f32();
    float* pn = neg.f32();
    kernels::gemv_sign_split(trans_b_, N, K, in[0]->f32(), in[1]->f32(), in[1]->dim(1), pp, pn, mod);
    const float* pc = c ? c->f32() : nullptr;
    const bool per_output = c && c->numel() == N && N != 1;
    // As the op on (x; W1, C1) and (x; W2, C2): alpha * product + beta * C1 or C2, the bias
    // modified as the weight (rules/lrp.cpp: PosPart / NegPart, GammaMod).
    const float g = mod.g;
    auto c1 = [&](float v) { return mod.gamma ? v + g * (v > 0.f ? v : 0.f) : std::max(v, 0.f); };
    auto c2 = [&](float v) { return mod.gamma ? v + g * (v < 0.f ? v : 0.f) : std::min(v, 0.f); };
    for (int64_t n = 0; n < N; ++n) {
      const float cv = pc ? pc[per_output ? n : 0] : 0.f;
      pp[n] = alpha_ * pp[n] + (pc ? beta_ * c1(cv) : 0.f);
      pn[n] = alpha_ * pn[n] + (pc ? beta_ * c2(cv) : 0.f);
    }
    return true;
  }

  bool vjp_sign_split(const std::vector<const Tensor*>& in, const Tensor& g1, const Tensor& g2, Tensor& gx,
                      ExecContext& ctx, const kernels::SignSplitMod& mod) const override {
    int64_t N = 0, K = 0;
    const Tensor* c = nullptr;
    if (!one_row_split(in, &N, &K, &c)) return false;
    if (g1.dtype() != DType::Float32 || g2.dtype() != DType::Float32 || g1.shape() != Shape{1, N} ||
        g2.shape() != Shape{1, N})
      fail_shape("cotangents of shape " + shape_str(g1.shape()) + " and " + shape_str(g2.shape()) +
                 " do not match the output shape " + shape_str({1, N}));
    gx = ctx.alloc(DType::Float32, {1, K});
    float* pg = gx.f32();
    kernels::gemv_sign_split_vjp(trans_b_, N, K, g1.f32(), g2.f32(), in[1]->f32(), in[1]->dim(1), pg, mod);
    if (alpha_ != 1.f)
      for (int64_t k = 0; k < K; ++k) pg[k] *= alpha_;
    return true;
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* c = has_c_ && in.size() > 2 ? in[2] : nullptr;
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32) fail_format("expects float32 inputs A and B");
    if (a.rank() != 2) fail_shape("A must be 2-D, got shape " + shape_str(a.shape()));
    if (b.rank() != 2) fail_shape("B must be 2-D, got shape " + shape_str(b.shape()));
    const int64_t M = a.dim(trans_a_ ? 1 : 0), K = a.dim(trans_a_ ? 0 : 1);
    const int64_t Kb = b.dim(trans_b_ ? 1 : 0), N = b.dim(trans_b_ ? 0 : 1);
    if (K != Kb) fail_shape(mismatch(a.shape(), b.shape()));
    const bool need_a = need.size() > 0 && need[0], need_b = need.size() > 1 && need[1];
    const bool need_c = c && need.size() > 2 && need[2];
    const Tensor* g = gout.empty() ? nullptr : gout[0];
    if (!g) {
      if (need_a) gin[0] = Tensor::zeros(DType::Float32, a.shape());
      if (need_b) gin[1] = Tensor::zeros(DType::Float32, b.shape());
      if (need_c) gin[2] = Tensor::zeros(DType::Float32, c->shape());
      return;
    }
    if (g->dtype() != DType::Float32 || g->shape() != Shape{M, N})
      fail_shape("cotangent of shape " + shape_str(g->shape()) + " does not match the output shape " +
                 shape_str({M, N}));
    const float* pg = g->f32();
    const int64_t lda = a.dim(1), ldb = b.dim(1);
    if (need_a) {
      gin[0] = ctx.alloc(DType::Float32, a.shape());
      if (trans_a_)  // A is [K, M]: dA = alpha * B' * G^T
        kernels::sgemm(trans_b_, true, K, M, N, alpha_, b.f32(), ldb, pg, N, 0.f, gin[0].f32(), M);
      else  // dA = alpha * G * B'^T
        kernels::sgemm(false, !trans_b_, M, K, N, alpha_, pg, N, b.f32(), ldb, 0.f, gin[0].f32(), K);
    }
    if (need_b) {
      gin[1] = ctx.alloc(DType::Float32, b.shape());
      if (trans_b_)  // B is [N, K]: dB = alpha * G^T * A'
        kernels::sgemm(true, trans_a_, N, K, M, alpha_, pg, N, a.f32(), lda, 0.f, gin[1].f32(), K);
      else  // dB = alpha * A'^T * G
        kernels::sgemm(!trans_a_, false, K, N, M, alpha_, a.f32(), lda, pg, N, 0.f, gin[1].f32(), N);
    }
    if (need_c) {
      if (c->dtype() != DType::Float32) fail_format("C must be float32, got " + std::string(dtype_name(c->dtype())));
      check_c(c->shape(), M, N, true);
      // C's rows/cols of size 1 were repeated over Y's: their gradient sums over those axes.
      const int64_t rows = c->rank() == 2 ? c->dim(0) : 1;
      const int64_t cols = c->rank() >= 1 ? c->dim(c->rank() - 1) : 1;
      gin[2] = ctx.alloc(DType::Float32, c->shape());
      float* pc = gin[2].f32();
      kernels::reduce_sum(pg, {M, N}, {rows == 1, cols == 1}, pc, ctx.threads());
      for (int64_t i = 0; i < gin[2].numel(); ++i) pc[i] *= beta_;
    }
  }

 private:
  std::string mismatch(const Shape& a, const Shape& b) const {
    return "inner dimensions differ: A " + shape_str(a) + " (transA=" + std::to_string(trans_a_) + ") and B " +
           shape_str(b) + " (transB=" + std::to_string(trans_b_) + ")";
  }

  // C must broadcast one way (C's dims 1 or equal, aligned from the right) to [M, N]. At run time
  // (`exact`) a size-1 C dim must also be the only shape broadcast_c reads as "repeat".
  void check_c(const Shape& c, int64_t M, int64_t N, bool exact = false) const {
    const int64_t target[2] = {M, N};
    bool ok = c.size() <= 2;
    for (std::size_t k = 0; ok && k < c.size(); ++k) {
      const int64_t t = target[2 - c.size() + k];
      ok = c[k] == 1 || c[k] == t || (!exact && (c[k] < 0 || t < 0));
    }
    if (!ok)
      fail_shape("C of shape " + shape_str(c) + " does not broadcast to the output shape " + shape_str({M, N}));
  }

  // The inputs forward_sign_split serves: a linear Gemm on one untransposed row, wide enough
  // to be bound by reading B, with C absent or one value per output (or one for all).
  bool one_row_split(const std::vector<const Tensor*>& in, int64_t* N, int64_t* K, const Tensor** c) const {
    if (!linear_ || trans_a_ || in.size() < 2 || !in[0] || !in[1]) return false;
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || a.rank() != 2 || b.rank() != 2 || a.dim(0) != 1)
      return false;
    *K = a.dim(1);
    *N = b.dim(trans_b_ ? 0 : 1);
    if (b.dim(trans_b_ ? 1 : 0) != *K || *N * *K < (int64_t{1} << 16)) return false;
    *c = has_c_ && in.size() > 2 && beta_ != 0.f ? in[2] : nullptr;
    if (*c) {
      const Tensor& ct = **c;
      if (ct.dtype() != DType::Float32 || (ct.numel() != *N && ct.numel() != 1)) return false;
      if (ct.rank() == 2 && ct.dim(0) != 1) return false;  // [N, 1] with N == 1 only
    }
    return true;
  }

  static void broadcast_c(const Tensor& c, int64_t M, int64_t N, float* y) {
    const float* pc = c.f32();
    const int64_t rows = c.rank() == 2 ? c.dim(0) : 1;
    const int64_t cols = c.rank() >= 1 ? c.dim(c.rank() - 1) : 1;
    for (int64_t i = 0; i < M; ++i) {
      float* yi = y + i * N;
      const float* ci = pc + (rows == 1 ? 0 : i) * cols;
      if (cols == 1)
        std::fill(yi, yi + N, ci[0]);
      else
        std::memcpy(yi, ci, static_cast<std::size_t>(N) * sizeof(float));
    }
  }

  float alpha_ = 1.f, beta_ = 1.f;
  bool trans_a_ = false, trans_b_ = false, has_c_ = false, linear_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Gemm, Gemm)
