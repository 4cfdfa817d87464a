// MatMul — https://onnx.ai/onnx/operators/onnx__MatMul.html (opsets 1, 9, 13).
// numpy.matmul: Y[..., M, N] = A[..., M, K] * B[..., K, N], the batch dims broadcast; a 1-D A is
// a row [1, K] and a 1-D B a column [K, 1], the added axis dropped from Y. The fuse_matmul_add
// pass may append a third input, a bias [N] added along Y's last axis (tf2onnx's Dense layer).
// VJP (G = dY per batch): dA = G*B^T, dB = A^T*G, each summed over the batch dims its operand
// was broadcast along; dbias = G summed over all rows. Computed only from `in` (rules pass
// modified weights); nothing is cached at load.
// Kind: Linear (weight = input 1, bias = input 2 when given) when B is a constant 2-D matrix at
// load, so the linear rules can modify it; Product when B is an activation (attention scores) or
// not a matrix, since then there is no weight.
#include <algorithm>
#include <string>

#include "kernels/gemm.hpp"
#include "kernels/reduce.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {

// Output shape of numpy.matmul on known or partly known shapes (-1 = unknown dim). Returns "" or
// what does not fit.
std::string matmul_shape(const Shape& a, const Shape& b, Shape* out) {
  if (a.empty() || b.empty())
    return "operands must have rank >= 1, got shapes " + shape_str(a) + " and " + shape_str(b);
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  const int64_t K = a.back(), Kb = b_vec ? b[0] : b[b.size() - 2];
  if (K >= 0 && Kb >= 0 && K != Kb)
    return "inner dimensions differ: A " + shape_str(a) + " has K = " + std::to_string(K) + ", B " + shape_str(b) +
           " has K = " + std::to_string(Kb);
  const std::size_t na = a_vec ? 0 : a.size() - 2, nb = b_vec ? 0 : b.size() - 2;
  const std::size_t nbatch = std::max(na, nb);
  out->assign(nbatch, 1);
  for (std::size_t k = 0; k < nbatch; ++k) {
    // Aligned from the right; missing leading dims are 1.
    const int64_t da = k + na >= nbatch ? a[k + na - nbatch] : 1;
    const int64_t db = k + nb >= nbatch ? b[k + nb - nbatch] : 1;
    int64_t d;
    if (da == 1)
      d = db;
    else if (db == 1)
      d = da;
    else if (da < 0)
      d = db;
    else if (db < 0 || da == db)
      d = da;
    else
      return "batch dimensions of A " + shape_str(a) + " and B " + shape_str(b) + " do not broadcast";
    (*out)[k] = d;
  }
  if (!a_vec) out->push_back(a[a.size() - 2]);
  if (!b_vec) out->push_back(b.back());
  return "";
}

