#include "ir/graph.hpp"

#include <algorithm>
#include <functional>
#include <queue>

#include "onnxplain/errors.hpp"

namespace onnxplain {

bool ValueInfo::fully_known() const {
  if (!has_rank) return false;
  for (int64_t d : shape)
    if (d < 0) return false;
  return true;
}

int64_t Graph::opset() const {
  auto it = opsets.find("");
  if (it == opsets.end()) it = opsets.find("ai.onnx");
  return it == opsets.end() ? 0 : it->second;
}

int Graph::add_value(const std::string& name) {
  std::string n = name;
  for (int k = 1; by_name_.count(n); ++k) n = name + "__" + std::to_string(k);
  Value v;
  v.name = n;
  values.push_back(std::move(v));
  int id = static_cast<int>(values.size()) - 1;
  by_name_[n] = id;
  return id;
}

int Graph::find_value(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

int Graph::add_constant(const std::string& name, Tensor t) {
  int id = add_value(name);
  Value& v = values[static_cast<std::size_t>(id)];
  v.is_constant = true;
  v.info = ValueInfo(t.dtype(), t.shape());
  v.constant = std::move(t);
  return id;
}

std::string Graph::node_context(const Node& n) {
  std::string s = "node '" + n.name + "' (";
  if (!n.domain.empty() && n.domain != "ai.onnx") s += n.domain + ".";
  return s + n.op_type + ")";
}

void Graph::toposort() {
  const std::size_t nv = values.size();
  std::vector<int> producer(nv, -1);
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int o : nodes[i].outputs) {
      if (o < 0) continue;
      if (producer[static_cast<std::size_t>(o)] >= 0)
        throw ModelFormatError("value '" + values[static_cast<std::size_t>(o)].name +
                               "' is produced by two nodes: " + node_context(nodes[static_cast<std::size_t>(producer[static_cast<std::size_t>(o)])]) +
                               " and " + node_context(nodes[i]));
      producer[static_cast<std::size_t>(o)] = static_cast<int>(i);
    }
  std::vector<char> available(nv, 0);
  for (int v : inputs) available[static_cast<std::size_t>(v)] = 1;
  for (std::size_t v = 0; v < nv; ++v)
    if (values[v].is_constant) available[v] = 1;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int in : nodes[i].inputs)
      if (in >= 0 && !available[static_cast<std::size_t>(in)] && producer[static_cast<std::size_t>(in)] < 0)
        throw ModelFormatError(node_context(nodes[i]) + " reads '" + values[static_cast<std::size_t>(in)].name +
                               "', which is neither a graph input, an initializer nor any node's output");
  // Kahn's algorithm, stable with respect to file order.
  std::vector<int> pending(nodes.size(), 0);
  std::vector<std::vector<int>> readers(nv);
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int in : nodes[i].inputs)
      if (in >= 0 && !available[static_cast<std::size_t>(in)]) {
        ++pending[i];
        readers[static_cast<std::size_t>(in)].push_back(static_cast<int>(i));
      }
  std::vector<int> order;
  order.reserve(nodes.size());
  std::vector<char> done(nodes.size(), 0);
  // Always take the smallest ready index, to keep the file's order where possible. A min-heap:
  // a linear scan per step would be quadratic in wide graphs (thousands of Constant nodes).
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (pending[i] == 0) ready.push(static_cast<int>(i));
  while (!ready.empty()) {
    int n = ready.top();
    ready.pop();
    order.push_back(n);
    done[static_cast<std::size_t>(n)] = 1;
    for (int o : nodes[static_cast<std::size_t>(n)].outputs) {
      if (o < 0) continue;
      for (int r : readers[static_cast<std::size_t>(o)])
        if (--pending[static_cast<std::size_t>(r)] == 0) ready.push(r);
    }
  }
  if (order.size() != nodes.size()) {
    std::string names;
    int shown = 0;
    for (std::size_t i = 0; i < nodes.size() && shown < 5; ++i)
      if (!done[i]) {
        names += (shown++ ? ", " : "") + node_context(nodes[i]);
      }
    throw ModelFormatError("the graph has a cycle; nodes on or after it: " + names);
  }
  std::vector<Node> sorted;
  sorted.reserve(nodes.size());
  for (int i : order) sorted.push_back(std::move(nodes[static_cast<std::size_t>(i)]));
  nodes = std::move(sorted);
  for (auto& v : values) v.producer = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int o : nodes[i].outputs)
      if (o >= 0) values[static_cast<std::size_t>(o)].producer = static_cast<int>(i);
}

std::vector<std::vector<int>> Graph::consumers() const {
  std::vector<std::vector<int>> c(values.size());
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int in : nodes[i].inputs)
      if (in >= 0) {
        auto& list = c[static_cast<std::size_t>(in)];
        if (list.empty() || list.back() != static_cast<int>(i)) list.push_back(static_cast<int>(i));
      }
  return c;
}

bool Graph::is_graph_output(int v) const {
  return std::find(outputs.begin(), outputs.end(), v) != outputs.end();
}

void Graph::replace_uses(int from, int to) {
  for (auto& n : nodes)
    for (int& in : n.inputs)
      if (in == from) in = to;
  for (int& o : outputs)
    if (o == from) o = to;
}

void Graph::remove_dead_nodes() {
  std::vector<char> live(values.size(), 0);
  for (int o : outputs) live[static_cast<std::size_t>(o)] = 1;
  std::vector<char> keep(nodes.size(), 0);
  for (std::size_t k = nodes.size(); k-- > 0;) {
    bool used = false;
    for (int o : nodes[k].outputs)
      if (o >= 0 && live[static_cast<std::size_t>(o)]) used = true;
    if (!used) continue;
    keep[k] = 1;
    for (int in : nodes[k].inputs)
      if (in >= 0) live[static_cast<std::size_t>(in)] = 1;
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < nodes.size(); ++k)
    if (keep[k]) kept.push_back(std::move(nodes[k]));
  nodes = std::move(kept);
  // Free the storage of constants nothing reads any more (folded weights, dropped branches).
  for (std::size_t v = 0; v < values.size(); ++v)
    if (!live[v] && values[v].is_constant) values[v].constant = Tensor();
  for (auto& v : values) v.producer = -1;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (int o : nodes[i].outputs)
      if (o >= 0) values[static_cast<std::size_t>(o)].producer = static_cast<int>(i);
}

}  // namespace onnxplain
