// The interface every ONNX op implements, and the registry that maps op_type to a factory.
// One file per op in this folder (see TEMPLATE.cpp and CONTRIBUTING.md); rules and methods never
// name an op type, they work through the op's kind.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/attributes.hpp"
#include "ir/graph.hpp"
#include "ir/tensor.hpp"
#include "kernels/gemm.hpp"
#include "kernels/scratch.hpp"
#include "onnxplain/errors.hpp"

namespace onnxplain {

/// Execution context passed to kernels: thread budget and reusable scratch memory.
class ExecContext {
 public:
  explicit ExecContext(int threads = 1, bool winograd = true)
      : threads_(threads < 1 ? 1 : threads), winograd_(winograd) {}
  int threads() const { return threads_; }
  /// Whether 3x3 convolutions may use Winograd's algorithm (faster, ~1e-5 relative rounding
  /// instead of ~1e-6; kernels/winograd.hpp).
  bool winograd() const { return winograd_; }
  /// Set by the runtime around the forward() of an op whose fuses_rectifier() is true, when the
  /// next node is a rectifier reading only its output: the op writes max(y, 0) instead of y.
  bool relu_epilogue() const { return relu_epilogue_; }
  void set_relu_epilogue(bool on) { relu_epilogue_ = on; }
  /// Set by the runtime around the forward() of an op whose fuses_residual() is true, when the
  /// next node adds `r` to its output (and, with relu_epilogue(), a rectifier follows that sum):
  /// the op may write y + r (then max(y + r, 0)) and call residual_applied(). An op that does
  /// not apply the residual (r shaped unlike its output) ignores relu_epilogue() too, and the
  /// runtime runs both nodes.
  const Tensor* residual_epilogue() const { return residual_; }
  /// Whether r is the sum's first term (r + y; y + r otherwise).
  bool residual_first() const { return residual_first_; }
  void set_residual_epilogue(const Tensor* r, bool first = false) {
    residual_ = r;
    residual_first_ = first;
    residual_done_ = false;
  }
  void residual_applied() { residual_done_ = true; }
  bool residual_done() const { return residual_done_; }
  /// Output allocation goes through here so the runtime can pool buffers.
  Tensor alloc(DType dtype, const Shape& shape) { return Tensor(dtype, shape); }
  /// Scratch float memory of at least n elements, uninitialised, valid until the next call on
  /// this thread (kernels::thread_scratch, the ops' slot).
  static float* scratch(std::size_t n) { return kernels::thread_scratch(n, kernels::ScratchSlot::Op); }

