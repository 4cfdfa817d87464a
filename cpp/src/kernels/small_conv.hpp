// Convolution on small maps (the CNNs of 8x8 to 32x32 inputs explained over whole data sets) as
// one panel GEMM per layer: the batch folded into the product's columns (images side by side),
// the im2col written straight into the panel layout of kernels/panel_gemm.hpp from a zero-padded
// copy of the input (fixed-length copies, no per-row bounds checks), and the weight packed into
// panels once by the caller and cached. Through im2col + sgemm these layers spent a fifth of
// their time on im2col rows 4-8 floats wide and another tenth on OpenBLAS repacking the constant
// weight on every call.
//
// Layers of depth (input channels per group x taps) 64 and more run in a direct mode instead on
// AVX2 CPUs without AVX-512: output channels along the vector (blocks of 16), each of 6 output
// positions broadcast straight from the padded copy, no column panels at all (1.1-1.35x faster
// than the panel mode on the small CNNs' layers, level with onnxruntime's NCHWc kernels).
// ONNXPLAIN_SMALL_CONV=panel / direct forces either mode (tests, measurements).
#pragma once

#include <cstdint>

#include "kernels/conv.hpp"

namespace onnxplain::kernels {

/// Output positions per image up to which small_conv_applies (inclusive).
constexpr int64_t kSmallConvMaxPositions = 1024;

/// Whether small_conv_forward handles this shape: 1-D or 2-D, not depthwise (which has its own
/// stencil), non-negative pads, and at most kSmallConvMaxPositions output positions per image.
bool small_conv_applies(const ConvShape& s);

/// Whether this path should take a layer that Winograd F(4x4, 3x3) also could: on maps whose 4x4
/// output tiles are less than half used (2x2, 5x5) the transforms cost more than they save
/// (cnn8's 2x2 layer at batch 64: 440 us through Winograd, onnxruntime 200 us).
bool small_conv_beats_winograd(const ConvShape& s);

/// Floats of the packed weight: per group, the [M/groups, C/groups * taps] matrix in panel_gemm's
/// A layout (rows rounded up to whole panels, zero-filled).
int64_t small_conv_weight_floats(const ConvShape& s);

/// w[M, C/groups, k...] into that layout.
void small_conv_pack_weight(const ConvShape& s, const float* w, float* packed);

/// y[N, M, out...] = conv(x, w) + bias (bias may be null) with w packed by small_conv_pack_weight;
/// with `relu`, max(y, 0) (as the Relu op: NaN and -0 kept) as y is written.
/// Opens its own OpenMP region (at most `threads`) when the layer is large enough, so it must not
/// be called inside one with threads > 1; needs no scratch from the caller.
void small_conv_forward(const ConvShape& s, const float* x, const float* packed, const float* bias, float* y,
                        int threads, bool relu = false);

}  // namespace onnxplain::kernels
