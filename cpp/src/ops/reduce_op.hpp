// What ReduceSum, ReduceMean and ReduceMax share: `axes` as an attribute or (from a given opset)
// as an optional int64 input, keepdims, noop_with_empty_axes, shape inference, and the axis
// resolution and cotangent checks their forward and VJP start with. Each op file adds its kind,
// its reduction and its VJP formula.
#pragma once

#include <string>

#include "kernels/reduce.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

class ReduceOp : public Op {
 public:
  /// `axes_input_opset`: the opset from which the axes are the optional second input.
  ReduceOp(const NodeDesc& d, int64_t axes_input_opset) : Op(d) {
    keepdims_ = d.attrs->get_int("keepdims", 1) != 0;
    noop_empty_ = d.attrs->get_int("noop_with_empty_axes", 0) != 0;
    if (d.opset < axes_input_opset) {
      axes_ = d.attrs->get_ints("axes", {});
    } else {
      axes_input_ = d.input_present.size() > 1 && d.input_present[1];
      if (axes_input_ && d.const_inputs.size() > 1 && d.const_inputs[1])
        axes_ = d.const_inputs[1]->to_i64_vector();
      else
        axes_known_ = !axes_input_;
    }
  }

  std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const override {
    const ValueInfo& x = in.at(0);
    if (axes_input_ && in.size() > 1 && in[1].dtype != DType::Int64)
      fail_format("the axes input must be int64, got " + std::string(dtype_name(in[1].dtype)));
    ValueInfo o;
    o.dtype = x.dtype;
    if (!x.has_rank) return {o};
    if (!axes_known_) {
      // Axes only known at run time: with keepdims the rank stays, without it nothing is known.
      if (keepdims_) o = ValueInfo(x.dtype, Shape(x.shape.size(), -1));
      return {o};
    }
    if (axes_.empty() && noop_empty_) return {ValueInfo(x.dtype, x.shape)};
    std::vector<bool> mask;
    std::string err = kernels::reduce_mask(axes_, x.rank(), &mask);
    if (!err.empty()) fail_shape(err + " (input shape " + shape_str(x.shape) + ")");
    return {ValueInfo(x.dtype, kernels::reduced_shape(x.shape, mask, keepdims_))};
  }

 protected:
  /// The reduction of one call: the identity (empty axes with noop_with_empty_axes), or a mask of
  /// reduced axes and the output shape.
  struct Reduction {
    bool identity = false;
    std::vector<bool> mask;
    Shape out_shape;
  };

  Reduction resolve(const std::vector<const Tensor*>& in) const {
    const Tensor& x = *in[0];
    const bool runtime_axes = axes_input_ && in.size() > 1 && in[1];
    const std::vector<int64_t> axes = runtime_axes ? in[1]->to_i64_vector() : axes_;
    Reduction r;
    r.out_shape = x.shape();
    if (axes.empty() && noop_empty_) {
      r.identity = true;
      return r;
    }
    std::string err = kernels::reduce_mask(axes, x.rank(), &r.mask);
    if (!err.empty()) fail_shape(err + " (input shape " + shape_str(x.shape()) + ")");
    r.out_shape = kernels::reduced_shape(x.shape(), r.mask, keepdims_);
    return r;
  }

  /// The start of every VJP. Returns the cotangent still to be spread back over the reduced
  /// axes, or nullptr when gin is already complete (input not needed, no cotangent, identity).
  const Tensor* vjp_prologue(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& gout,
                             const std::vector<bool>& need, std::vector<Tensor>& gin, Reduction& r) const {
    if (need.empty() || !need[0]) return nullptr;
    const Tensor& x = *in[0];
    if (x.dtype() != DType::Float32) fail_format("only float32 inputs have a gradient");
    r = resolve(in);
    const Tensor* g = gout.empty() ? nullptr : gout[0];
    if (!g) {
      gin[0] = Tensor::zeros(DType::Float32, x.shape());
      return nullptr;
    }
    if (g->dtype() != DType::Float32 || g->shape() != r.out_shape)
      fail_shape("cotangent of shape " + shape_str(g->shape()) + " does not match the output shape " +
                 shape_str(r.out_shape));
    if (r.identity) {
      gin[0] = *g;
      return nullptr;
    }
    return g;
  }

  std::vector<int64_t> axes_;
  bool keepdims_ = true;
  bool noop_empty_ = false;
  bool axes_input_ = false;  // axes given as the (optional) second input
  bool axes_known_ = true;   // axes_ holds the axes (attribute, constant input, or none)
};

}  // namespace onnxplain::ops
