// Graph: value naming, topological sorting (order, stability, cycles, dangling inputs, double
// producers), dead-node removal, replace_uses and consumers.
#include <chrono>
#include <string>
#include <vector>

#include "check.hpp"
#include "ir/graph.hpp"
#include "onnxplain/errors.hpp"

using onnxplain::DType;
using onnxplain::Graph;
using onnxplain::ModelFormatError;
using onnxplain::Node;
using onnxplain::Tensor;

namespace {

int node(Graph& g, const std::string& name, std::vector<int> inputs, std::vector<int> outputs,
         const std::string& op = "Relu") {
  Node n;
  n.name = name;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  g.nodes.push_back(std::move(n));
  return static_cast<int>(g.nodes.size()) - 1;
}

std::vector<std::string> order(const Graph& g) {
  std::vector<std::string> names;
  for (const auto& n : g.nodes) names.push_back(n.name);
  return names;
}

using Names = std::vector<std::string>;

}  // namespace

TEST(add_value_makes_names_unique) {
  Graph g;
  int a = g.add_value("a");
  int a1 = g.add_value("a");
  int a2 = g.add_value("a");
  CHECK_EQ(g.values[static_cast<std::size_t>(a1)].name, std::string("a__1"));
  CHECK_EQ(g.values[static_cast<std::size_t>(a2)].name, std::string("a__2"));
  CHECK_EQ(g.find_value("a"), a);
  CHECK_EQ(g.find_value("a__2"), a2);
  CHECK_EQ(g.find_value("missing"), -1);
  int c = g.add_constant("w", Tensor(DType::Float32, {2, 3}));
  CHECK(g.values[static_cast<std::size_t>(c)].is_constant);
  CHECK_EQ(g.values[static_cast<std::size_t>(c)].info.shape, (std::vector<int64_t>{2, 3}));
}

TEST(opset_and_context) {
  Graph g;
  CHECK_EQ(g.opset(), int64_t{0});
  g.opsets["ai.onnx"] = 11;
  CHECK_EQ(g.opset(), int64_t{11});
  g.opsets[""] = 17;
  CHECK_EQ(g.opset(), int64_t{17});
  Node n;
  n.name = "conv1";
  n.op_type = "Conv";
  CHECK_EQ(Graph::node_context(n), std::string("node 'conv1' (Conv)"));
  n.domain = "com.example";
  CHECK_EQ(Graph::node_context(n), std::string("node 'conv1' (com.example.Conv)"));
}

TEST(toposort_orders_and_sets_producers) {
  Graph g;
  int x = g.add_value("x");
  int a = g.add_value("a");
  int b = g.add_value("b");
  int y = g.add_value("y");
  g.inputs = {x};
  g.outputs = {y};
  node(g, "third", {b}, {y});
  node(g, "second", {a, x}, {b}, "Add");
  node(g, "first", {x}, {a});
  g.toposort();
  CHECK_EQ(order(g), (Names{"first", "second", "third"}));
  CHECK_EQ(g.values[static_cast<std::size_t>(a)].producer, 0);
  CHECK_EQ(g.values[static_cast<std::size_t>(b)].producer, 1);
  CHECK_EQ(g.values[static_cast<std::size_t>(y)].producer, 2);
  CHECK_EQ(g.values[static_cast<std::size_t>(x)].producer, -1);
}

TEST(toposort_keeps_file_order_where_it_can) {
  // Two independent branches: sorted order must follow the file where dependencies allow.
  Graph g;
  int x = g.add_value("x");
  g.inputs = {x};
  int p = g.add_value("p"), q = g.add_value("q"), r = g.add_value("r"), s = g.add_value("s"), y = g.add_value("y");
  node(g, "p1", {x}, {p});
  node(g, "q1", {x}, {q});
  node(g, "s_needs_r", {r}, {s});
  node(g, "r_from_p", {p}, {r});
  node(g, "join", {q, s}, {y}, "Add");
  g.outputs = {y};
  g.toposort();
  CHECK_EQ(order(g), (Names{"p1", "q1", "r_from_p", "s_needs_r", "join"}));
}

