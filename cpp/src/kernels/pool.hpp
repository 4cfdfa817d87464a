// Sliding-window geometry shared by Conv and the pooling ops (output sizes from kernel, strides,
// dilations, explicit pads or auto_pad, ceil_mode) and the pooling kernels themselves. No graph
// knowledge: ops/*pool*.cpp and ops/conv.cpp parse attributes, report errors with their node
// context, and call in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace onnxplain::kernels {

enum class AutoPad { NotSet, SameUpper, SameLower, Valid };

/// Window attributes over nd spatial axes, as given on the node (before the input size is known).
struct WindowSpec {
  std::vector<int64_t> kernel;     // nd (Conv may fill it from the weight's shape)
  std::vector<int64_t> strides;    // nd, >= 1
  std::vector<int64_t> dilations;  // nd, >= 1
  std::vector<int64_t> pads;       // 2*nd: all begins, then all ends (ONNX order); NotSet only
  AutoPad auto_pad = AutoPad::NotSet;
  bool ceil_mode = false;
  int64_t nd() const { return static_cast<int64_t>(kernel.size()); }
};

/// Reads auto_pad ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"; "" means NOTSET). Returns ""
/// or what is wrong.
std::string parse_auto_pad(const std::string& s, AutoPad* out);

/// Fills defaults for strides/dilations (1) and pads (0) when empty, and checks sizes and signs.
/// `nd` is the number of spatial axes. Returns "" or what is wrong.
std::string normalize_window(WindowSpec* spec, int64_t nd);

/// Output size of one spatial axis, and the begin/end pads actually used. `in` < 0 (unknown)
/// gives -1. Returns "" or what is wrong (the window does not fit the padded input).
std::string window_axis(const WindowSpec& spec, int64_t axis, int64_t in, int64_t* out, int64_t* pad_begin,
                        int64_t* pad_end);

/// Output sizes of all spatial axes for the spatial input sizes `in` (unknown (< 0) gives -1).
/// Returns "" or what is wrong.
std::string window_out_dims(const WindowSpec& spec, const std::vector<int64_t>& in, std::vector<int64_t>* out);

/// Geometry resolved for concrete sizes, padded to 3 spatial axes (leading axes of size 1), so
/// 1-D, 2-D and 3-D windows share one loop nest.
struct Window3 {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t k_size() const { return k[0] * k[1] * k[2]; }
};

/// Resolves `spec` for the spatial input sizes `in` (all known, 1 to 3 of them). Returns "" or
/// what is wrong.
std::string resolve_window(const WindowSpec& spec, const std::vector<int64_t>& in, Window3* w);

/// y[p, out] = max over the window of x[p, in], for `planes` independent (batch*channel) planes.
/// Padding never wins (it is -inf).
void max_pool(const float* x, int64_t planes, const Window3& w, float* y, int threads);

/// y = mean over the window. count_include_pad: the divisor counts window taps that fall in the
/// padded input [-pad_begin, in + pad_end) (taps past the end that ceil_mode adds are never
/// counted, as onnxruntime does); otherwise only taps inside the input.
void avg_pool(const float* x, int64_t planes, const Window3& w, bool count_include_pad, float* y, int threads);

/// y[p] = max / mean of x[p, 0..n) for `planes` planes of n elements each.
void global_max_pool(const float* x, int64_t planes, int64_t n, float* y, int threads);
void global_avg_pool(const float* x, int64_t planes, int64_t n, float* y, int threads);

/// Vector-Jacobian products of the pools above for the cotangent dy (shaped like y); dx (shaped
/// like x) is overwritten. Max pools route each dy to the first maximum of its window in window
/// order (the tap the forward keeps: padding and NaN never win; ties go to the earliest tap, as
/// in onnxruntime and PyTorch), recomputed from x. Average pools spread dy / count with the
/// forward's divisor.
void max_pool_backward(const float* x, const float* dy, int64_t planes, const Window3& w, float* dx, int threads);
void avg_pool_backward(const float* dy, int64_t planes, const Window3& w, bool count_include_pad, float* dx,
                       int threads);
void global_max_pool_backward(const float* x, const float* dy, int64_t planes, int64_t n, float* dx, int threads);
void global_avg_pool_backward(const float* dy, int64_t planes, int64_t n, float* dx, int threads);

}  // namespace onnxplain::kernels
