// Winograd minimal filtering for 3x3 convolutions, F(m x m, 3 x 3) (Lavin & Gray 2016, "Fast
// Algorithms for Convolutional Neural Networks"): each m x m output tile costs (m+2)^2
// multiplications per (input, output) channel pair instead of 9 m^2, done as (m+2)^2 GEMMs over
// all tiles of the batch. VGG-style networks are nearly all 3x3 stride-1 convolutions, and so is
// the input gradient of one (a convolution with the flipped weight), so every pass of a
// gradient or LRP explanation runs through here.
#pragma once

#include <cstdint>

#include "kernels/conv.hpp"

namespace onnxplain::kernels {

/// Whether the Winograd path runs this convolution: 2-D, 3x3, stride 1, dilation 1, one group,
/// and wide enough that the transforms cost less than the multiplications they save.
bool winograd_applies(const ConvShape& s);

/// Floats of the transformed weight of shape s.
int64_t winograd_weight_floats(const ConvShape& s);

/// u = the transformed weight (w [M, C, 3, 3]) in panel_gemm's left-operand layout, one M x C
/// product per transform entry; computed once per weight and kept by the caller.
void winograd_transform_weight(const ConvShape& s, const float* w, float* u, int threads);

/// y = conv(x, w) + bias for a shape winograd_applies() accepts, with u from
/// winograd_transform_weight; with `relu`, max(y, 0) (as the Relu op: NaN and -0 kept) as y is
/// written. Opens its own OpenMP regions: not to be called inside one.
void winograd_conv(const ConvShape& s, const float* x, const float* u, const float* bias, float* y, int threads,
                   bool relu = false);

}  // namespace onnxplain::kernels