class MatMul final : public Op {
 public:
  explicit MatMul(const NodeDesc& d) : Op(d) {
    has_bias_ = d.input_present.size() > 2 && d.input_present[2];
    const Tensor* w = d.const_inputs.size() > 1 ? d.const_inputs[1] : nullptr;
    linear_ = w && w->rank() == 2 && w->dtype() == DType::Float32;
  }
  OpKind kind() const override { return linear_ ? OpKind::Linear : OpKind::Product; }
  int weight_input() const override { return linear_ ? 1 : -1; }
  int bias_input() const override { return linear_ && has_bias_ ? 2 : -1; }
  // The constant B is [K, N]: neuron n is column n, and Y's last axis.
  int weight_neuron_axis(int64_t) const override { return linear_ ? 1 : -1; }
  int out_neuron_axis(int64_t out_rank) const override { return linear_ && out_rank >= 1 ? static_cast<int>(out_rank - 1) : -1; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    for (std::size_t i = 0; i < in.size() && i < 3; ++i)
      if (in[i].dtype != DType::Float32)
        fail_format("expects float32 inputs, input " + std::to_string(i) + " is " + dtype_name(in[i].dtype));
    const ValueInfo& a = in.at(0);
    const ValueInfo& b = in.at(1);
    if (!a.has_rank || !b.has_rank) {
      ValueInfo o;
      o.dtype = DType::Float32;
      return {o};
    }
    Shape y;
    std::string err = matmul_shape(a.shape, b.shape, &y);
    if (!err.empty()) fail_shape(err);
    if (has_bias_ && in.size() > 2 && in[2].has_rank) {
      const int64_t N = b.rank() == 1 ? 1 : b.shape.back();
      const Shape& bs = in[2].shape;
      bool known = std::all_of(bs.begin(), bs.end(), [](int64_t d) { return d >= 0; });
      if (known && N >= 0 && shape_numel(bs) != N)
        fail_shape("bias of shape " + shape_str(bs) + " does not match the " + std::to_string(N) + " output columns");
    }
    return {ValueInfo(DType::Float32, y)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* bias = has_bias_ && in.size() > 2 ? in[2] : nullptr;
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || (bias && bias->dtype() != DType::Float32))
      fail_format("expects float32 inputs");
    Shape ys;
    std::string err = matmul_shape(a.shape(), b.shape(), &ys);
    if (!err.empty()) fail_shape(err);
    const bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
    const int64_t M = a_vec ? 1 : a.dim(a.rank() - 2), K = a.dim(a.rank() - 1);
    const int64_t N = b_vec ? 1 : b.dim(b.rank() - 1);
    if (bias && bias->numel() != N)
      fail_shape("bias of shape " + shape_str(bias->shape()) + " does not match the " + std::to_string(N) +
                 " output columns");

    out[0] = ctx.alloc(DType::Float32, ys);
    float* y = out[0].f32();
    const std::size_t nbatch = ys.size() - (a_vec ? 0 : 1) - (b_vec ? 0 : 1);
    int64_t out_batch = 1;
    for (std::size_t k = 0; k < nbatch; ++k) out_batch *= ys[k];
    float beta = 0.f;
    if (bias) {
      const int64_t rows = out_batch * M;
      const float* pb = bias->f32();
      for (int64_t r = 0; r < rows; ++r) std::copy(pb, pb + N, y + r * N);
      beta = 1.f;
    }
    if (out[0].numel() == 0) return;

    const int64_t a_batch = a.numel() / std::max<int64_t>(M * K, 1);
    const int64_t b_batch = b.numel() / std::max<int64_t>(K * N, 1);
    const float* pa = a.f32();
    const float* pb = b.f32();
    // A row-major [batch.., M, K] is one [batch*M, K] matrix: with a single B (the common
    // [B, S, K] x [K, N] layer) the whole product is one GEMM.
    if (K == 0 || b_batch == 1) {
      kernels::sgemm(false, false, out_batch * M, N, K, 1.f, pa, K, pb, N, beta, y, N);
      return;
    }
    if (a_batch == 1) {
      for (int64_t i = 0; i < out_batch; ++i)
        kernels::sgemm(false, false, M, N, K, 1.f, pa, K, pb + i * K * N, N, beta, y + i * M * N, N);
      return;
    }
    // General broadcast over the batch dims: element strides of A's and B's batch dims (0 where
    // broadcast), aligned to the output's batch dims.
    std::vector<int64_t> sa(nbatch, 0), sb(nbatch, 0);
    const std::vector<int64_t> dims(ys.begin(), ys.begin() + static_cast<std::ptrdiff_t>(nbatch));
    batch_strides(a.shape(), a_vec ? 1 : 2, M * K, &sa);
    batch_strides(b.shape(), b_vec ? 1 : 2, K * N, &sb);
    std::vector<int64_t> idx(nbatch, 0);
    int64_t oa = 0, ob = 0;
    for (int64_t i = 0; i < out_batch; ++i) {
      kernels::sgemm(false, false, M, N, K, 1.f, pa + oa, K, pb + ob, N, beta, y + i * M * N, N);
      // Odometer increment of the batch index, keeping the operand offsets in step.
      for (std::size_t k = nbatch; k-- > 0;) {
        oa += sa[k];
        ob += sb[k];
        if (++idx[k] < dims[k]) break;
        oa -= sa[k] * dims[k];
        ob -= sb[k] * dims[k];
        idx[k] = 0;
      }
    }
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* bias = has_bias_ && in.size() > 2 ? in[2] : nullptr;
    if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || (bias && bias->dtype() != DType::Float32))
      fail_format("expects float32 inputs");
    Shape ys;
    std::string err = matmul_shape(a.shape(), b.shape(), &ys);
    if (!err.empty()) fail_shape(err);
    const bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
    const int64_t M = a_vec ? 1 : a.dim(a.rank() - 2), K = a.dim(a.rank() - 1);
    const int64_t N = b_vec ? 1 : b.dim(b.rank() - 1);
    const bool need_a = need.size() > 0 && need[0], need_b = need.size() > 1 && need[1];
    const bool need_bias = bias && need.size() > 2 && need[2];
    const Tensor* g = gout.empty() ? nullptr : gout[0];
    if (need_a) gin[0] = Tensor::zeros(DType::Float32, a.shape());
    if (need_b) gin[1] = Tensor::zeros(DType::Float32, b.shape());
    if (need_bias) gin[2] = Tensor::zeros(DType::Float32, bias->shape());
    if (!g) return;
    if (g->dtype() != DType::Float32 || g->shape() != ys)
      fail_shape("cotangent of shape " + shape_str(g->shape()) + " does not match the output shape " + shape_str(ys));
    if (bias && bias->numel() != N)
      fail_shape("bias of shape " + shape_str(bias->shape()) + " does not match the " + std::to_string(N) +
                 " output columns");
    const std::size_t nbatch = ys.size() - (a_vec ? 0 : 1) - (b_vec ? 0 : 1);
    int64_t out_batch = 1;
    for (std::size_t k = 0; k < nbatch; ++k) out_batch *= ys[k];
    const float* pg = g->f32();
    if (need_bias)
      kernels::reduce_sum(pg, {out_batch * M, N}, {true, false}, gin[2].f32(), ctx.threads());
    if ((!need_a && !need_b) || g->numel() == 0 || K == 0) return;  // the zeros are the answer

