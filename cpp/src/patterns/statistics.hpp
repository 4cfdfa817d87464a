// Streaming statistics for the signal estimators of PatternNet / PatternAttribution (Kindermans
// et al. 2018, §4; iNNvestigate 1.x tools/pattern.py). Per linear op (OpKind::Linear with a
// constant weight) and output neuron j, over the op's rows: a dense layer has one row per sample,
// a convolution one per (sample, output position) whose x is the neuron's input patch (zero
// padding included); y = w_j·x is the pre-activation WITHOUT bias; a row is active for j when
// the op's own output (with bias) is > 0, which is where a following ReLU passes it.
//
// Everything is a sum, so statistics merge by addition across batches, threads and processes.
// Sums of x-shaped quantities are weight gradients: Σ_r g_rj x_r is the op's VJP with respect to
// its weight for the cotangent g, so they are computed by the op itself (one product with the
// cost of a weight gradient, im2col included) and never name an op type. Each batch's float32
// products are added into float64 accumulators.
//
// Layout: x-shaped sums are neuron-major [M, D]: the weight with its neuron axis moved first
// (numpy: np.moveaxis(W, axis, 0).reshape(M, D)); D = W.size / M.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/tensor.hpp"
#include "runtime/model.hpp"

namespace onnxplain::patterns {

struct LayerStats {
  std::string node;
  Shape weight_shape;
  int weight_axis = 0;   // the weight's neuron axis
  int64_t neurons = 0;   // M
  int64_t groups = 1;    // G (a grouped convolution); neuron j is in group j / (M / G)
  int64_t dim = 0;       // D, entries of one neuron's input
  double rows = 0;       // rows seen (the same for every neuron)
  std::vector<double> count_pos;                // [M] active rows
  std::vector<double> sum_y, sum_y_pos;         // [M]
  std::vector<double> sum_yy, sum_yy_pos;       // [M] Σ y², for the quality measure
  std::vector<double> sum_x;                    // [G, D] over all rows
  std::vector<double> sum_x_pos, sum_xy, sum_xy_pos;  // [M, D]
  std::vector<double> sum_xx;  // [G, D, D] Σ x xᵀ, only when asked for (the quality measure ρ); else empty

  void init(const std::string& name, const Shape& wshape, int axis, int64_t groups);
  void add(const LayerStats& o);
};

class Statistics {
 public:
  uint64_t fingerprint = 0;  // of the model they were collected on (patterns::model_fingerprint)
  std::vector<LayerStats> layers;

  const LayerStats* find(const std::string& node) const;
  /// Adds `o` (same model, same layers) into this; InvalidArgument otherwise.
  void merge(const Statistics& o);
  /// A documented little-endian binary (statistics.cpp) and its reader, which checks every size
  /// against the bytes there (ModelFormatError on a truncated or malformed buffer).
  std::string serialize() const;
  static Statistics deserialize(const uint8_t* data, std::size_t size);
};

/// The linear ops the pattern methods work on: OpKind::Linear with a constant weight that has a
/// neuron axis. Node indices in execution order.
std::vector<std::size_t> pattern_nodes(const Graph& g);

/// FNV-1a over the rewritten graph's node names, op types and every constant's bytes: the model
/// a statistics object or a saved explainer belongs to.
uint64_t model_fingerprint(const runtime::Model& m);

/// Accumulates statistics batch by batch through the model's own forward pass (the runtime's
/// node hook): each linear op runs its forward, then its weight VJPs for the cotangents the sums
/// need.
class Collector {
 public:
  explicit Collector(std::shared_ptr<const runtime::Model> model);
  /// Runs `inputs` (one batch) and adds its rows to `stats` (initialised on first use). With
  /// `gram_max_dim` > 0 it also sums x xᵀ for every layer with D <= gram_max_dim.
  void add(const std::vector<Tensor>& inputs, int threads, Statistics& stats, int64_t gram_max_dim = 0);

 private:
  std::shared_ptr<const runtime::Model> model_;
  std::vector<std::size_t> nodes_;
  uint64_t fingerprint_ = 0;
  // Per node: the bias's contribution op(0; W, b) for the last data-input shape, so that y
  // without bias is out - c for any op, any bias broadcasting.
  std::map<std::size_t, std::pair<Shape, Tensor>> bias_part_;
  void layer(std::size_t node, const std::vector<const Tensor*>& ins, const Tensor& out, LayerStats& s,
             ExecContext& ctx);
  /// Σ x xᵀ of the layer's rows: its op run on the data input with an identity weight (one output
  /// neuron per input entry) gives every row's x, whatever the op.
  void gram(std::size_t node, const std::vector<const Tensor*>& ins, LayerStats& s, ExecContext& ctx);
};

}  // namespace onnxplain::patterns
