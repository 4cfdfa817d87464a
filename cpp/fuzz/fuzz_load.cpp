// libFuzzer target over the model loader: Model::from_bytes (protobuf wire reader, importer, load
// passes, shape inference) with the default load options, then, if the model loads, one forward
// pass on a small deterministic input. Built and run by scripts/fuzz.sh (clang,
// -fsanitize=fuzzer,address,undefined); not part of CI.
//
// Typed onnxplain errors (onnxplain::Error and its subclasses) are the expected outcome for a bad
// model and are caught. Anything else escaping (std::bad_alloc from an absurd size,
// std::out_of_range, a sanitizer report) is a bug in the library: it must become a typed error
// with node context there, not be caught here.
//
// Environment: ONNXPLAIN_FUZZ_DATA_DIR names the folder external data is resolved against (the
// script makes one holding weights.bin, which the seed corpus refers to); unset, the model loads
// as from bytes (external data refused). ONNXPLAIN_FUZZ_VERBOSE=1 prints each unit's outcome (to
// see what a saved input ends in: scripts/fuzz.sh FILE).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <typeinfo>
#include <vector>

#include "onnxplain/errors.hpp"
#include "ops/op.hpp"
#include "runtime/model.hpp"

namespace {

using onnxplain::DType;
using onnxplain::Shape;
using onnxplain::Tensor;

std::string g_data_dir;
bool g_verbose = false;

// The node whose forward runs (set by the forward hook), for telling internal errors apart.
const onnxplain::Node* g_node = nullptr;

// A typed error is the expected outcome, except the library's own consistency checks: the base
// class Error (a float32 read of an int64 tensor) and, in the forward pass, a message that starts
// with "internal:" right after the running node's context (a kernel's shape that disagrees with
// inference). Reaching one means some validation upstream let a bad model through: they count as
// findings. (Matched exactly against the node's own name and op type: the fuzzer, which sees the
// comparison, readily writes "): internal: " into op types and names.)
bool is_internal(const onnxplain::Error& e) {
  if (typeid(e) == typeid(onnxplain::Error)) return true;
  if (!g_node) return false;
  const std::string m = e.what();
  const std::string prefix = "node '" + g_node->name + "' (" + g_node->op_type + "): internal: ";
  return m.compare(0, prefix.size(), prefix) == 0;
}

void report(const char* stage, const onnxplain::Error* e) {
  if (e && is_internal(*e)) {
    std::fprintf(stderr, "fuzz_load: %s: internal error escaped validation: %s\n", stage, e->what());
    std::abort();
  }
  if (!g_verbose) return;
  if (e)
    std::fprintf(stderr, "fuzz_load: %s: %s: %s\n", stage, typeid(*e).name(), e->what());
  else
    std::fprintf(stderr, "fuzz_load: %s\n", stage);
}

// Bounds on the forward pass. A model that loads may still be legitimately large (a 3x224x224
// input, a 4096x4096 Gemm, a Resize by 100x): running it would take seconds per unit under the
// sanitizers and drown the fuzzer in slow units and out-of-memory reports that are not bugs. So
// the forward only runs when
//  - the inputs, with every dynamic dim set to 1, hold at most kMaxInputElems elements together;
//  - every node, just before it runs, has inputs and outputs (its outputs' shapes inferred from
//    the actual input tensors) of at most kMaxTensorElems elements each, and the running total of
//    a cheap bound on the multiply-adds of the nodes so far stays under kMaxWork.
// Otherwise the forward stops (SkipForward, thrown from the runtime's per-node hook) and the unit
// counts as done: loading, which is what the fuzzer is after, has already run in full.
constexpr int64_t kMaxInputElems = int64_t{1} << 16;
constexpr int64_t kMaxTensorElems = int64_t{1} << 18;
constexpr int64_t kMaxWork = int64_t{1} << 22;

struct SkipForward {};  // deliberately not a std::exception: nothing in the library can swallow it

int64_t known_numel(const Shape& s) {
  // -1 when a dim is unknown or the product exceeds the bound (no overflow: checked per step).
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) return -1;
    if (d != 0 && n > kMaxTensorElems / d) return kMaxTensorElems + 1;
    n *= d;
  }
  return n;
}

int64_t clamp_mul(int64_t a, int64_t b) {
  if (a <= 0 || b <= 0) return 0;
  if (a > kMaxWork / b) return kMaxWork + 1;
  return a * b;
}

