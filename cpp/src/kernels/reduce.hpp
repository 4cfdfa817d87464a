// Sum reductions over any set of axes of a contiguous row-major tensor, their adjoint (spreading
// a reduced tensor back over the reduced axes, the VJP of a sum), and the axis/shape arithmetic
// the Reduce* ops share. No graph knowledge: ops/reduce_*.cpp parse attributes and call in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace onnxplain::kernels {

/// Marks the axes to reduce of a rank-`rank` tensor in `mask` (size rank). Negative axes count from
/// the end; empty `axes` means every axis. Returns "" when fine, else what is wrong (an axis out
/// of range or repeated), for the caller to report with its node context.
std::string reduce_mask(const std::vector<int64_t>& axes, int64_t rank, std::vector<bool>* mask);

/// Shape after reducing the masked axes: they become 1 (keepdims) or disappear. Dims < 0 (unknown)
/// stay unknown.
std::vector<int64_t> reduced_shape(const std::vector<int64_t>& shape, const std::vector<bool>& mask,
                                   bool keepdims);

/// y = sum of x over the masked axes; y holds the kept axes in order. Accumulates in the input
/// type; a reduction over an empty axis gives 0.
void reduce_sum(const float* x, const std::vector<int64_t>& shape, const std::vector<bool>& mask, float* y,
                int threads);
void reduce_sum(const int64_t* x, const std::vector<int64_t>& shape, const std::vector<bool>& mask, int64_t* y,
                int threads);

/// The adjoint of reduce_sum: x[i] = scale * y[j], j the element of the reduced tensor that x's
/// element i sums into (x has `shape`, y the kept axes in order).
void expand_reduced(const float* y, const std::vector<int64_t>& shape, const std::vector<bool>& mask, float scale,
                    float* x, int threads);

}  // namespace onnxplain::kernels
