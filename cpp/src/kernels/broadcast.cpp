#include "kernels/broadcast.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/parallel.hpp"

namespace onnxplain::kernels {

namespace {
// Sum of n contiguous floats; four double accumulators give the loop some parallelism.
double sum_run(const float* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return (s0 + s1) + (s2 + s3);
}

// Sum over the runs src[off[r] .. off[r] + n) for r < nr, split across threads (one output
// element, so the threads share the runs and add their partial sums).
double sum_runs(const float* src, const int64_t* off, int64_t nr, int64_t n, int threads) {
  double s = 0;
  if (threads <= 1 || nr * n < 2 * kParallelGrain) {
    for (int64_t r = 0; r < nr; ++r) s += sum_run(src + off[r], n);
  } else if (nr >= threads) {
#pragma omp parallel for reduction(+ : s) num_threads(threads) schedule(static)
    for (int64_t r = 0; r < nr; ++r) s += sum_run(src + off[r], n);
  } else {
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t chunks = threads;
      double t = 0;
#pragma omp parallel for reduction(+ : t) num_threads(threads) schedule(static)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
        t += sum_run(src + off[r] + b, e - b);
      }
      s += t;
    }
  }
  return s;
}

// Source offsets of every index combination of the collapsed dims d < last whose target stride
// is (keep) or is not (!keep) zero, in row-major order of those dims.
std::vector<int64_t> combo_offsets(const BroadcastPlan& p, std::size_t last, bool keep) {
  std::vector<int64_t> off{0};
  for (std::size_t d = 0; d < last; ++d) {
    if ((p.stride_b[d] != 0) != keep) continue;
    std::vector<int64_t> next(off.size() * static_cast<std::size_t>(p.dims[d]));
    std::size_t k = 0;
    for (int64_t o : off)
      for (int64_t i = 0; i < p.dims[d]; ++i) next[k++] = o + i * p.stride_a[d];
    off.swap(next);
  }
  return off;
}

// Dim `i` of `s` counted from the right-aligned rank `r`; missing leading dims are 1.
int64_t aligned_dim(const Shape& s, std::size_t r, std::size_t i) {
  std::size_t lead = r - s.size();
  return i < lead ? 1 : s[i - lead];
}
}  // namespace

bool broadcast_shapes(const Shape& a, const Shape& b, Shape& out) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape res(r);
  for (std::size_t i = 0; i < r; ++i) {
    const int64_t da = aligned_dim(a, r, i), db = aligned_dim(b, r, i);
    if (da >= 0 && db >= 0) {
      if (da != db && da != 1 && db != 1) return false;
      res[i] = da == 1 ? db : da;
    } else if (da < 0 && db < 0) {
      res[i] = -1;
    } else {
      const int64_t known = da < 0 ? db : da;
      res[i] = known == 1 ? -1 : known;
    }
  }
  out = std::move(res);
  return true;
}

std::string broadcast_error(const Shape& a, const Shape& b) {
  return "cannot broadcast " + shape_str(a) + " with " + shape_str(b);
}

Shape legacy_rhs_shape(const Shape& b, int64_t rank_a, int64_t axis) {
  if (axis == kNoLegacyAxis) return b;
  if (axis < 0) axis += rank_a;
  const int64_t rb = static_cast<int64_t>(b.size());
  if (axis < 0 || axis + rb > rank_a) return b;
  Shape r = b;
  r.resize(static_cast<std::size_t>(rank_a - axis), 1);
  return r;
}

bool make_broadcast_plan(const Shape& a, const Shape& b, BroadcastPlan& plan) {
  const std::size_t r = std::max(a.size(), b.size());
  plan.out_shape.assign(r, 1);
  plan.dims.clear();
  plan.stride_a.clear();
  plan.stride_b.clear();
  // Right-aligned contiguous strides of each operand, zeroed on broadcast dims.
  std::vector<int64_t> sa(r), sb(r);
  int64_t ca = 1, cb = 1;
  for (std::size_t k = r; k-- > 0;) {
    const int64_t da = aligned_dim(a, r, k), db = aligned_dim(b, r, k);
    if (da < 0 || db < 0 || (da != db && da != 1 && db != 1)) return false;
    const int64_t d = da == 1 ? db : da;
    plan.out_shape[k] = d;
    sa[k] = da == 1 ? 0 : ca;
    sb[k] = db == 1 ? 0 : cb;
    ca *= da;
    cb *= db;
  }
  plan.numel = shape_numel(plan.out_shape);
  for (std::size_t k = 0; k < r; ++k) {
    const int64_t d = plan.out_shape[k];
    if (d == 1) continue;
    if (!plan.dims.empty()) {
      // Merge into the previous dim when each operand's previous stride continues this one.
      const std::size_t p = plan.dims.size() - 1;
      if (plan.stride_a[p] == sa[k] * d && plan.stride_b[p] == sb[k] * d) {
        plan.dims[p] *= d;
        plan.stride_a[p] = sa[k];
        plan.stride_b[p] = sb[k];
        continue;
      }
    }
    plan.dims.push_back(d);
    plan.stride_a.push_back(sa[k]);
    plan.stride_b.push_back(sb[k]);
  }
  if (plan.dims.empty()) {  // every dim is 1: one element, read at offset 0 of each operand
    plan.dims.push_back(1);
    plan.stride_a.push_back(1);
    plan.stride_b.push_back(1);
  }
  return true;
}

