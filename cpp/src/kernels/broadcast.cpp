#include "kernels/broadcast.hpp"

#include <algorithm>

namespace onnxplain::kernels {

namespace {
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

}  // namespace onnxplain::kernels