 private:
  int threads_;
  bool winograd_;
  bool relu_epilogue_ = false;
  const Tensor* residual_ = nullptr;
  bool residual_first_ = false;
  bool residual_done_ = false;
};

namespace ops {

/// How the reverse passes treat an op (DESIGN.md): relevance rules attach to kinds, not op types.
enum class OpKind {
  Linear,         // y = W*x + b with constant W (Conv, ConvTranspose, Gemm, MatMul with a constant operand)
  Activation,     // elementwise unary y = f(x) (Relu, Sigmoid, Tanh, Clip, ...)
  Sum,            // elementwise sum of activations (Add, Sub, variadic Sum): residual connections, bias adds
  Product,        // elementwise product/quotient (Mul, Div) or MatMul of two activations
  AvgPool,        // linear averaging without weights (AveragePool, GlobalAveragePool, ReduceMean/Sum, Mean)
  MaxPool,        // winner-take-all selection (MaxPool, GlobalMaxPool, ReduceMax, variadic Max/Min)
  Routing,        // moves values without arithmetic (Reshape, Transpose, Concat, Pad, Gather, ...)
  Normalization,  // BatchNormalization (folded into a linear op where possible), LRN, Instance/LayerNorm
  Softmax,        // Softmax, LogSoftmax
  Constant,       // produces a constant (Constant)
  ShapeOf,        // produces integer metadata, not differentiable (Shape)
};
const char* kind_name(OpKind k);

/// What an op's factory receives. `const_inputs[i]` is non-null when input i is a known constant
/// at load time (initializer or folded), so an op can depend on it (e.g. MatMul's kind).
struct NodeDesc {
  std::string name;
  std::string op_type;
  std::string domain;
  const AttrMap* attrs = nullptr;
  int64_t opset = 0;
  std::vector<const Tensor*> const_inputs;  // one per input; nullptr = not constant or omitted
  std::vector<bool> input_present;          // false for an omitted optional input ("")
  std::size_t num_outputs = 1;
};

/// What makes an op spatially local, for the forward pass that recomputes only the region of an
/// input that changed (runtime/local_forward.hpp). For a data input [N, C, spatial...], output
/// position o on spatial axis a reads only input positions o * stride[a] - pad_begin[a] +
/// j * dilation[a] (0 <= j < kernel[a]) of every channel, and running the op on a crop of the input
/// whose start is a multiple of the stride gives the full op's values at every output position
/// whose window lies inside the crop (or reaches the input's own border where the crop does).
/// Pointwise ops have kernel 1, stride 1, pad 0.
struct LocalWindow {
  std::vector<int64_t> kernel, stride, pad_begin, dilation;
  /// Inputs other than the spatial data broadcast against it numpy-style (Add, Mul, PRelu's
  /// slope): local only where they are constant along every spatial axis. False: they are
  /// parameters that never vary over space (a convolution's weight, BatchNorm's scale).
  bool broadcasts = false;
  /// Pointwise on `spatial_axes` spatial axes.
  static LocalWindow pointwise(std::size_t spatial_axes, bool broadcasts) {
    LocalWindow w;
    w.kernel.assign(spatial_axes, 1);
    w.stride.assign(spatial_axes, 1);
    w.pad_begin.assign(spatial_axes, 0);
    w.dilation.assign(spatial_axes, 1);
    w.broadcasts = broadcasts;
    return w;
  }
};

class Op {
 public:
  explicit Op(const NodeDesc& d) : name_(d.name), op_type_(d.op_type) {}
  virtual ~Op() = default;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  virtual OpKind kind() const = 0;
  /// Output dtypes and shapes from what is known of the inputs (dims < 0 unknown). Throws
  /// ShapeError (through fail_shape) when the inputs can never fit.
  virtual std::vector<ValueInfo> infer(const std::vector<ValueInfo>& in) const = 0;
  /// Computes every output. `out` has one empty Tensor per output; the op allocates through
  /// ctx.alloc or aliases an input (routing ops). Omitted optional inputs are nullptr.
  virtual void forward(const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       ExecContext& ctx) const = 0;
  /// Whether constant folding may evaluate this op at load time when all inputs are constant.
  virtual bool foldable() const { return true; }
  /// What forward() reads of input i. An input read only for its dtype (CastLike's target), or
  /// only for its shape when that is fully known at load (Shape), does not stop constant
  /// folding; forward then receives a stand-in with that dtype and shape but no data.
  enum class InputUse { Value, Shape, DType };
  virtual InputUse input_use(std::size_t input) const { (void)input; return InputUse::Value; }

