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

const OpDef* find_op(const std::string& op_type, const std::string& domain) {
  if (!domain.empty() && domain != "ai.onnx") return nullptr;
  for (const auto& d : registry())
    if (op_type == d.op_type) return &d;
  return nullptr;
}

}  // namespace onnxplain::ops
