#include "runtime/local_forward.hpp"

#include <algorithm>
#include <cstring>

#include "kernels/parallel.hpp"
#include "ops/op.hpp"

namespace onnxplain::runtime {
namespace {

// A value the runtime holds as crops [P, C, size...]: copy p's crop begins at start[p * nd + a]
// on spatial axis a, and outside it the copy equals the sample's own value. The model input is
// held whole ([P, C, S...], `whole`); start/size then give its changed box.
struct Local {
  bool on = false;
  bool whole = false;
  std::vector<int64_t> start;  // P * nd
  std::vector<int64_t> size;   // nd
};

// A value continues as crops only while its crops cover at most this share of its map: beyond
// it, crops cost as much as whole maps, and the padding each crop carries makes them cost more.
constexpr double kMaxCropShare = 0.6;

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

/// Copies the box of spatial size n (all channels) at `from` in src [C, S...] to `to` in dst
/// [C, D...] (shapes without the batch axis).
void copy_box(const float* src, const Shape& ss, const int64_t* from, float* dst, const Shape& ds, const int64_t* to,
              const int64_t* n) {
  const std::size_t nd = ss.size() - 1;
  for (std::size_t a = 0; a < nd; ++a)
    if (n[a] <= 0) return;
  std::vector<int64_t> idx(nd, 0);
  const auto run = static_cast<std::size_t>(n[nd - 1]) * sizeof(float);
  for (int64_t c = 0; c < ss[0]; ++c) {
    std::fill(idx.begin(), idx.end(), 0);
    while (true) {
      int64_t so = c, dof = c;
      for (std::size_t a = 0; a < nd; ++a) {
        const int64_t i = a + 1 < nd ? idx[a] : 0;
        so = so * ss[a + 1] + from[a] + i;
        dof = dof * ds[a + 1] + to[a] + i;
      }
      std::memcpy(dst + dof, src + so, run);
      std::size_t a = nd - 1;
      bool done = true;
      while (a > 0) {
        --a;
        if (++idx[a] < n[a]) {
          done = false;
          break;
        }
        idx[a] = 0;
      }
      if (done) break;
    }
  }
}

Shape without_batch(const Tensor& t) { return Shape(t.shape().begin() + 1, t.shape().end()); }

}  // namespace

std::vector<Tensor> run_local(const Model& model, const Tensor& copies, const std::vector<Tensor>& base,
                              const std::vector<int64_t>& box_start, const std::vector<int64_t>& box_size,
                              int threads) {
  const Graph& g = model.graph();
  const std::size_t nd = box_size.size();
  if (g.inputs.size() != 1 || copies.rank() != static_cast<int64_t>(nd) + 2 || base.size() != g.values.size())
    throw InvalidArgument("run_local: needs a model with one input [N, C, spatial...] and its sample's values");
  const int64_t P = copies.dim(0);
  if (static_cast<int64_t>(box_start.size()) != P * static_cast<int64_t>(nd))
    throw InvalidArgument("run_local: one box start per copy and spatial axis");
  std::vector<Local> meta(g.values.size());
  {
    Local& in = meta[static_cast<std::size_t>(g.inputs[0])];
    in.on = in.whole = true;
    in.start = box_start;
    in.size = box_size;
  }
  auto value = [&](int v) -> const Tensor& { return base[static_cast<std::size_t>(v)]; };

  // Local value v (held by the runtime as `held`) over the region [r0, r0 + h) of each copy:
  // [P, C, h...], the sample's value with the copy's crop pasted over it.
  auto crop = [&](int v, const Tensor& held, const std::vector<int64_t>& r0, const std::vector<int64_t>& h) {
    const Local& L = meta[static_cast<std::size_t>(v)];
    // A pointwise op reads exactly the region its input holds.
    if (!L.whole && L.start == r0 && L.size == h) return held;
    const Tensor& b = value(v);
    const Shape bs = without_batch(b), hs = without_batch(held);
    Shape cs{P, bs[0]};
    cs.insert(cs.end(), h.begin(), h.end());
    Tensor out(DType::Float32, cs);
    const Shape os = without_batch(out);
    const int64_t om = out.numel() / std::max<int64_t>(P, 1), hm = held.numel() / std::max<int64_t>(P, 1);
    kernels::parallel_for(
        P, threads,
        [&](int64_t p0, int64_t p1) {
          std::vector<int64_t> zero(nd, 0), from(nd), to(nd), n(nd);
          for (int64_t p = p0; p < p1; ++p) {
            const int64_t* rp = &r0[static_cast<std::size_t>(p) * nd];
            float* q = out.f32() + p * om;
            if (L.whole) {
              copy_box(held.f32() + p * hm, hs, rp, q, os, zero.data(), h.data());
              continue;
            }
            copy_box(b.f32(), bs, rp, q, os, zero.data(), h.data());
            bool meets = true;
            for (std::size_t a = 0; a < nd; ++a) {
              const int64_t s = L.start[static_cast<std::size_t>(p) * nd + a];
              const int64_t lo = std::max(rp[a], s), hi = std::min(rp[a] + h[a], s + L.size[a]);
              meets = meets && hi > lo;
              from[a] = lo - s;
              to[a] = lo - rp[a];
              n[a] = hi - lo;
            }
            if (meets) copy_box(held.f32() + p * hm, hs, from.data(), q, os, to.data(), n.data());
          }
        },
        std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(om, 1)));
    return out;
  };
  auto whole = [&](int v, const Tensor& held) {
    if (meta[static_cast<std::size_t>(v)].whole) return held;
    const Shape bs = without_batch(value(v));
    return crop(v, held, std::vector<int64_t>(static_cast<std::size_t>(P) * nd, 0),
                std::vector<int64_t>(bs.begin() + 1, bs.end()));
  };

