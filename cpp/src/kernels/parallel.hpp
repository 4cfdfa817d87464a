// Thin OpenMP helpers so kernels parallelise over large loops only (small tensors stay serial:
// thread start-up costs more than they save).
#pragma once

#include <cstdint>

namespace onnxplain::kernels {

/// Work items below this run on one thread.
constexpr int64_t kParallelGrain = 1 << 15;

/// Calls f(begin, end) over [0, n) split into contiguous chunks, one per thread.
template <class F>
void parallel_for(int64_t n, int threads, F&& f, int64_t grain = kParallelGrain) {
  if (threads <= 1 || n < grain) {
    f(int64_t{0}, n);
    return;
  }
  int64_t chunks = threads;
  if (n / grain < chunks) chunks = n / grain > 0 ? n / grain : 1;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    f(b, e);
  }
}

}  // namespace onnxplain::kernels