  /// Vector-Jacobian product, the one primitive every reverse method is built on. `in` and `out`
  /// are the forward pass's values (a rule may substitute modified inputs or weights, e.g. W+ for
  /// z+, and pass the matching recomputed outputs); `gout[k]` is the cotangent of output k
  /// (nullptr = zero). For every input i with need[i], gin[i] receives dL/d(in[i]) with in[i]'s
  /// shape; other entries stay empty. Only float inputs are ever needed (integer shape inputs and
  /// weights of linear ops never are). Ops without a VJP keep this default, which refuses.
  virtual void vjp(const std::vector<const Tensor*>& in, const std::vector<const Tensor*>& out,
                   const std::vector<const Tensor*>& gout, const std::vector<bool>& need, std::vector<Tensor>& gin,
                   ExecContext& ctx) const;
  /// Which forward values vjp() reads beyond their dtype and shape when the inputs flagged in
  /// `constant` (graph constants: weights) get no gradient: `in[k]` / `out[k]` arrive set and an
  /// op clears those its VJP never reads (GradientRule::reads), so that an explanation's forward
  /// pass need not keep them. By default every value is read.
  virtual void vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) const {
    (void)constant, (void)in, (void)out;
  }
  /// vjp_reads of a product of inputs 0 and 1 plus an optional input 2 (Conv, Gemm): the gradient
  /// of each factor reads the other one, input 2's reads nothing, and no output is read.
  static void bilinear_vjp_reads(const std::vector<char>& constant, std::vector<char>& in, std::vector<char>& out) {
    std::fill(out.begin(), out.end(), 0);
    if (in.size() > 2) in[2] = 0;
    if (in.size() > 1 && constant.size() > 1 && constant[1]) in[0] = 0;
    if (in.size() > 1 && !constant.empty() && constant[0]) in[1] = 0;
  }
  /// vjp_reads of an op whose VJP reads shapes only (a sum: the cotangent summed to each shape).
  static void no_vjp_reads(std::vector<char>& in, std::vector<char>& out) {
    std::fill(in.begin(), in.end(), 0);
    std::fill(out.begin(), out.end(), 0);
  }
  /// True for the rectifier (Relu), whose backward DeConvNet and Guided BackProp modify.
  virtual bool rectifier() const { return false; }
  /// Whether forward() honours ExecContext::relu_epilogue() (writes max(y, 0) for output 0, as
  /// the Relu op: NaN and -0 kept). A plain forward pass then skips the rectifier that follows:
  /// its separate pass over the output was a few percent of a CNN's forward (onnxruntime fuses it).
  virtual bool fuses_rectifier() const { return false; }
  /// Whether forward() honours ExecContext::residual_epilogue(): a residual sum (and the
  /// rectifier after it) written with the output, as onnxruntime's fused Conv + Add + Relu. A
  /// ResNet block's last convolution then makes no separate passes for the sum and the ReLU.
  virtual bool fuses_residual() const { return false; }
  /// For a unary element-wise op: overwrites x with the op's output and returns true. The runtime
  /// asks when it holds x alone and no later node reads it (a plain forward pass): the output then
  /// takes no new buffer, and x, just written by the node before, is still in cache (a separate
  /// ReLU pass was a sixth of a small CNN's forward). The default declines; forward() runs then.
  virtual bool forward_in_place(Tensor& x, ExecContext& ctx) const {
    (void)x, (void)ctx;
    return false;
  }
  /// True when every float output entry is one of the float input entries, a zero, or a
  /// non-negative combination of them (pooling, reshaping, routing): outputs of non-negative
  /// inputs are non-negative, so the sign-split rules need no sign scan after such an op either.
  virtual bool keeps_nonneg() const { return false; }
  /// For OpKind::Sum: the sign (+1 or -1) with which input i enters the output, so that vjp()
  /// gives an input of the output's own shape the cotangent times it; 0 where unknown. The
  /// proportional LRP rules then split relevance in one pass (x_i ⊙ sign ⊙ R / stab(y)) instead of
  /// a VJP copying the cotangent for every input and a product after it (ResNet-50's residual sums
  /// made nine passes over memory where six do).
  virtual float sum_sign(std::size_t input) const {
    (void)input;
    return 0.f;
  }
  /// For OpKind::MaxPool: true when the winner is the minimum (Min), not the maximum. DeepLIFT's
  /// max rule splits each output's difference at the cross extreme of input and reference, which
  /// for a minimum is the smaller of the two.
  virtual bool selects_min() const { return false; }

