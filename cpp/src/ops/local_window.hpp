// The LocalWindow (ops/op.hpp) of a convolution or a window pooling, from its window attributes.
#pragma once

#include <vector>

#include "kernels/pool.hpp"
#include "ops/op.hpp"

namespace onnxplain::ops {

/// The window of an op with attributes `spec` and kernel `kernel` on the data input in[0]; false
/// where auto_pad SAME_* derives the padding from the input's size (a crop would get other pads).
inline bool window_of(const kernels::WindowSpec& spec, const std::vector<const Tensor*>& in, const Shape& kernel,
                      LocalWindow* w) {
  if (in.empty() || !in[0] || in[0]->rank() < 3) return false;
  const auto nd = static_cast<std::size_t>(in[0]->rank() - 2);
  if (kernel.size() != nd) return false;
  if (spec.auto_pad == kernels::AutoPad::SameUpper || spec.auto_pad == kernels::AutoPad::SameLower) return false;
  auto sized = [nd](const std::vector<int64_t>& v, std::size_t n) { return v.empty() || v.size() == n * nd; };
  if (!sized(spec.strides, 1) || !sized(spec.dilations, 1) || !sized(spec.pads, 2)) return false;
  const bool valid = spec.auto_pad == kernels::AutoPad::Valid;
  LocalWindow r;
  for (std::size_t a = 0; a < nd; ++a) {
    r.kernel.push_back(kernel[a]);
    r.stride.push_back(spec.strides.empty() ? 1 : spec.strides[a]);
    r.dilation.push_back(spec.dilations.empty() ? 1 : spec.dilations[a]);
    r.pad_begin.push_back(valid || spec.pads.empty() ? 0 : spec.pads[a]);
  }
  *w = std::move(r);
  return true;
}

}  // namespace onnxplain::ops
