// STUB: Reshape is not implemented yet (replace this file).
#include "ops/op.hpp"

namespace onnxplain::ops {
namespace {
class ReshapeStub final : public Op {
 public:
  explicit ReshapeStub(const NodeDesc& d) : Op(d) { fail_format("op not implemented yet"); }
  OpKind kind() const override { return OpKind::Routing; }
  std::vector<ValueInfo> infer(const std::vector<ValueInfo>&) const override { return {}; }
  void forward(const std::vector<const Tensor*>&, std::vector<Tensor>&, ExecContext&) const override {}
};
}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Reshape, ReshapeStub)
