// What the elementwise unary ops (Sigmoid, Tanh, Elu, LeakyRelu, Softplus, Selu, HardSigmoid,
// HardSwish, Gelu, Exp, Log, Neg, Abs, Sqrt, Reciprocal, Erf) share: a float32 input, shape
// inference, the forward map and the VJP with its cotangent checks. Each op file adds its kind,
// its attributes and two per-element functors, which the base reaches through CRTP so that they
// inline into the parallel loops (no per-element virtual call):
//   forward_fn(): float(float x), y = f(x);
//   vjp_fn():     float(float v, float g), the input gradient f'(v) * g, where v is x or, for
//                 UnaryGrad::FromOutput, the forward output y (torch's formula for ops whose
//                 derivative is cheaper from y).
// With kInt64 (Neg, Abs) the op also maps int64 tensors (shape arithmetic; constant folding) through
// forward_i64_fn(): int64_t(int64_t); they have no gradient.
#pragma once

#include <string>

#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

/// What an op's vjp_fn() reads besides the cotangent.
enum class UnaryGrad { FromInput, FromOutput };

template <class Derived, UnaryGrad kGrad, bool kInt64 = false>
class UnaryOp : public Op {
 public:
  using Op::Op;

  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(in[0]->rank() - 2), /*broadcasts=*/false);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    ValueInfo o = in.at(0);
    if (!kInt64 || o.dtype != DType::Int64) check_float32(o.dtype);
    o.value = nullptr;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor& x = *in[0];
    if constexpr (kInt64) {
      if (x.dtype() == DType::Int64) {
        out[0] = ctx.alloc(DType::Int64, x.shape());
        const int64_t* px = x.i64();
        int64_t* py = out[0].i64();
        const auto f = derived().forward_i64_fn();
        kernels::parallel_for(x.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
        });
        return;
      }
    }
    check_float32(x.dtype());
    out[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::unary_map(x, out[0], ctx.threads(), derived().forward_fn());
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    if (!need[0] || kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& x = *in[0];
    const Tensor& g = *gout[0];
    if (x.dtype() == DType::Int64) fail_format("no gradient for an int64 input");
    check_float32(x.dtype());
    if (g.shape() != x.shape())
      fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(x.shape()));
    const Tensor* v = &x;
    if constexpr (kGrad == UnaryGrad::FromOutput) {
      if (out.empty() || out[0] == nullptr || out[0]->shape() != x.shape())
        fail_shape("the forward output does not match the input shape " + shape_str(x.shape()));
      v = out[0];
    }
    gin[0] = ctx.alloc(DType::Float32, x.shape());
    kernels::binary_map(v->f32(), g.f32(), gin[0].f32(), x.numel(), ctx.threads(), derived().vjp_fn());
  }

 private:
  const Derived& derived() const { return static_cast<const Derived&>(*this); }

  void check_float32(DType t) const {
    if (t != DType::Float32)
      fail_format(std::string(kInt64 ? "expects a float32 or int64 input, got " : "expects a float32 input, got ") +
                  dtype_name(t));
  }
};

}  // namespace onnxplain::ops
