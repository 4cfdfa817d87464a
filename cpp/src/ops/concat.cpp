// Concat — https://onnx.ai/onnx/operators/onnx__Concat.html (opset 1, 4, 11, 13).
// y = the inputs joined along `axis` (negative counts from the end, opset 11+); every other dim
// must match. Works on float32 and int64 (shape arithmetic: Shape -> Gather -> Unsqueeze -> Concat).
// Kind: Routing (relevance and gradients are split back into the inputs' slabs).
#include "ops/op.hpp"
#include "ops/routing_util.hpp"

namespace onnxplain::ops {
namespace {

class Concat final : public Op {
 public:
  // Opset 1 defaulted axis to 1; from opset 4 it is required.
  explicit Concat(const NodeDesc& d)
      : Op(d), axis_(d.opset < 4 ? d.attrs->get_int("axis", 1) : d.attrs->require_int("axis")) {
    require_io(*this, d, 1, "(at least one)");
    for (bool p : d.input_present)
      if (!p) fail_format("Concat inputs cannot be omitted");
  }
  OpKind kind() const override { return OpKind::Routing; }
  bool keeps_nonneg() const override { return true; }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo* ref = nullptr;
    for (const ValueInfo& v : in) {
      if (v.dtype != in[0].dtype)
        fail_shape(std::string("inputs mix ") + dtype_name(in[0].dtype) + " and " + dtype_name(v.dtype));
      if (v.has_rank && !ref) ref = &v;
    }
    ValueInfo o;
    o.dtype = in[0].dtype;
    if (!ref) return {o};
    const int64_t r = ref->rank();
    const std::size_t a = static_cast<std::size_t>(normalize_axis(*this, axis_, r));
    Shape s = ref->shape;
    s[a] = 0;
    for (const ValueInfo& v : in) {
      if (!v.has_rank) {
        s[a] = -1;
        continue;
      }
      if (v.rank() != r)
        fail_shape("inputs have different ranks: " + shape_str(ref->shape) + " and " + shape_str(v.shape));
      for (std::size_t k = 0; k < s.size(); ++k) {
        if (k == a) continue;
        if (s[k] < 0) {
          s[k] = v.shape[k];
        } else if (v.shape[k] >= 0 && v.shape[k] != s[k]) {
          fail_shape("inputs " + shape_str(ref->shape) + " and " + shape_str(v.shape) + " differ in dim " +
                     std::to_string(k) + ", which is not the concat axis " + std::to_string(a));
        }
      }
      if (s[a] >= 0) s[a] = v.shape[a] < 0 ? -1 : s[a] + v.shape[a];
    }
    return {ValueInfo(o.dtype, s)};
  }

  void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out, ExecContext& ctx) const override {
    // Shapes are checked by infer on the concrete inputs: the runtime only knows them now.
    std::vector<ValueInfo> infos = infos_of(in);
    Shape s = infer(infos)[0].shape;
    const Tensor& x0 = *in[0];
    out[0] = ctx.alloc(x0.dtype(), s);
    const std::size_t a = static_cast<std::size_t>(normalize_axis(*this, axis_, x0.rank()));
    int64_t outer = 1, inner = 1;
    for (std::size_t k = 0; k < a; ++k) outer *= s[k];
    for (std::size_t k = a + 1; k < s.size(); ++k) inner *= s[k];
    const int64_t row = s[a] * inner;  // elements of one output row (everything from the axis on)
    int64_t off = 0;
    for (const Tensor* x : in) {
      const int64_t chunk = x->dim(static_cast<int64_t>(a)) * inner;
      copy_strided(x->raw(), 0, {chunk, 1}, out[0].raw(), off, {row, 1}, {outer, chunk}, dtype_size(x0.dtype()),
                   ctx.threads());
      off += chunk;
    }
  }

  // Each input's gradient is its slab of the cotangent: the forward copy run backwards.
  void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>&,
           const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
           ExecContext& ctx) const override {
    bool any = false;
    for (std::size_t i = 0; i < need.size() && i < in.size(); ++i) any = any || need[i];
    if (!any) return;
    const Shape s = infer(infos_of(in))[0].shape;
    const Tensor* g = checked_cotangent(*this, gout, 0, s);
    const std::size_t a = static_cast<std::size_t>(normalize_axis(*this, axis_, in[0]->rank()));
    int64_t outer = 1, inner = 1;
    for (std::size_t k = 0; k < a; ++k) outer *= s[k];
    for (std::size_t k = a + 1; k < s.size(); ++k) inner *= s[k];
    const int64_t row = s[a] * inner;
    int64_t off = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
      const Tensor& x = *in[i];
      const int64_t chunk = x.dim(static_cast<int64_t>(a)) * inner;
      if (i < need.size() && need[i]) {
        if (!g) {
          gin[i] = zeros_f32(ctx, x.shape());
        } else {
          gin[i] = ctx.alloc(DType::Float32, x.shape());
          copy_strided(g->raw(), off, {row, 1}, gin[i].raw(), 0, {chunk, 1}, {outer, chunk}, 4, ctx.threads());
        }
      }
      off += chunk;
    }
  }

 private:
  int64_t axis_;
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Concat, Concat)
