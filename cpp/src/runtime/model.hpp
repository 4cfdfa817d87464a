// A loaded, rewritten, ready-to-run model: the object the bindings and the C API hold.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.hpp"
#include "ops/op.hpp"

namespace onnxplain::runtime {

struct LoadOptions {
  bool strip_softmax = true;
  bool fold_batch_norm = true;
  bool winograd = true;  // 3x3 convolutions by Winograd's algorithm where it is faster
};

struct TensorSpec {
  std::string name;
  DType dtype;
  Shape shape;  // dims < 0 are dynamic (e.g. the batch)
};

/// The bytes of a file; IoError (with the path and errno) when it is missing, a directory or unreadable.
std::string read_file(const std::string& path);

/// What a forward value freed for a reverse pass leaves (Model::run's KeepFilter, reverse_sweep):
/// its dtype and shape without storage. With ONNXPLAIN_CHECK_FREED=1 in the environment, a
/// tensor of that shape full of NaN instead (integers: a large sentinel), so that a rule reading
/// a value its Rule::reads declared unread gives NaN relevance instead of reading freed memory
/// (tests/runtime/test_free_values.py).
Tensor freed_value(const Tensor& t);

class Model {
 public:
  static std::shared_ptr<Model> from_bytes(const uint8_t* data, std::size_t size, const std::string& base_dir,
                                           const LoadOptions& opts);
  static std::shared_ptr<Model> from_file(const std::string& path, const LoadOptions& opts);

  const Graph& graph() const { return graph_; }
  std::vector<TensorSpec> inputs() const;
  std::vector<TensorSpec> outputs() const;

  /// Runs the forward pass. `inputs` in graph-input order; returns the graph outputs. When
  /// `keep` is non-null it receives every value (indexed by value id) for the reverse passes.
  /// `hook(i, ins, outs, ctx)`, when given, may compute node i's outputs itself (returns true);
  /// otherwise the op's forward runs.
  using ForwardHook = std::function<bool(std::size_t, const std::vector<const Tensor*>&, std::vector<Tensor>&,
                                         ExecContext&)>;
  /// With `keep`: `filter(i, values, later)`, called after node i's forward, sets later[v] for the
  /// values a reverse pass will read; a value never so marked loses its data (keeps its shape)
  /// after its last forward use, as without `keep`. No filter: every value is kept whole.
  using KeepFilter = std::function<void(std::size_t, const std::vector<Tensor>&, std::vector<char>&)>;
  /// With `keep` and `filter`: `read(i, v, values)` says whether a reverse pass reads the data of
  /// value v, node i's output that only the rectifier after it (node i + 1) reads; `values` holds
  /// v and that rectifier's output with their shapes only. Asked before node i runs (after a hook
  /// declined it): where the answer is no, node i writes the rectified values itself, as without
  /// `keep`, and v keeps its shape only.
  using KeepQuery = std::function<bool(std::size_t, int, const std::vector<Tensor>&)>;
  std::vector<Tensor> run(const std::vector<Tensor>& inputs, int threads, std::vector<Tensor>* keep = nullptr,
                          const ForwardHook& hook = nullptr, const KeepFilter& filter = nullptr,
                          const KeepQuery& read = nullptr) const;

  /// The batch size every graph input fixes on its axis 0 (the Model Zoo's files fix it at 1,
  /// often with Reshape shapes that repeat it), or 0 when the batch is free. run() without keep
  /// and hook splits a batch of a multiple of it into passes of that size; the methods' drivers
  /// do the same for their sweeps.
  int64_t fixed_batch() const;

  const LoadOptions& options() const { return opts_; }

  /// Op types present (after rewrites) with their node counts.
  std::map<std::string, int> op_counts() const;

  /// A linear op whose weight (and bias, if any) are graph constants: what a sanity check that
  /// re-draws weights (Adebayo et al. 2018) may replace.
  struct LinearParams {
    std::string node;
    int weight = -1;  // value id
    int bias = -1;    // value id, -1 without a bias
    int neuron_axis = -1;  // the weight's output-neuron axis
  };
  /// Every such op, in execution order.
  std::vector<LinearParams> linear_params() const;
  /// A copy of this model whose constants `replace` (value id -> tensor of the same shape) are
  /// replaced; the original is unchanged. InvalidArgument for a value that is not a constant or a
  /// tensor of another shape.
  std::shared_ptr<Model> with_constants(const std::map<int, Tensor>& replace) const;
  /// A copy of this model with graph output `index` as its only output (what every method
  /// explains is output 0), nodes that only fed the others removed. InvalidArgument when out of range.
  std::shared_ptr<Model> with_output(std::size_t index) const;

 private:
  /// Node i's output over its input's storage (Op::forward_in_place) where that is safe in a
  /// plain forward pass; false otherwise (nothing done).
  bool in_place(std::size_t i, std::vector<Tensor>& vals, std::vector<Tensor>& outs, ExecContext& ctx) const;
  Graph graph_;
  LoadOptions opts_;
  std::vector<int> last_use_;  // value id -> index of the last node reading it (-1: never)
  // node -> whether, in a plain forward pass, it writes the rectified output of the rectifier
  // right after it (Op::fuses_rectifier), which is then skipped
  std::vector<char> fuse_next_;
  // node -> the other term of the sum right after it that it may write with its output
  // (Op::fuses_residual; -1: none), and whether the rectifier after that sum comes too
  struct FusedAdd {
    int other = -1;
    bool first = false;  // the other term is the sum's first input
    bool relu = false;
  };
  std::vector<FusedAdd> fuse_add_;
  void plan();
};

}  // namespace onnxplain::runtime
