// The IR graph: values (edges) and nodes in topological order. Built by the importer, rewritten
// by passes, executed by the runtime. Knows nothing of protobuf or of any op's semantics.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/attributes.hpp"
#include "ir/tensor.hpp"

namespace onnxplain {

namespace ops {
class Op;
}

/// What is known about a value before running: dtype, shape (dims < 0 unknown) and, for
/// constants, the value itself.
struct ValueInfo {
  DType dtype = DType::Float32;
  bool has_rank = false;  // false: even the rank is unknown
  Shape shape;
  const Tensor* value = nullptr;  // non-null when the value is a known constant

  ValueInfo() = default;
  ValueInfo(DType t, Shape s) : dtype(t), has_rank(true), shape(std::move(s)) {}
  static ValueInfo of(const Tensor& t) {
    ValueInfo v(t.dtype(), t.shape());
    v.value = &t;
    return v;
  }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  bool fully_known() const;
};

struct Value {
  std::string name;
  ValueInfo info;       // info.value is never set here; see `constant`
  bool is_constant = false;
  Tensor constant;      // initializer or folded constant
  int producer = -1;    // node index, -1 for graph inputs and constants
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" for the default ONNX domain
  std::vector<int> inputs;   // value ids; -1 for an omitted optional input
  std::vector<int> outputs;  // value ids; -1 for an omitted optional output
  AttrMap attrs;
  std::shared_ptr<ops::Op> op;  // null until instantiated; stays null for unsupported ops
};

class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;
  std::vector<int> inputs;   // graph inputs that are not initializers
  std::vector<int> outputs;
  std::map<std::string, int64_t> opsets;  // domain -> version ("" is ai.onnx)
  std::string producer_name;
  std::vector<std::string> notes;  // what passes did that a user may want to know
  /// Constants the importer could not convert (string/complex tensors), with the reason; an
  /// error only if a node that is still in the graph at instantiation reads one.
  std::map<int, std::string> unusable;

  int64_t opset() const;
  /// Adds a value named `name` (made unique if taken) and returns its id.
  int add_value(const std::string& name);
  int find_value(const std::string& name) const;  // -1 if absent
  int add_constant(const std::string& name, Tensor t);

  /// Sorts nodes topologically and sets producers; ModelFormatError on a cycle or on an input
  /// that nothing produces.
  void toposort();
  /// Drops nodes that do not contribute to any graph output (and values nothing uses).
  void remove_dead_nodes();
  /// consumers[v] = node indices that read value v (in node order).
  std::vector<std::vector<int>> consumers() const;
  /// Makes every reader of value `from` (and the graph outputs) read `to` instead.
  void replace_uses(int from, int to);
  bool is_graph_output(int v) const;

  static std::string node_context(const Node& n);  // "node 'conv1' (Conv)"
  std::string context(int node_index) const { return node_context(nodes[static_cast<std::size_t>(node_index)]); }

 private:
  std::map<std::string, int> by_name_;
};

}  // namespace onnxplain