  auto hook = [&](std::size_t i, const std::vector<const Tensor*>& ins, std::vector<Tensor>& outs,
                  ExecContext& ctx) -> bool {
    const Node& node = g.nodes[i];
    bool any = false;
    for (int v : node.inputs) any = any || (v >= 0 && meta[static_cast<std::size_t>(v)].on);
    if (!any) return false;  // a plain batched op on whole values

    // Can the output stay local? One output, every varying input local and spatial, and inputs
    // that broadcast over space constant along it.
    std::vector<const Tensor*> sample_ins;
    for (int v : node.inputs) sample_ins.push_back(v >= 0 ? &value(v) : nullptr);
    ops::LocalWindow w;
    std::size_t present = 0;
    for (int o : node.outputs) present += o >= 0 ? 1 : 0;
    bool local = present == 1 && node.outputs[0] >= 0 && node.op->local_window(sample_ins, &w) && w.kernel.size() == nd;
    Shape s_in;
    std::vector<int> varying;
    for (std::size_t k = 0; local && k < node.inputs.size(); ++k) {
      const int v = node.inputs[k];
      if (v < 0) continue;
      const Tensor& t = value(v);
      if (g.values[static_cast<std::size_t>(v)].is_constant) {
        if (w.broadcasts)
          for (int64_t a = 0; local && a < std::min<int64_t>(t.rank(), static_cast<int64_t>(nd)); ++a)
            local = t.dim(t.rank() - 1 - a) == 1;
        continue;
      }
      const Shape ts = without_batch(t);
      local = meta[static_cast<std::size_t>(v)].on && t.rank() == static_cast<int64_t>(nd) + 2 &&
              (s_in.empty() || Shape(ts.begin() + 1, ts.end()) == s_in);
      s_in = Shape(ts.begin() + 1, ts.end());
      varying.push_back(static_cast<int>(k));
    }
    const int out_id = node.outputs.empty() ? -1 : node.outputs[0];
    Shape s_out;
    std::vector<int64_t> oo(static_cast<std::size_t>(P) * nd), ho(nd, 1), r0(static_cast<std::size_t>(P) * nd),
        hin(nd, 0);
    if (local) {
      const Tensor& bo = value(out_id);
      local = bo.rank() == static_cast<int64_t>(nd) + 2;
      if (local) s_out = Shape(bo.shape().begin() + 2, bo.shape().end());
    }
    if (local) {
      // The output region each copy changes: the windows that read its changed input region.
      std::vector<int64_t> lo(oo.size()), hi(oo.size());
      for (int64_t p = 0; p < P; ++p)
        for (std::size_t a = 0; a < nd; ++a) {
          int64_t in_lo = INT64_MAX, in_hi = INT64_MIN;
          for (int k : varying) {
            const Local& L = meta[static_cast<std::size_t>(node.inputs[static_cast<std::size_t>(k)])];
            const int64_t s = L.start[static_cast<std::size_t>(p) * nd + a];
            in_lo = std::min(in_lo, s);
            in_hi = std::max(in_hi, s + L.size[a] - 1);
          }
          const std::size_t u = static_cast<std::size_t>(p) * nd + a;
          lo[u] = std::max<int64_t>(0, ceil_div(in_lo + w.pad_begin[a] - (w.kernel[a] - 1) * w.dilation[a], w.stride[a]));
          hi[u] = std::min<int64_t>(s_out[a] - 1, floor_div(in_hi + w.pad_begin[a], w.stride[a]));
          ho[a] = std::max(ho[a], hi[u] - lo[u] + 1);
        }
      double share = 1;
      for (std::size_t a = 0; a < nd; ++a) {
        ho[a] = std::min(ho[a], s_out[a]);
        share *= static_cast<double>(ho[a]) / static_cast<double>(s_out[a]);
      }
      local = share <= kMaxCropShare;
      // The input crops: from the first window's first input position (down to a multiple of
      // the stride, so that the crop's output grid is the map's) to the last window's end; one
      // size for all copies, ending at the map's end where it would run past it.
      std::vector<int64_t> r1(oo.size());
      for (int64_t p = 0; local && p < P; ++p)
        for (std::size_t a = 0; a < nd; ++a) {
          const std::size_t u = static_cast<std::size_t>(p) * nd + a;
          oo[u] = std::max<int64_t>(0, std::min(lo[u], s_out[a] - ho[a]));
          r0[u] = std::max<int64_t>(0, oo[u] * w.stride[a] - w.pad_begin[a]) / w.stride[a] * w.stride[a];
          r1[u] = std::min(s_in[a], (oo[u] + ho[a] - 1) * w.stride[a] - w.pad_begin[a] +
                                        (w.kernel[a] - 1) * w.dilation[a] + 1);
          hin[a] = std::max(hin[a], r1[u] - r0[u]);
        }
      double in_share = 1;
      for (std::size_t a = 0; local && a < nd; ++a) {
        while (hin[a] < s_in[a] && (s_in[a] - hin[a]) % w.stride[a] != 0) ++hin[a];
        hin[a] = std::min(hin[a], s_in[a]);
        in_share *= static_cast<double>(hin[a]) / static_cast<double>(s_in[a]);
        for (int64_t p = 0; p < P; ++p) {
          const std::size_t u = static_cast<std::size_t>(p) * nd + a;
          r0[u] = std::min(r0[u], s_in[a] - hin[a]);
        }
      }
      local = local && in_share <= kMaxCropShare;
    }

    std::vector<const Tensor*> run_ins(ins.size(), nullptr);
    std::vector<Tensor> held(ins.size());
    if (local) {
      for (std::size_t k = 0; k < ins.size(); ++k) {
        const int v = node.inputs[k];
        if (v >= 0 && meta[static_cast<std::size_t>(v)].on) {
          held[k] = crop(v, *ins[k], r0, hin);
          run_ins[k] = &held[k];
        } else {
          run_ins[k] = ins[k];
        }
      }
      std::vector<Tensor> c(node.outputs.size());
      node.op->forward(run_ins, c, ctx);
      const Tensor& y = c[0];
      // Each copy's region of the crop's output.
      Shape ys = without_batch(y);
      bool fits = y.rank() == static_cast<int64_t>(nd) + 2 && y.dim(0) == P;
      std::vector<int64_t> from(oo.size());
      for (int64_t p = 0; fits && p < P; ++p)
        for (std::size_t a = 0; a < nd; ++a) {
          const std::size_t u = static_cast<std::size_t>(p) * nd + a;
          from[u] = oo[u] - r0[u] / w.stride[a];
          fits = fits && from[u] >= 0 && from[u] + ho[a] <= ys[a + 1];
        }
      if (fits) {
        Shape ds{P, ys[0]};
        ds.insert(ds.end(), ho.begin(), ho.end());
        Tensor d(DType::Float32, ds);
        const Shape dss = without_batch(d);
        const int64_t dm = d.numel() / std::max<int64_t>(P, 1), ym = y.numel() / std::max<int64_t>(P, 1);
        kernels::parallel_for(
            P, threads,
            [&](int64_t p0, int64_t p1) {
              const std::vector<int64_t> zero(nd, 0);
              for (int64_t p = p0; p < p1; ++p)
                copy_box(y.f32() + p * ym, ys, &from[static_cast<std::size_t>(p) * nd], d.f32() + p * dm, dss,
                         zero.data(), ho.data());
            },
            std::max<int64_t>(1, kernels::kParallelGrain / std::max<int64_t>(dm, 1)));
        outs[0] = std::move(d);
        Local& L = meta[static_cast<std::size_t>(out_id)];
        L.on = true;
        L.whole = false;
        L.start = oo;
        L.size = ho;
        return true;
      }
      // An op whose output on a crop does not have the expected grid: compute it whole.
    }
    for (std::size_t k = 0; k < ins.size(); ++k) {
      const int v = node.inputs[k];
      if (v >= 0 && meta[static_cast<std::size_t>(v)].on) {
        held[k] = whole(v, *ins[k]);
        run_ins[k] = &held[k];
      } else {
        run_ins[k] = ins[k];
      }
    }
    node.op->forward(run_ins, outs, ctx);
    return true;
  };

  std::vector<Tensor> outs = model.run({copies}, threads, nullptr, hook);
  for (std::size_t k = 0; k < outs.size(); ++k) {
    const int o = g.outputs[k];
    if (meta[static_cast<std::size_t>(o)].on) outs[k] = whole(o, outs[k]);
  }
  return outs;
}

}  // namespace onnxplain::runtime