    const int64_t b_batch = b.numel() / (K * N);
    const float* pa = a.f32();
    const float* pb = b.f32();
    float* da = need_a ? gin[0].f32() : nullptr;
    float* db = need_b ? gin[1].f32() : nullptr;
    if (b_batch == 1) {
      // A single B: A's batch dims are the output's, so its rows stack into one [batch*M, K] matrix.
      if (da) kernels::sgemm(false, true, out_batch * M, K, N, 1.f, pg, N, pb, N, 0.f, da, K);
      if (db) kernels::sgemm(true, false, K, N, out_batch * M, 1.f, pa, K, pg, N, 0.f, db, N);
      return;
    }
    // One GEMM pair per output batch, accumulating into the broadcast operand's block.
    std::vector<int64_t> sa(nbatch, 0), sb(nbatch, 0);
    const std::vector<int64_t> dims(ys.begin(), ys.begin() + static_cast<std::ptrdiff_t>(nbatch));
    batch_strides(a.shape(), a_vec ? 1 : 2, M * K, &sa);
    batch_strides(b.shape(), b_vec ? 1 : 2, K * N, &sb);
    std::vector<int64_t> idx(nbatch, 0);
    int64_t oa = 0, ob = 0;
    for (int64_t i = 0; i < out_batch; ++i) {
      const float* gi = pg + i * M * N;
      if (da) kernels::sgemm(false, true, M, K, N, 1.f, gi, N, pb + ob, N, 1.f, da + oa, K);
      if (db) kernels::sgemm(true, false, K, N, M, 1.f, pa + oa, K, gi, N, 1.f, db + ob, N);
      for (std::size_t k = nbatch; k-- > 0;) {
        oa += sa[k];
        ob += sb[k];
        if (++idx[k] < dims[k]) break;
        oa -= sa[k] * dims[k];
        ob -= sb[k] * dims[k];
        idx[k] = 0;
      }
    }
  }

 private:
  // Strides (in elements) of the batch dims of a tensor of shape `s` whose last `mat` dims form
  // one matrix of `mat_numel` elements, right-aligned into `st`; broadcast dims (size 1) get 0.
  static void batch_strides(const Shape& s, std::size_t mat, int64_t mat_numel, std::vector<int64_t>* st) {
    const std::size_t nb = s.size() - mat;
    int64_t stride = mat_numel;
    for (std::size_t k = nb; k-- > 0;) {
      (*st)[st->size() - nb + k] = s[k] == 1 ? 0 : stride;
      stride *= s[k];
    }
  }

  bool has_bias_ = false;
  bool linear_ = false;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(MatMul, MatMul)
