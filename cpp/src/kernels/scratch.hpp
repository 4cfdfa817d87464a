// Per-thread scratch memory for kernels and ops (no OpenMP here: the bindings include it too).
#pragma once

#include <cstddef>
#include <memory>

namespace onnxplain::kernels {

/// Who holds a thread's scratch buffer: users that may be live at once on one thread get
/// different slots (an op's im2col buffer while a conv worker or Winograd uses its own).
enum class ScratchSlot { Op = 0, ConvWorker = 1, Winograd = 2, Partial = 3, Pack = 4 };

/// Uninitialised float memory of at least n elements for this thread and slot, kept across calls
/// (re-allocating and zero-filling large buffers on every pass costs as much as small layers);
/// valid until the next call with the same slot on this thread.
inline float* thread_scratch(std::size_t n, ScratchSlot slot) {
  thread_local std::unique_ptr<float[]> buf[5];
  thread_local std::size_t cap[5] = {0, 0, 0, 0, 0};
  const auto k = static_cast<std::size_t>(slot);
  if (cap[k] < n) {
    buf[k].reset();
    buf[k].reset(new float[n]);
    cap[k] = n;
  }
  return buf[k].get();
}

}  // namespace onnxplain::kernels