/// A bound on the multiply-adds of node `n` on these inputs producing outputs of `out_elems`
/// elements: linear ops pay a dot product of the weight's fan-in per output (and, for transposed
/// convolutions, per input), products one of the first input's last axis, window pooling and LRN
/// their window per output, everything else a pass over its inputs and outputs.
int64_t work_bound(const onnxplain::Node& n, const std::vector<const Tensor*>& ins, int64_t out_elems) {
  using onnxplain::ops::OpKind;
  int64_t in_elems = 0;
  for (const Tensor* t : ins)
    if (t) in_elems += t->numel();
  int64_t w = in_elems + out_elems;
  const OpKind kind = n.op->kind();
  if (kind == OpKind::Linear) {
    const int wi = n.op->weight_input();
    if (wi >= 0 && static_cast<std::size_t>(wi) < ins.size() && ins[static_cast<std::size_t>(wi)]) {
      const Tensor& W = *ins[static_cast<std::size_t>(wi)];
      const int64_t wn = W.numel();
      const int axis = n.op->weight_neuron_axis(W.rank());
      const int64_t neurons = axis >= 0 && axis < W.rank() && W.dim(axis) > 0 ? W.dim(axis) : 1;
      const int64_t lead = W.rank() > 0 && W.dim(0) > 0 ? W.dim(0) : 1;
      w += clamp_mul(out_elems, wn / neurons + 1) + clamp_mul(in_elems, wn / lead + 1);
    } else {
      w += clamp_mul(out_elems, in_elems + 1);
    }
  } else if (kind == OpKind::Product) {
    const int64_t k = !ins.empty() && ins[0] && ins[0]->rank() > 0 ? ins[0]->dim(ins[0]->rank() - 1) : 1;
    w += clamp_mul(out_elems, k + 1);
  } else if (kind == OpKind::MaxPool || kind == OpKind::AvgPool) {
    int64_t window = 1;
    for (int64_t k : n.attrs.get_ints("kernel_shape", {})) window = clamp_mul(window, k > 0 ? k : 1);
    w += clamp_mul(out_elems, window) + in_elems;
  } else if (kind == OpKind::Normalization) {
    w += clamp_mul(out_elems, n.attrs.get_int("size", 1) > 0 ? n.attrs.get_int("size", 1) : 1) + in_elems;
  }
  return w < 0 || w > kMaxWork ? kMaxWork + 1 : w;
}

/// Runs the forward pass within the bounds above; false when they stopped it.
bool run_forward(const onnxplain::runtime::Model& model) {
  std::vector<Tensor> inputs;
  int64_t total = 0;
  for (const auto& spec : model.inputs()) {
    Shape shape = spec.shape;
    for (int64_t& d : shape)
      if (d < 0) d = 1;  // dynamic dims (the batch) = 1
    const int64_t n = known_numel(shape);
    if (n < 0 || n > kMaxInputElems || (total += n) > kMaxInputElems) return false;
    Tensor t(spec.dtype, shape);
    if (spec.dtype == DType::Int64) {
      for (int64_t i = 0; i < n; ++i) t.i64()[i] = i % 3;  // valid indices, small shapes and counts
    } else {
      for (int64_t i = 0; i < n; ++i) t.f32()[i] = static_cast<float>((i * 7) % 17 - 8) * 0.25f;
    }
    inputs.push_back(std::move(t));
  }
  const onnxplain::Graph& g = model.graph();
  int64_t work = 0;
  auto guard = [&](std::size_t i, const std::vector<const Tensor*>& ins, std::vector<Tensor>&,
                   onnxplain::ExecContext&) -> bool {
    const onnxplain::Node& n = g.nodes[i];
    g_node = &n;
    for (const Tensor* t : ins)
      if (t && t->numel() > kMaxTensorElems) throw SkipForward{};
    // The outputs' shapes from the actual inputs. Where inference refuses them, the op's forward
    // must refuse them too (with a typed error): let it run and see.
    std::vector<onnxplain::ValueInfo> outs;
    try {
      outs = n.op->infer(onnxplain::ops::infos_of(ins));
    } catch (const onnxplain::Error&) {
      return false;
    }
    int64_t out_elems = 0;
    for (const auto& o : outs) {
      const int64_t k = o.has_rank ? known_numel(o.shape) : -1;
      if (k < 0 || k > kMaxTensorElems) throw SkipForward{};  // unknown after seeing every input: be safe
      out_elems += k;
    }
    work += work_bound(n, ins, out_elems);
    if (work > kMaxWork) throw SkipForward{};
    return false;  // the op's own forward runs
  };
  try {
    model.run(inputs, 1, nullptr, guard);
  } catch (const SkipForward&) {
    return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Freed buffers would otherwise be cached (up to a quarter of the machine's memory) and count
  // against -rss_limit_mb; every allocation goes straight back to the system instead.
  setenv("ONNXPLAIN_POOL_MB", "0", 1);
  // The library refuses a tensor larger than the machine's memory (a ShapeError, at load a
  // ModelFormatError); here larger than 64 MiB, well under -malloc_limit_mb, so that a model asking
  // for a huge constant or activation is a typed refusal rather than an out-of-memory report.
  setenv("ONNXPLAIN_MAX_TENSOR_MB", "64", 1);
  if (const char* d = std::getenv("ONNXPLAIN_FUZZ_DATA_DIR")) g_data_dir = d;
  const char* v = std::getenv("ONNXPLAIN_FUZZ_VERBOSE");
  g_verbose = v && *v && *v != '0';
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  g_node = nullptr;
  std::shared_ptr<onnxplain::runtime::Model> model;
  try {
    model = onnxplain::runtime::Model::from_bytes(data, size, g_data_dir, onnxplain::runtime::LoadOptions{});
  } catch (const onnxplain::Error& e) {
    report("load", &e);
    return 0;  // a typed refusal: the expected outcome for a bad model
  }
  try {
    report(run_forward(*model) ? "forward ran" : "forward skipped (too large for the fuzzer)", nullptr);
  } catch (const onnxplain::Error& e) {
    // ShapeError for shapes only the input reveals, InvalidArgument, ...: typed, expected.
    report("forward", &e);
  }
  return 0;
}