  /// For OpKind::Linear: which inputs hold the weight and the (optional) bias; -1 if none.
  virtual int weight_input() const { return -1; }
  virtual int bias_input() const { return -1; }
  /// Linear ops: the axis of the weight (of rank `weight_rank`) that indexes output neurons, and
  /// the axis of the output (of rank `out_rank`) that does; -1 where the op has no such axis.
  /// Neuron j's weight vector is the weight's slice j along that axis; the pattern statistics
  /// (patterns/) and the pattern rules work per neuron through these two axes only.
  virtual int weight_neuron_axis(int64_t weight_rank) const { (void)weight_rank; return -1; }
  virtual int out_neuron_axis(int64_t out_rank) const { (void)out_rank; return -1; }
  /// Linear ops: neurons come in this many groups of equal size, each group reading its own
  /// slice of the input (a grouped convolution); 1 otherwise.
  virtual int64_t neuron_groups() const { return 1; }
  /// Linear ops: the factor the op applies to its bias input (Gemm's beta); 1 elsewhere.
  virtual float bias_scale() const { return 1.f; }
  /// Linear ops: running with the weight concatenated along its axis 0 (and the bias likewise)
  /// gives the outputs concatenated along axis 1 (a convolution with more output channels), so
  /// two modified forwards can share one pass over the input (im2col, Winograd transform).
  virtual bool stacks_on_channels() const { return false; }
  /// Linear ops: pos = op(x; W1, b1) and neg = op(x; W2, b2) from one read of the weight, with
  /// (W1, W2) = (W+, W-) (max(W, 0), min(W, 0)), or with mod.gamma (W + gW+, W + gW-), the bias
  /// likewise, where the op has such a kernel for these inputs (`in` as for forward); false,
  /// writing nothing, elsewhere. A dense layer on one row is bound by reading its weight, and
  /// the two modified forwards read it twice.
  virtual bool forward_sign_split(const std::vector<const Tensor*>& in, Tensor& pos, Tensor& neg, ExecContext& ctx,
                                  const kernels::SignSplitMod& mod) const {
    (void)in, (void)pos, (void)neg, (void)ctx, (void)mod;
    return false;
  }
  /// Linear ops: gx = VJP_{W1}(g1) + VJP_{W2}(g2) with respect to the data input, (W1, W2) as for
  /// forward_sign_split, from one read of the weight, where forward_sign_split applies; false,
  /// writing nothing, elsewhere.
  virtual bool vjp_sign_split(const std::vector<const Tensor*>& in, const Tensor& g1, const Tensor& g2, Tensor& gx,
                              ExecContext& ctx, const kernels::SignSplitMod& mod) const {
    (void)in, (void)g1, (void)g2, (void)gx, (void)ctx, (void)mod;
    return false;
  }

  /// Spatially local ops (convolutions, window pooling, pointwise ops): see LocalWindow. `in` as for
  /// forward (the data input first). False where the op is not local for these inputs (dense
  /// layers, global pooling, routing, padding computed from the input size by auto_pad SAME).
  virtual bool local_window(const std::vector<const Tensor*>& in, LocalWindow* w) const {
    (void)in, (void)w;
    return false;
  }

  const std::string& name() const { return name_; }
  const std::string& op_type() const { return op_type_; }
  /// "node 'conv1' (Conv)" for error messages.
  std::string context() const { return "node '" + name_ + "' (" + op_type_ + ")"; }
  [[noreturn]] void fail_shape(const std::string& msg) const { throw ShapeError(context() + ": " + msg); }
  [[noreturn]] void fail_format(const std::string& msg) const { throw ModelFormatError(context() + ": " + msg); }

 protected:
  std::string name_;
  std::string op_type_;
};

/// Convenience: infos of concrete tensors (value pointers set).
std::vector<ValueInfo> infos_of(const std::vector<const Tensor*>& in);

using OpFactory = std::unique_ptr<Op> (*)(const NodeDesc&);

struct OpDef {
  const char* op_type;
  OpFactory create;
  int min_inputs;   // the first min_inputs must be present
  int max_inputs;
  int max_outputs;  // every op has at least one output
};

/// The ops compiled in (ai.onnx domain), in op_list.inc order.
const std::vector<OpDef>& registry();

/// The ONNX versions of an op (op_versions.inc): every since-version ONNX defines up to
/// importer::kNewestOpset, split into those onnxplain implements and those it does not.
struct OpVersions {
  const char* op_type;
  std::vector<int64_t> implemented, missing;  // ascending
  const char* advice;                         // what to do about a missing version
  /// The since-version a node runs under at `opset` (the newest at or below it); 0 if the op did
  /// not exist yet.
  int64_t in_effect(int64_t opset) const;
  bool implements(int64_t version) const;
};
/// nullptr for an op type not in the registry.
const OpVersions* op_versions(const std::string& op_type);
const std::vector<OpVersions>& all_op_versions();
/// nullptr when op_type is not supported.
const OpDef* find_op(const std::string& op_type, const std::string& domain);

}  // namespace ops
}  // namespace onnxplain

/// Defines the factory for an op class; used once at the end of each op file.
#define ONNXPLAIN_REGISTER_OP(OP_TYPE, CLASS)                                        \
  namespace onnxplain::ops {                                                         \
  std::unique_ptr<Op> make_op_##OP_TYPE(const NodeDesc& d) {                         \
    return std::unique_ptr<Op>(new CLASS(d));                                        \
  }                                                                                  \
  }
