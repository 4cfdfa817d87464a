// Numpy-style (ONNX "multidirectional") broadcasting of two operands: the result shape, also with
// unknown dims for shape inference, and an iteration plan for kernels that walks both operands
// with strides instead of per-element index arithmetic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/tensor.hpp"

namespace onnxplain::kernels {

/// Broadcasts two shapes whose dims may be unknown (< 0). An unknown dim against a known one > 1
/// resolves to the known one (the only value that can succeed); against 1 or unknown it stays
/// unknown. Returns false when two known dims differ and neither is 1.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape& out);

/// "cannot broadcast (2, 3) with (4,)".
std::string broadcast_error(const Shape& a, const Shape& b);

/// Marks "no legacy axis": the operands broadcast the numpy way.
constexpr int64_t kNoLegacyAxis = INT64_MIN;

/// Shape of the right operand of an opset < 7 binary op with broadcast=1 and `axis` set: b's dims
/// line up with a's from `axis` on, so trailing 1s are appended until numpy-style right alignment
/// means the same thing. Returns b unchanged for kNoLegacyAxis (and for an axis that does not fit;
/// broadcasting then reports the mismatch).
Shape legacy_rhs_shape(const Shape& b, int64_t rank_a, int64_t axis);

/// How to walk y = f(a, b) over the broadcast of two fully known shapes. Output dims of size 1
/// are dropped and neighbouring dims merged wherever both operands stay contiguous (or both stay
/// constant) across them, so the common cases collapse to one or two dims: same shape ->
/// {n} with strides 1/1, scalar operand -> {n} with stride 0, per-channel [C,1,1] against
/// [N,C,H,W] -> {N, C, H*W} with the vector's strides {0, 1, 0}. The innermost stride of each
/// operand is then 0 or 1.
struct BroadcastPlan {
  Shape out_shape;                  // the broadcast shape (not collapsed)
  int64_t numel = 0;                // elements of out_shape
  std::vector<int64_t> dims;        // collapsed dims, outermost first; never empty
  std::vector<int64_t> stride_a;    // element strides of a per collapsed dim (0 = broadcast)
  std::vector<int64_t> stride_b;
};

/// Fills `plan`; false when the shapes do not broadcast (plan left unspecified).
bool make_broadcast_plan(const Shape& a, const Shape& b, BroadcastPlan& plan);

/// The adjoint of broadcasting `target` to `full`: dst (target's numel) = src (full's numel)
/// summed over every dim where target is 1 (or missing) and full is not. This is how the gradient
/// of a broadcast operand comes back to the operand's shape (a bias [C, 1, 1] against
/// [N, C, H, W] gets the sum over N, H, W). Sums accumulate in double. False when target does
/// not broadcast to full (dst untouched).
bool reduce_to_shape(const float* src, const Shape& full, const Shape& target, float* dst, int threads);

}  // namespace onnxplain::kernels
