// Convolution: im2col/col2im, a direct depthwise kernel, and the im2col + GEMM driver that the
// Conv op (and, later, the reverse passes running a conv with modified weights) call. Geometry
// comes from kernels/pool.hpp (Window3). NCHW (NCDHW / NCW) layout, weights [M, C/groups, k...].
#pragma once

#include <cstdint>

#include "kernels/pool.hpp"

namespace onnxplain::kernels {

/// col[(c*K + k), ldc-strided columns] = x[c, window tap k of each output position], zero where
/// the tap falls in the padding. x holds `channels` planes of w.in_size(); col has
/// channels*w.k_size() rows of w.out_size() values at row stride ldc.
void im2col(const float* x, int64_t channels, const Window3& w, float* col, int64_t ldc, int threads);

/// The adjoint of im2col: x[c, ...] += every col entry that was read from it (x is not cleared).
void col2im_add(const float* col, int64_t channels, const Window3& w, float* x, int threads);

struct ConvShape {
  int64_t batch = 0;
  int64_t in_channels = 0;   // C
  int64_t out_channels = 0;  // M
  int64_t groups = 1;
  Window3 win{};
};

/// What a convolution does to each output value as it is written, for the nodes after it that
/// the runtime fused: v = conv + bias, then v + residual[i] (an Add of a tensor shaped like the
/// output), then Relu's `v < 0 ? 0 : v` (NaN and -0 kept). The same operations in the same order
/// as the separate nodes, so the result is bit for bit theirs.
struct Epilogue {
  const float* residual = nullptr;
  bool relu = false;
  bool residual_first = false;  // the sum is residual + v (the order only shows in NaN payloads)
  bool any() const { return residual || relu; }
  Epilogue at(int64_t offset) const { return {residual ? residual + offset : nullptr, relu, residual_first}; }
};

/// Applies `ep` in place to y[0, n), whose entries start at offset `at` of the output.
inline void apply_epilogue(const Epilogue& ep, float* y, int64_t n, int64_t at) {
  if (ep.residual) {
    const float* r = ep.residual + at;
    if (ep.residual_first) {
      if (ep.relu)
        for (int64_t i = 0; i < n; ++i) {
          const float v = r[i] + y[i];
          y[i] = v < 0.f ? 0.f : v;
        }
      else
        for (int64_t i = 0; i < n; ++i) y[i] = r[i] + y[i];
    } else if (ep.relu) {
      for (int64_t i = 0; i < n; ++i) {
        const float v = y[i] + r[i];
        y[i] = v < 0.f ? 0.f : v;
      }
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] + r[i];
    }
  } else if (ep.relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] < 0.f ? 0.f : y[i];
  }
}

/// The same over the whole output of n floats, parallel over `threads` (each chunk in one call).
void apply_epilogue_parallel(const Epilogue& ep, float* y, int64_t n, int threads);

/// Scratch floats conv_forward needs for this shape (0 when it needs none).
int64_t conv_scratch_floats(const ConvShape& s);

/// y[N, M, out...] = conv(x[N, C, in...], w[M, C/groups, k...]) + bias[M] (bias may be null),
/// with `ep` applied as y is written (residual indexed like y).
/// `scratch` holds at least conv_scratch_floats(s) floats. Calls sgemm (so it must not run inside
/// an OpenMP parallel region); parallelises its own copying loops over `threads`.
void conv_forward(const ConvShape& s, const float* x, const float* w, const float* bias, float* y, float* scratch,
                  int threads, const Epilogue& ep = {});

/// Scratch floats conv_backward needs for this shape (0 when it needs none).
int64_t conv_backward_scratch_floats(const ConvShape& s);

/// The vector-Jacobian product of conv_forward for the cotangent dy[N, M, out...]: each non-null
/// result is overwritten: dx[N, C, in...] = dL/dx (reads w), dw[M, C/groups, k...] = dL/dw
/// (reads x), db[M] = dL/db. The GEMM parts (W^T dY then col2im; dY col^T) go through sgemm, so
/// the same OpenMP rule as conv_forward applies; `scratch` holds conv_backward_scratch_floats(s).
void conv_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                   float* db, float* scratch, int threads);

/// Whether dL/dx of this convolution is taken as a convolution of dy: stride 1 on every axis,
/// each pad no larger than the dilated kernel's reach, not depthwise (which has its own kernel),
/// not 1x1 (W^T dY reads the weight in place), and at least 16 input channels (fewer are cheaper
/// through col2im).
/// Then conv_forward(input_grad_conv_shape(s), dy, flipped w) gives dx with the forward's
/// threading, and no col2im scatter.
bool input_grad_is_conv(const ConvShape& s);

/// The geometry of that convolution: M input channels, C output channels, the same groups and
/// dilations, pads d*(k-1) - pad.
ConvShape input_grad_conv_shape(const ConvShape& s);

/// Its weight, [C, M/groups, k...]: wf[g*Cg + c, m, taps reversed] = w[g*Mg + m, c, taps].
void flip_conv_weight(const ConvShape& s, const float* w, float* wf, int threads);

}  // namespace onnxplain::kernels
