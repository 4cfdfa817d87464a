// What Sum, Mean, Max and Min share: 1..N inputs of one dtype, combined elementwise. Opsets 6 and 7
// require every input to have the same shape; from opset 8 on they broadcast multidirectionally
// (numpy rules over all N). The forward folds left to right, ((x0 op x1) op x2) ..., each step
// through one broadcast kernel (written in place once the running result has the output's
// shape). The VJPs: Sum and Mean send the cotangent (over N for Mean) to every input, summed back
// over the dims it was broadcast along; Max and Min send each output's cotangent to its winner,
// the first input (lowest index) holding the maximum / minimum, or the first NaN (Max and Min
// propagate NaN, as onnxruntime). Each op file picks its mode, kind and opsets.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

enum class VariadicMode { Sum, Mean, Max, Min };

namespace variadic {
// Whether b replaces the running a: NaN wins (and stays), ties keep a (the earlier input).
inline bool beats_max(float a, float b) { return a == a && (b > a || b != b); }
inline bool beats_min(float a, float b) { return a == a && (b < a || b != b); }

struct MaxFn {
  float operator()(float a, float b) const { return beats_max(a, b) ? b : a; }
  int64_t operator()(int64_t a, int64_t b) const { return b > a ? b : a; }
};
struct MinFn {
  float operator()(float a, float b) const { return beats_min(a, b) ? b : a; }
  int64_t operator()(int64_t a, int64_t b) const { return b < a ? b : a; }
};
}  // namespace variadic

template <VariadicMode kMode>
class VariadicOp : public Op {
 public:
  static constexpr bool kSelect = kMode == VariadicMode::Max || kMode == VariadicMode::Min;

  explicit VariadicOp(const NodeDesc& d) : Op(d), opset_(d.opset), same_shape_(d.opset > 0 && d.opset < 8) {
    if (d.input_present.empty()) fail_format("needs at least one input");
    for (std::size_t i = 0; i < d.input_present.size(); ++i)
      if (!d.input_present[i]) fail_format("input " + std::to_string(i) + " is omitted; " + d.op_type + " inputs cannot be");
  }

  bool keeps_nonneg() const override { return true; }

  bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const override {
    int64_t r = 0;
    for (const Tensor* t : in) {
      if (!t) return false;
      r = std::max(r, t->rank());
    }
    if (r < 3) return false;
    *w = LocalWindow::pointwise(static_cast<std::size_t>(r - 2), /*broadcasts=*/true);
    return true;
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const DType dt = in.at(0).dtype;
    for (const ValueInfo& v : in)
      if (v.dtype != dt)
        fail_format(std::string("inputs have different dtypes ") + dtype_name(dt) + " and " + dtype_name(v.dtype));
    check_dtype(dt);
    ValueInfo o;
    o.dtype = dt;
    bool all_ranked = true;
    for (const ValueInfo& v : in) all_ranked = all_ranked && v.has_rank;
    if (!all_ranked) return {o};
    o.shape = in[0].shape;
    for (std::size_t i = 1; i < in.size(); ++i) {
      if (same_shape_) {
        const Shape& s = in[i].shape;
        bool ok = s.size() == o.shape.size();
        for (std::size_t k = 0; ok && k < s.size(); ++k) {
          if (o.shape[k] < 0) o.shape[k] = s[k];
          ok = s[k] < 0 || o.shape[k] < 0 || s[k] == o.shape[k];
        }
        if (!ok) fail_same_shape(in[0].shape, s);
        continue;
      }
      Shape b;
      if (!kernels::broadcast_shapes(o.shape, in[i].shape, b)) fail_shape(kernels::broadcast_error(o.shape, in[i].shape));
      o.shape = b;
    }
    o.has_rank = true;
    return {o};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const DType dt = in[0]->dtype();
    for (const Tensor* t : in)
      if (t->dtype() != dt)
        fail_format(std::string("inputs have different dtypes ") + dtype_name(dt) + " and " + dtype_name(t->dtype()));
    check_dtype(dt);
    const Shape os = out_shape(in);
    if (in.size() == 1) {
      out[0] = *in[0];  // one input: the value itself (Mean of one is that input too)
      return;
    }
    Tensor acc;
    for (std::size_t i = 1; i < in.size(); ++i) {
      const Tensor& a = i == 1 ? *in[0] : acc;
      kernels::BroadcastPlan plan;
      if (!kernels::make_broadcast_plan(a.shape(), in[i]->shape(), plan))
        fail_shape(kernels::broadcast_error(a.shape(), in[i]->shape()));
      // After the first step the running result is ours: once it has the output's shape the
      // next step may overwrite it (each element is read before it is written, at one offset).
      Tensor y = i > 1 && a.shape() == plan.out_shape ? acc : ctx.alloc(dt, plan.out_shape);
      fold(plan, a, *in[i], y, ctx.threads());
      acc = y;
    }
    if (kMode == VariadicMode::Mean) {
      float* p = acc.f32();
      const float n = static_cast<float>(in.size());
      kernels::parallel_for(acc.numel(), ctx.threads(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) p[i] /= n;
      });
    }
    if (acc.shape() != os) fail_shape("internal: the fold gave shape " + shape_str(acc.shape()));
    out[0] = acc;
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    bool any = false;
    for (std::size_t i = 0; i < need.size() && i < in.size(); ++i) {
      if (!need[i]) continue;
      any = true;
      if (in[i]->dtype() != DType::Float32) fail_format(std::string("no gradient for ") + dtype_name(in[i]->dtype()) + " inputs");
    }
    if (!any) return;
    const Shape os = out_shape(in);
    if (kernels::zero_vjp(gout[0], in, need, gin)) return;
    const Tensor& g = *gout[0];
    if (g.shape() != os) fail_shape("cotangent of shape " + shape_str(g.shape()) + " for an output of shape " + shape_str(os));
    const int th = ctx.threads();
    if constexpr (!kSelect) {
      Tensor gs = g;
      if (kMode == VariadicMode::Mean) {
        gs = ctx.alloc(DType::Float32, os);
        const float n = static_cast<float>(in.size());
        const float* pg = g.f32();
        float* q = gs.f32();
        kernels::parallel_for(gs.numel(), th, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) q[i] = pg[i] / n;
        });
      }
      for (std::size_t i = 0; i < need.size() && i < in.size(); ++i)
        if (need[i]) gin[i] = kernels::sum_to(gs, in[i]->shape(), in[i]->shape(), th);
    } else {
      // The winner of every output element: the running extreme over the inputs in order.
      std::vector<int32_t> win(static_cast<std::size_t>(g.numel()), 0);
      Tensor best = ctx.alloc(DType::Float32, os);
      for (std::size_t j = 0; j < in.size(); ++j) {
        kernels::BroadcastPlan plan;
        if (!kernels::make_broadcast_plan(os, in[j]->shape(), plan) || plan.out_shape != os)
          fail_shape(kernels::broadcast_error(os, in[j]->shape()));
        const float* xj = in[j]->f32();
        float* pb = best.f32();
        int32_t* pw = win.data();
        const auto jj = static_cast<int32_t>(j);
        const int64_t sb = plan.stride_b.back();
        kernels::for_each_run(plan, th, [&](int64_t, int64_t ob, int64_t oy, int64_t n) {
          const float* x = xj + ob;
          float* bv = pb + oy;
          int32_t* w = pw + oy;
          if (j == 0) {
            for (int64_t k = 0; k < n; ++k) bv[k] = x[k * sb];
            return;
          }
          for (int64_t k = 0; k < n; ++k) {
            const float v = x[k * sb];
            const bool take = kMode == VariadicMode::Max ? variadic::beats_max(bv[k], v) : variadic::beats_min(bv[k], v);
            if (take) {
              bv[k] = v;
              w[k] = jj;
            }
          }
        });
      }
      const float* pg = g.f32();
      const int32_t* pw = win.data();
      for (std::size_t j = 0; j < need.size() && j < in.size(); ++j) {
        if (!need[j]) continue;
        Tensor t = ctx.alloc(DType::Float32, os);
        float* q = t.f32();
        const auto jj = static_cast<int32_t>(j);
        kernels::parallel_for(t.numel(), th, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) q[i] = pw[i] == jj ? pg[i] : 0.f;
        });
        gin[j] = kernels::sum_to(t, in[j]->shape(), in[j]->shape(), th);
      }
    }
  }

 private:
  void fold(const kernels::BroadcastPlan& plan, const Tensor& a, const Tensor& b, Tensor& y, int threads) const {
    if constexpr (kMode == VariadicMode::Max)
      kernels::broadcast_binary(plan, a, b, y, threads, variadic::MaxFn{});
    else if constexpr (kMode == VariadicMode::Min)
      kernels::broadcast_binary(plan, a, b, y, threads, variadic::MinFn{});
    else
      kernels::broadcast_binary(plan, a, b, y, threads, kernels::AddFn{});
  }

  // The output shape of concrete inputs (checks the opset 6/7 same-shape rule too).
  Shape out_shape(const std::vector<const Tensor*>& in) const {
    Shape s = in[0]->shape();
    for (std::size_t i = 1; i < in.size(); ++i) {
      if (same_shape_) {
        if (in[i]->shape() != s) fail_same_shape(s, in[i]->shape());
        continue;
      }
      Shape b;
      if (!kernels::broadcast_shapes(s, in[i]->shape(), b)) fail_shape(kernels::broadcast_error(s, in[i]->shape()));
      s = b;
    }
    return s;
  }

  void check_dtype(DType dt) const {
    if (dt == DType::Float32) return;
    if (!kSelect) fail_format(std::string("expects float32 inputs, got ") + dtype_name(dt));
    if (opset_ > 0 && opset_ < 12)
      fail_format(std::string("integer inputs need opset 12 or later; the model imports opset ") + std::to_string(opset_));
  }

  [[noreturn]] void fail_same_shape(const Shape& a, const Shape& b) const {
    fail_shape("inputs " + shape_str(a) + " and " + shape_str(b) + " differ in shape; opset " + std::to_string(opset_) +
               " requires equal shapes (broadcasting came with opset 8)");
  }

  int64_t opset_;
  bool same_shape_;
};

}  // namespace onnxplain::ops