TEST(toposort_handles_constants_and_omitted_optionals) {
  Graph g;
  int x = g.add_value("x");
  int w = g.add_constant("w", Tensor(DType::Float32, {1}));
  int y = g.add_value("y");
  int z = g.add_value("z");
  g.inputs = {x};
  node(g, "uses_y", {y, -1, w}, {z, -1}, "Clip");
  node(g, "makes_y", {x, w}, {y}, "Add");
  g.outputs = {z};
  g.toposort();
  CHECK_EQ(order(g), (Names{"makes_y", "uses_y"}));
}

TEST(node_reading_its_value_twice) {
  Graph g;
  int x = g.add_value("x"), a = g.add_value("a"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "square", {a, a}, {y}, "Mul");
  node(g, "relu", {x}, {a});
  g.outputs = {y};
  g.toposort();
  CHECK_EQ(order(g), (Names{"relu", "square"}));
  auto c = g.consumers();
  CHECK_EQ(c[static_cast<std::size_t>(a)], (std::vector<int>{1}));  // listed once
  CHECK_EQ(c[static_cast<std::size_t>(x)], (std::vector<int>{0}));
  CHECK(c[static_cast<std::size_t>(y)].empty());
}

TEST(toposort_cycle) {
  Graph g;
  int x = g.add_value("x"), a = g.add_value("a"), b = g.add_value("b"), c = g.add_value("c"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "entry", {x}, {a});
  node(g, "loop_add", {a, c}, {b}, "Add");
  node(g, "loop_relu", {b}, {c});
  node(g, "exit", {c}, {y});
  g.outputs = {y};
  CHECK_THROWS(g.toposort(), ModelFormatError, "the graph has a cycle");
  CHECK_THROWS(g.toposort(), ModelFormatError, "node 'loop_add' (Add)");
  CHECK_THROWS(g.toposort(), ModelFormatError, "node 'loop_relu' (Relu)");
  try {
    g.toposort();
  } catch (const ModelFormatError& e) {
    CHECK(std::string(e.what()).find("'entry'") == std::string::npos);
  }
}

TEST(toposort_self_loop) {
  Graph g;
  int x = g.add_value("x"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "me", {x, y}, {y}, "Add");
  g.outputs = {y};
  CHECK_THROWS(g.toposort(), ModelFormatError, "cycle");
}

TEST(toposort_dangling_input) {
  Graph g;
  int x = g.add_value("x"), ghost = g.add_value("ghost"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "adder", {x, ghost}, {y}, "Add");
  g.outputs = {y};
  CHECK_THROWS(g.toposort(), ModelFormatError, "node 'adder' (Add) reads 'ghost', which is neither");
}

TEST(toposort_two_producers) {
  Graph g;
  int x = g.add_value("x"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "first", {x}, {y});
  node(g, "second", {x}, {y});
  g.outputs = {y};
  CHECK_THROWS(g.toposort(), ModelFormatError, "value 'y' is produced by two nodes");
  CHECK_THROWS(g.toposort(), ModelFormatError, "'second'");
}

TEST(toposort_empty_graph) {
  Graph g;
  int x = g.add_value("x");
  g.inputs = {x};
  g.outputs = {x};
  g.toposort();
  CHECK(g.nodes.empty());
}

