// Where — https://onnx.ai/onnx/operators/onnx__Where.html (opsets 9, 16; 16 only adds bfloat16).
// y = condition ? X : Y elementwise, the three broadcast multidirectionally (numpy rules).
// The bool condition arrives as int64 (the importer maps integer and bool tensors there), nonzero
// meaning true; X and Y are float32 or int64, of one dtype.
// VJP: dX = g where the condition holds, dY = g elsewhere, each summed back over the dims its
// operand was broadcast along (torch.where's rule); the condition gets nothing.
// Kind: Routing (every output entry is an entry of X or Y: LRP hands each entry's relevance to the
// operand it came from, as the gradient does).
#include <algorithm>
#include <string>

#include "kernels/broadcast.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

// Element strides of an operand of shape `s` against the broadcast output shape `out` (0 along
// the dims it is broadcast over).
std::vector<int64_t> aligned_strides(const Shape& s, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  int64_t m = 1;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const std::size_t d = out.size() - 1 - k;
    const int64_t dim = s[s.size() - 1 - k];
    st[d] = dim == 1 ? 0 : m;
    m *= dim;
  }
  return st;
}

// f(i, oc, ox, oy) for every output index i with the operands' offsets, rows of the innermost dim
// split across threads (an odometer per chunk).
template <class F>
void for_each3(const Shape& out, const std::vector<int64_t>& sc, const std::vector<int64_t>& sx,
               const std::vector<int64_t>& sy, int threads, const F& f) {
  const int64_t total = shape_numel(out);
  if (total == 0) return;
  const std::size_t r = out.size();
  const int64_t inner = r ? out[r - 1] : 1;
  const int64_t rows = total / inner;
  const int64_t ic = r ? sc[r - 1] : 0, ix = r ? sx[r - 1] : 0, iy = r ? sy[r - 1] : 0;
  kernels::parallel_for(
      rows, threads,
      [&](int64_t b, int64_t e) {
        std::vector<int64_t> idx(r ? r - 1 : 0, 0);
        int64_t oc = 0, ox = 0, oy = 0, rem = b;
        for (std::size_t k = idx.size(); k-- > 0;) {
          idx[k] = rem % out[k];
          rem /= out[k];
          oc += idx[k] * sc[k];
          ox += idx[k] * sx[k];
          oy += idx[k] * sy[k];
        }
        for (int64_t row = b; row < e; ++row) {
          for (int64_t j = 0; j < inner; ++j) f(row * inner + j, oc + j * ic, ox + j * ix, oy + j * iy);
          for (std::size_t k = idx.size(); k-- > 0;) {
            oc += sc[k];
            ox += sx[k];
            oy += sy[k];
            if (++idx[k] < out[k]) break;
            oc -= sc[k] * out[k];
            ox -= sx[k] * out[k];
            oy -= sy[k] * out[k];
            idx[k] = 0;
          }
        }
      },
      std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(inner, 1)));
}

class Where final : public Op {
 public:
  explicit Where(const NodeDesc& d) : Op(d) { require_io(*this, d, 3, "condition, X, Y"); }
  OpKind kind() const override { return OpKind::Routing; }
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
    check_dtypes(in.at(0).dtype, in.at(1).dtype, in.at(2).dtype);
    ValueInfo o;
    o.dtype = in[1].dtype;
    if (!in[0].has_rank || !in[1].has_rank || !in[2].has_rank) return {o};
    Shape a, b;
    if (!kernels::broadcast_shapes(in[0].shape, in[1].shape, a) || !kernels::broadcast_shapes(a, in[2].shape, b))
      fail_shape(error3(in[0].shape, in[1].shape, in[2].shape));
    return {ValueInfo(o.dtype, b)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    const Tensor &c = *in[0], &x = *in[1], &y = *in[2];
    check_dtypes(c.dtype(), x.dtype(), y.dtype());
    const Shape os = out_shape(c, x, y);
    out[0] = ctx.alloc(x.dtype(), os);
    const auto sc = aligned_strides(c.shape(), os), sx = aligned_strides(x.shape(), os),
               sy = aligned_strides(y.shape(), os);
    const int64_t* pc = c.i64();
    if (x.dtype() == DType::Int64) {
      const int64_t *px = x.i64(), *py = y.i64();
      int64_t* q = out[0].i64();
      for_each3(os, sc, sx, sy, ctx.threads(),
                [&](int64_t i, int64_t oc, int64_t ox, int64_t oy) { q[i] = pc[oc] != 0 ? px[ox] : py[oy]; });
    } else {
      const float *px = x.f32(), *py = y.f32();
      float* q = out[0].f32();
      for_each3(os, sc, sx, sy, ctx.threads(),
                [&](int64_t i, int64_t oc, int64_t ox, int64_t oy) { q[i] = pc[oc] != 0 ? px[ox] : py[oy]; });
    }
  }

  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    const Tensor &c = *in[0], &x = *in[1], &y = *in[2];
    check_dtypes(c.dtype(), x.dtype(), y.dtype());
    const bool nx = need.size() > 1 && need[1], ny = need.size() > 2 && need[2];
    if ((nx || ny) && x.dtype() != DType::Float32) fail_format("no gradient for int64 inputs");
    const Shape os = out_shape(c, x, y);
    const Tensor* g = checked_cotangent(*this, gout, 0, os);
    zero_grads(in, need, gin, 0, ctx);  // the condition; X and Y are overwritten below
    if (!g || (!nx && !ny)) return;
    const auto sc = aligned_strides(c.shape(), os), zero = std::vector<int64_t>(os.size(), 0);
    const int64_t* pc = c.i64();
    const float* pg = g->f32();
    for (int k = 1; k <= 2; ++k) {
      if (!(k == 1 ? nx : ny)) continue;
      const bool when = k == 1;
      Tensor t = ctx.alloc(DType::Float32, os);
      float* q = t.f32();
      for_each3(os, sc, zero, zero, ctx.threads(),
                [&](int64_t i, int64_t oc, int64_t, int64_t) { q[i] = (pc[oc] != 0) == when ? pg[i] : 0.f; });
      const Shape& s = in[static_cast<std::size_t>(k)]->shape();
      gin[static_cast<std::size_t>(k)] = kernels::sum_to(t, s, s, ctx.threads());
    }
  }

 private:
  void check_dtypes(DType c, DType x, DType y) const {
    if (c != DType::Int64) fail_format(std::string("the condition must be bool, got ") + dtype_name(c));
    if (x != y) fail_format(std::string("X and Y have different dtypes ") + dtype_name(x) + " and " + dtype_name(y));
  }

  Shape out_shape(const Tensor& c, const Tensor& x, const Tensor& y) const {
    Shape a, b;
    if (!kernels::broadcast_shapes(c.shape(), x.shape(), a) || !kernels::broadcast_shapes(a, y.shape(), b))
      fail_shape(error3(c.shape(), x.shape(), y.shape()));
    return b;
  }

  static std::string error3(const Shape& c, const Shape& x, const Shape& y) {
    return "cannot broadcast the condition " + shape_str(c) + ", X " + shape_str(x) + " and Y " + shape_str(y);
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Where, Where)
