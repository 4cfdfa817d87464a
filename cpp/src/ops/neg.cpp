// Neg — https://onnx.ai/onnx/operators/onnx__Neg.html (opsets 6, 13; 13 only adds bfloat16).
// Formula: y = -x; float32, and int64 for shape arithmetic (two's complement: -INT64_MIN wraps to
// INT64_MIN, as onnxruntime's kernel does on the usual hardware).
// VJP: -g.
// Kind: Activation (a unary map: LRP passes relevance through, as for every activation; the
// gradient family and DeepLIFT get the exact multiplier -1).
#include <cstdint>

#include "ops/unary_op.hpp"

namespace onnxplain::ops {
namespace {

class Neg final : public UnaryOp<Neg, UnaryGrad::FromInput, /*kInt64=*/true> {
 public:
  using UnaryOp::UnaryOp;
  OpKind kind() const override { return OpKind::Activation; }

  auto forward_fn() const {
    return [](float v) { return -v; };
  }
  auto forward_i64_fn() const {
    return [](int64_t v) { return static_cast<int64_t>(uint64_t{0} - static_cast<uint64_t>(v)); };
  }
  auto vjp_fn() const {
    return [](float, float gv) { return -gv; };
  }
};

}  // namespace
}  // namespace onnxplain::ops

ONNXPLAIN_REGISTER_OP(Neg, Neg)
