#include "kernels/reduce.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/parallel.hpp"

namespace onnxplain::kernels {

std::string reduce_mask(const std::vector<int64_t>& axes, int64_t rank, std::vector<bool>* mask) {
  mask->assign(static_cast<std::size_t>(rank), axes.empty());
  for (int64_t a : axes) {
    if (a < -rank || a >= rank)
      return "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank);
    const auto k = static_cast<std::size_t>(a < 0 ? a + rank : a);
    if ((*mask)[k]) return "axis " + std::to_string(a) + " is repeated";
    (*mask)[k] = true;
  }
  return "";
}

std::vector<int64_t> reduced_shape(const std::vector<int64_t>& shape, const std::vector<bool>& mask,
                                   bool keepdims) {
  std::vector<int64_t> out;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (!mask[d])
      out.push_back(shape[d]);
    else if (keepdims)
      out.push_back(1);
  }
  return out;
}

namespace {

// Independent accumulators so the compiler can vectorise (and the rounding error grows slower
// than with one serial sum).
template <class T>
T sum_contiguous(const T* p, int64_t n) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  T s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += p[i];
  return s;
}

// y[o, i] = sum_r x[o, r, i]: every reduction is this after merging neighbouring axes.
template <class T>
void reduce_middle(const T* x, int64_t outer, int64_t red, int64_t inner, T* y, int threads) {
  if (inner == 1) {
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(red, 1));
    parallel_for(outer, threads, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) y[o] = sum_contiguous(x + o * red, red);
    }, grain);
    return;
  }
  // Work items are (outer index, block of inner) so a single outer row still splits across threads.
  constexpr int64_t kBlock = 2048;
  const int64_t nblk = (inner + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(red * std::min(inner, kBlock), 1));
  parallel_for(outer * nblk, threads, [&](int64_t b, int64_t e) {
    for (int64_t w = b; w < e; ++w) {
      const int64_t o = w / nblk, i0 = (w % nblk) * kBlock, i1 = std::min(inner, i0 + kBlock);
      T* py = y + o * inner;
      const T* px = x + o * red * inner;
      for (int64_t i = i0; i < i1; ++i) py[i] = px[i];
      for (int64_t r = 1; r < red; ++r) {
        const T* row = px + r * inner;
        for (int64_t i = i0; i < i1; ++i) py[i] += row[i];
      }
    }
  }, grain);
}

template <class T>
void reduce_sum_impl(const T* x, const std::vector<int64_t>& shape, const std::vector<bool>& mask, T* y,
                     int threads) {
  int64_t total = 1, out_n = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    total *= shape[d];
    if (!mask[d]) out_n *= shape[d];
  }
  if (out_n == 0) return;
  if (total == 0) {  // a reduced axis is empty: every sum is 0
    std::fill(y, y + out_n, T(0));
    return;
  }
  // Merge neighbouring axes of the same kind; size-1 axes change nothing either way.
  std::vector<int64_t> size;
  std::vector<bool> red;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!red.empty() && red.back() == mask[d])
      size.back() *= shape[d];
    else {
      size.push_back(shape[d]);
      red.push_back(mask[d]);
    }
  }
  int n_red = static_cast<int>(std::count(red.begin(), red.end(), true));
  if (n_red == 0) {
    std::memcpy(y, x, static_cast<std::size_t>(total) * sizeof(T));
    return;
  }
  // One pass per reduced group, innermost first: the first pass shrinks the data the most in the
  // common cases (spatial means), and the rest run on the smaller intermediate.
  std::vector<T> buf[2];
  const T* src = x;
  for (int pass = 0; n_red > 0; ++pass, --n_red) {
    std::size_t g = red.size();
    while (!red[g - 1]) --g;
    --g;
    int64_t outer = 1, inner = 1;
    for (std::size_t k = 0; k < g; ++k) outer *= size[k];
    for (std::size_t k = g + 1; k < size.size(); ++k) inner *= size[k];
    T* dst = y;
    if (n_red > 1) {
      buf[pass % 2].resize(static_cast<std::size_t>(outer * inner));
      dst = buf[pass % 2].data();
    }
    reduce_middle(src, outer, size[g], inner, dst, threads);
    src = dst;
    size.erase(size.begin() + static_cast<std::ptrdiff_t>(g));
    red.erase(red.begin() + static_cast<std::ptrdiff_t>(g));
  }
}

}  // namespace

void reduce_sum(const float* x, const std::vector<int64_t>& shape, const std::vector<bool>& mask, float* y,
                int threads) {
  reduce_sum_impl(x, shape, mask, y, threads);
}

void reduce_sum(const int64_t* x, const std::vector<int64_t>& shape, const std::vector<bool>& mask, int64_t* y,
                int threads) {
  reduce_sum_impl(x, shape, mask, y, threads);
}

void expand_reduced(const float* y, const std::vector<int64_t>& shape, const std::vector<bool>& mask, float scale,
                    float* x, int threads) {
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  if (total == 0) return;
  // Merged axes as in reduce_sum_impl, each with its stride in y (0 for reduced axes).
  std::vector<int64_t> size;
  std::vector<bool> red;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!red.empty() && red.back() == mask[d])
      size.back() *= shape[d];
    else {
      size.push_back(shape[d]);
      red.push_back(mask[d]);
    }
  }
  if (size.empty()) {
    x[0] = scale * y[0];
    return;
  }
  const std::size_t nd = size.size();
  std::vector<int64_t> ystride(nd, 0);
  int64_t s = 1;
  for (std::size_t k = nd; k-- > 0;)
    if (!red[k]) {
      ystride[k] = s;
      s *= size[k];
    }
  // Rows of the innermost merged axis: a fill with one value (reduced) or a scaled copy (kept).
  const int64_t inner = size.back();
  const bool inner_red = red.back();
  const int64_t outer = total / inner;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / inner);
  parallel_for(outer, threads, [&](int64_t b, int64_t e) {
    std::vector<int64_t> idx(nd, 0);
    int64_t off = 0;
    for (std::size_t k = nd - 1, rem = static_cast<std::size_t>(b); k-- > 0;) {
      idx[k] = static_cast<int64_t>(rem) % size[k];
      rem /= static_cast<std::size_t>(size[k]);
      off += idx[k] * ystride[k];
    }
    for (int64_t o = b; o < e; ++o) {
      float* row = x + o * inner;
      if (inner_red) {
        std::fill(row, row + inner, scale * y[off]);
      } else {
        const float* src = y + off;
        for (int64_t i = 0; i < inner; ++i) row[i] = scale * src[i];
      }
      for (std::size_t k = nd - 1; k-- > 0;) {
        off += ystride[k];
        if (++idx[k] < size[k]) break;
        off -= ystride[k] * size[k];
        idx[k] = 0;
      }
    }
  }, grain);
}

}  // namespace onnxplain::kernels