bool reduce_to_shape(const float* src, const Shape& full, const Shape& target, float* dst, int threads) {
  BroadcastPlan p;
  if (target.size() > full.size() || !make_broadcast_plan(full, target, p) || p.out_shape != full) return false;
  const int64_t nt = shape_numel(target);
  if (nt == 0) return true;
  if (p.numel == 0) {  // broadcast to an empty tensor: every sum is empty
    std::fill(dst, dst + nt, 0.f);
    return true;
  }
  if (nt == p.numel) {  // nothing was broadcast
    std::memcpy(dst, src, static_cast<std::size_t>(nt) * sizeof(float));
    return true;
  }
  // The collapsed dims alternate between kept (target stride != 0) and summed ones, and each
  // operand's innermost collapsed dim is contiguous. The kept dims in order enumerate dst.
  const std::size_t last = p.dims.size() - 1;
  const int64_t n = p.dims[last];
  if (p.stride_b[last] == 0) {
    // Innermost dim summed: each dst element is a sum of contiguous runs of n.
    const std::vector<int64_t> keep = combo_offsets(p, last, true);  // one per dst element
    const std::vector<int64_t> sum = combo_offsets(p, last, false);
    const auto nr = static_cast<int64_t>(sum.size());
    if (nt < 2 * static_cast<int64_t>(threads)) {
      std::vector<int64_t> off(sum.size());
      for (int64_t t = 0; t < nt; ++t) {
        for (std::size_t r = 0; r < sum.size(); ++r) off[r] = keep[static_cast<std::size_t>(t)] + sum[r];
        dst[t] = static_cast<float>(sum_runs(src, off.data(), nr, n, threads));
      }
      return true;
    }
    parallel_for(
        nt, threads,
        [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            const float* base = src + keep[static_cast<std::size_t>(t)];
            double s = 0;
            for (int64_t r = 0; r < nr; ++r) s += sum_run(base + sum[static_cast<std::size_t>(r)], n);
            dst[t] = static_cast<float>(s);
          }
        },
        std::max<int64_t>(1, kParallelGrain / (nr * n)));
    return true;
  }
  // Innermost dim kept: each row of n dst elements accumulates the matching rows of src, a
  // block of columns at a time so the accumulators stay in L1 and every read is contiguous.
  constexpr int64_t kBlock = 512;
  const std::vector<int64_t> keep = combo_offsets(p, last, true);  // one per dst row
  const std::vector<int64_t> sum = combo_offsets(p, last, false);
  const int64_t rows = static_cast<int64_t>(keep.size()), nblk = (n + kBlock - 1) / kBlock;
  const auto nr = static_cast<int64_t>(sum.size());
  parallel_for(
      rows * nblk, threads,
      [&](int64_t w0, int64_t w1) {
        double acc[kBlock];
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t row = w / nblk, j0 = (w % nblk) * kBlock, m = std::min(kBlock, n - j0);
          std::fill(acc, acc + m, 0.0);
          const float* base = src + keep[static_cast<std::size_t>(row)] + j0;
          for (int64_t r = 0; r < nr; ++r) {
            const float* q = base + sum[static_cast<std::size_t>(r)];
            for (int64_t j = 0; j < m; ++j) acc[j] += q[j];
          }
          float* d = dst + row * n + j0;
          for (int64_t j = 0; j < m; ++j) d[j] = static_cast<float>(acc[j]);
        }
      },
      std::max<int64_t>(1, kParallelGrain / (nr * std::min(kBlock, n))));
  return true;
}

}  // namespace onnxplain::kernels