TEST(toposort_long_chain_and_wide_graph_are_fast) {
  // 200000-node chain stored backwards, then 100000 independent nodes: must stay near-linear.
  auto t0 = std::chrono::steady_clock::now();
  {
    Graph g;
    const int n = 200000;
    std::vector<int> v;
    for (int i = 0; i <= n; ++i) v.push_back(g.add_value("v" + std::to_string(i)));
    g.inputs = {v[0]};
    for (int i = n; i-- > 0;) node(g, "n" + std::to_string(i), {v[static_cast<std::size_t>(i)]}, {v[static_cast<std::size_t>(i) + 1]});
    g.outputs = {v.back()};
    g.toposort();
    bool sorted = true;
    for (int i = 0; i < n; ++i) sorted = sorted && g.nodes[static_cast<std::size_t>(i)].name == "n" + std::to_string(i);
    CHECK(sorted);
  }
  {
    Graph g;
    const int n = 100000;
    int x = g.add_value("x");
    g.inputs = {x};
    for (int i = 0; i < n; ++i) {
      int o = g.add_value("o" + std::to_string(i));
      node(g, "w" + std::to_string(i), {x}, {o});
      g.outputs.push_back(o);
    }
    g.toposort();
    CHECK_EQ(g.nodes.front().name, std::string("w0"));
    CHECK_EQ(g.nodes.back().name, "w" + std::to_string(n - 1));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s > 5) check::fail(__FILE__, __LINE__, "toposort took " + std::to_string(s) + " s");
}

TEST(remove_dead_nodes) {
  Graph g;
  int x = g.add_value("x");
  int w_live = g.add_constant("w_live", Tensor(DType::Float32, {4}));
  int w_dead = g.add_constant("w_dead", Tensor(DType::Float32, {4}));
  int a = g.add_value("a"), dead1 = g.add_value("dead1"), dead2 = g.add_value("dead2"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "live_add", {x, w_live}, {a}, "Add");
  node(g, "dead_add", {x, w_dead}, {dead1}, "Add");
  node(g, "dead_relu", {dead1}, {dead2});
  node(g, "live_relu", {a}, {y});
  g.outputs = {y};
  g.toposort();
  g.remove_dead_nodes();
  CHECK_EQ(order(g), (Names{"live_add", "live_relu"}));
  CHECK_EQ(g.values[static_cast<std::size_t>(a)].producer, 0);
  CHECK_EQ(g.values[static_cast<std::size_t>(y)].producer, 1);
  CHECK_EQ(g.values[static_cast<std::size_t>(dead1)].producer, -1);
  CHECK_EQ(g.values[static_cast<std::size_t>(w_live)].constant.numel(), int64_t{4});
  CHECK_EQ(g.values[static_cast<std::size_t>(w_dead)].constant.numel(), int64_t{0});  // storage freed
  (void)dead2;
}

TEST(remove_dead_nodes_keeps_multi_output_nodes_with_one_used_output) {
  Graph g;
  int x = g.add_value("x"), y = g.add_value("y"), mask = g.add_value("mask");
  g.inputs = {x};
  node(g, "drop", {x}, {y, mask}, "Dropout");
  g.outputs = {y};
  g.toposort();
  g.remove_dead_nodes();
  CHECK_EQ(order(g), (Names{"drop"}));
}

TEST(replace_uses) {
  Graph g;
  int x = g.add_value("x"), a = g.add_value("a"), b = g.add_value("b"), y = g.add_value("y");
  g.inputs = {x};
  node(g, "ident", {x}, {a}, "Identity");
  node(g, "add", {a, a}, {b}, "Add");
  node(g, "relu", {b}, {y});
  g.outputs = {a, y};
  g.toposort();
  g.replace_uses(a, x);
  CHECK_EQ(g.nodes[1].inputs, (std::vector<int>{x, x}));
  CHECK_EQ(g.outputs, (std::vector<int>{x, y}));
  CHECK(g.is_graph_output(x));
  CHECK(!g.is_graph_output(a));
  CHECK_EQ(g.nodes[0].outputs, (std::vector<int>{a}));  // producers' outputs are untouched
  g.remove_dead_nodes();
  CHECK_EQ(order(g), (Names{"add", "relu"}));
  auto c = g.consumers();
  CHECK_EQ(c[static_cast<std::size_t>(x)], (std::vector<int>{0}));
  CHECK(c[static_cast<std::size_t>(a)].empty());
}

TEST_MAIN()
