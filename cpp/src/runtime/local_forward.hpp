// Forward passes of copies of one sample that differ from it only inside a box (occlusion's
// windows). Through the spatially local ops at the start of a CNN (convolutions, window pooling,
// pointwise ops: Op::local_window), a copy's activations differ from the sample's only inside the
// box's cone of influence, so only that region is recomputed: each op runs on the batch of crops
// around the copies' changed regions, and the rest is read from the sample's own forward pass.
// Where the changed region would cover most of a map, or an op is not local (a dense layer,
// global pooling, a Concat), the copies continue as a plain batched forward pass. The outputs
// equal Model::run on the copies up to float rounding (the same kernels run on other shapes).
#pragma once

#include <vector>

#include "runtime/model.hpp"

namespace onnxplain::runtime {

/// The graph outputs for P copies of one sample.
///
/// `copies`: the P copies [P, C, spatial...] (the model's single input); `base`: every value of
/// the sample's own forward pass (Model::run's `keep`, batch 1); `box_start`: P x nd (nd spatial
/// axes) where each copy's changed box begins; `box_size`: its size (nd; all channels). Outside
/// its box a copy must equal the sample.
std::vector<Tensor> run_local(const Model& model, const Tensor& copies, const std::vector<Tensor>& base,
                              const std::vector<int64_t>& box_start, const std::vector<int64_t>& box_size,
                              int threads);

}  // namespace onnxplain::runtime
