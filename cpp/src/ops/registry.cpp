#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "ops/op.hpp"

namespace onnxplain::ops {

#define OP(OP_TYPE, ...) std::unique_ptr<Op> make_op_##OP_TYPE(const NodeDesc&);
#include "ops/op_list.inc"
#undef OP

const char* kind_name(OpKind k) {
  switch (k) {
    case OpKind::Linear: return "linear";
    case OpKind::Activation: return "activation";
    case OpKind::Sum: return "sum";
    case OpKind::Product: return "product";
    case OpKind::AvgPool: return "avgpool";
    case OpKind::MaxPool: return "maxpool";
    case OpKind::Routing: return "routing";
    case OpKind::Normalization: return "normalization";
    case OpKind::Softmax: return "softmax";
    case OpKind::Constant: return "constant";
    case OpKind::ShapeOf: return "shape";
  }
  return "?";
}

void Op::vjp(const std::vector<const Tensor*>&, const std::vector<const Tensor*>&, const std::vector<const Tensor*>&,
             const std::vector<bool>&, std::vector<Tensor>&, ExecContext&) const {
  throw UnsupportedModelError(context() + " has no vector-Jacobian product yet, so reverse methods cannot pass it",
                              {UnsupportedOp{op_type_, "", {name_}}});
}

std::vector<ValueInfo> infos_of(const std::vector<const Tensor*>& in) {
  std::vector<ValueInfo> v;
  v.reserve(in.size());
  for (const Tensor* t : in) v.push_back(t ? ValueInfo::of(*t) : ValueInfo());
  return v;
}

const std::vector<OpDef>& registry() {
  static const std::vector<OpDef> defs = {
#define OP(OP_TYPE, MIN_IN, MAX_IN, MAX_OUT) OpDef{#OP_TYPE, &make_op_##OP_TYPE, MIN_IN, MAX_IN, MAX_OUT},
#include "ops/op_list.inc"
#undef OP
  };
  return defs;
}

namespace {
std::vector<int64_t> parse_versions(const char* text) {
  std::vector<int64_t> v;
  const char* p = text;
  while (*p) {
    char* end = nullptr;
    const long long x = std::strtoll(p, &end, 10);
    if (end == p) break;
    v.push_back(x);
    p = end;
  }
  return v;
}
}  // namespace

const std::vector<OpVersions>& all_op_versions() {
  static const std::vector<OpVersions> table = [] {
    std::vector<OpVersions> t;
#define OPV(OP_TYPE, IMPLEMENTED, MISSING, ADVICE) \
  t.push_back(OpVersions{#OP_TYPE, parse_versions(IMPLEMENTED), parse_versions(MISSING), ADVICE});
#include "ops/op_versions.inc"
#undef OPV
    for (auto& o : t) {
      std::sort(o.implemented.begin(), o.implemented.end());
      std::sort(o.missing.begin(), o.missing.end());
    }
    return t;
  }();
  return table;
}

const OpVersions* op_versions(const std::string& op_type) {
  for (const auto& o : all_op_versions())
    if (op_type == o.op_type) return &o;
  return nullptr;
}

int64_t OpVersions::in_effect(int64_t opset) const {
  int64_t best = 0;
  for (int64_t v : implemented)
    if (v <= opset && v > best) best = v;
  for (int64_t v : missing)
    if (v <= opset && v > best) best = v;
  return best;
}

bool OpVersions::implements(int64_t version) const {
  return std::find(implemented.begin(), implemented.end(), version) != implemented.end();
}

const OpDef* find_op(const std::string& op_type, const std::string& domain) {
  if (!domain.empty() && domain != "ai.onnx") return nullptr;
  for (const auto& d : registry())
    if (op_type == d.op_type) return &d;
  return nullptr;
}

}  // namespace onnxplain::ops
