// Occlusion (Zeiler & Fergus 2014) with Captum's `Occlusion` semantics: a window slides over every
// axis of a sample; each position is replaced by the fill value, and every feature under the
// window receives f_t(x) - f_t(x occluded); a feature's relevance is the mean over the windows
// that cover it. Windows start at k * stride for k = 0 .. ceil((D - w) / stride), so the last one
// may be cut by the border, as Captum's are. The occluded copies of all samples run through the
// forward pass in batches.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "methods/methods.hpp"
#include "runtime/local_forward.hpp"

namespace onnxplain::methods {
namespace {

// Occluded copies per forward pass: at least 16 (on large CNNs larger batches gain nothing per
// sample: ResNet-50 at 224^2 takes 39 ms per sample at batch 1, 35.7 at 16, 34.5 at 64, while the
// activations grow), and up to 256 for small samples, where the per-call overhead of each op
// dominates a small batch.
int64_t occlusion_batch(int64_t sample_size) {
  return std::clamp<int64_t>((int64_t{1} << 21) / std::max<int64_t>(sample_size, 1), 16, 256);
}

/// A window or stride parameter resolved to one entry per axis of a sample.
std::vector<int64_t> per_axis(const Params& p, const char* name, double dflt, const Shape& sample) {
  const auto r = static_cast<std::size_t>(sample.size());
  std::vector<int64_t> out;
  auto arr = p.arrays.find(name);
  if (arr != p.arrays.end()) {
    const Tensor& a = arr->second;
    if (static_cast<std::size_t>(a.numel()) != r)
      throw InvalidArgument(std::string("occlusion: ") + name + " has " + std::to_string(a.numel()) +
                            " entries, but a sample has " + std::to_string(r) + " axes " + shape_str(sample) +
                            "; give an int or one entry per axis of a sample");
    for (int64_t i = 0; i < a.numel(); ++i) {
      const float v = a.f32()[i];
      if (!(v >= 1.f) || v != std::floor(v))
        throw InvalidArgument(std::string("occlusion: ") + name + " entries must be integers >= 1, got " +
                              std::to_string(v));
      out.push_back(static_cast<int64_t>(v));
    }
    return out;
  }
  auto it = p.numbers.find(name);
  const double v = it == p.numbers.end() ? dflt : it->second;
  if (!(v >= 1) || v != std::floor(v))
    throw InvalidArgument(std::string("occlusion: ") + name + " must be an integer >= 1, got " + std::to_string(v));
  // An int spans all channels of an image-like sample (C, spatial...), as Captum's (C, w, w).
  for (std::size_t a = 0; a < r; ++a) out.push_back(r >= 2 && a == 0 ? sample[0] : static_cast<int64_t>(v));
  return out;
}

/// Calls fn(offset, length) for each contiguous run (along the last axis) of the box
/// [start, start + size) of a sample shaped `dims` (row-major).
template <class F>
void for_each_run(const Shape& dims, const std::vector<int64_t>& start, const std::vector<int64_t>& size, F fn) {
  const std::size_t r = dims.size();
  std::vector<int64_t> idx(r, 0);
  while (true) {
    int64_t off = 0;
    for (std::size_t a = 0; a < r; ++a) off = off * dims[a] + start[a] + (a + 1 < r ? idx[a] : 0);
    fn(off, size[r - 1]);
    std::size_t a = r - 1;
    while (a > 0) {
      --a;
      if (++idx[a] < size[a]) break;
      idx[a] = 0;
      if (a == 0) return;
    }
    if (r == 1) return;
  }
}

}  // namespace

Explanation Explainer::explain_occlusion(const std::vector<Tensor>& inputs, const std::vector<int64_t>& targets,
                                         int threads, const Progress& progress) const {
  if (inputs.size() != 1)
    throw InvalidArgument("occlusion: the model has " + std::to_string(inputs.size()) +
                          " inputs; occlusion explains models with one input");
  const Tensor& x = inputs[0];
  if (x.rank() < 2)
    throw InvalidArgument("occlusion: the input needs a batch axis and at least one feature axis, got shape " +
                          shape_str(x.shape()));
  // Targets and f_t(x) from the clean forward pass, which also checks the batch against the model
  // (a batch of the wrong size is a ShapeError, as for every method, before the window is checked).
  Explanation ex = sweep(inputs, targets, threads, false, /*reverse=*/false);
  ex.start = "occlusion";
  const Shape sample(x.shape().begin() + 1, x.shape().end());
  const std::vector<int64_t> win = per_axis(params_, "window", 8, sample);
  const std::vector<int64_t> stride = per_axis(params_, "stride", 8, sample);
  // The fill: a number, or one value per feature (an array shaped like one sample, e.g. a
  // training set's mean for tabular data).
  std::vector<float> fill(static_cast<std::size_t>(x.numel() / std::max<int64_t>(x.dim(0), 1)),
                          static_cast<float>(params_.numbers.count("fill") ? params_.numbers.at("fill") : 0.0));
  if (auto f = params_.arrays.find("fill"); f != params_.arrays.end()) {
    if (f->second.numel() != static_cast<int64_t>(fill.size()))
      throw InvalidArgument("occlusion: fill must be a number or an array shaped like one sample " +
                            shape_str(sample) + ", got shape " + shape_str(f->second.shape()));
    std::copy(f->second.f32(), f->second.f32() + f->second.numel(), fill.begin());
  }
  std::vector<int64_t> count(sample.size());
  int64_t windows = 1;
  for (std::size_t a = 0; a < sample.size(); ++a) {
    if (win[a] > sample[a])
      throw InvalidArgument("occlusion: the window " + shape_str(Shape(win.begin(), win.end())) +
                            " is larger than a sample " + shape_str(sample) + " on axis " + std::to_string(a + 1));
    if (stride[a] > win[a])
      throw InvalidArgument("occlusion: the stride " + shape_str(Shape(stride.begin(), stride.end())) +
                            " exceeds the window " + shape_str(Shape(win.begin(), win.end())) + " on axis " +
                            std::to_string(a + 1) + ", which would leave features that no window covers");
    count[a] = (sample[a] - win[a] + stride[a] - 1) / stride[a] + 1;
    windows *= count[a];
  }
  const int64_t n = x.dim(0), m = x.numel() / std::max<int64_t>(n, 1);


  // The window's box at index j (first axis slowest).
  auto box = [&](int64_t j, std::vector<int64_t>& start, std::vector<int64_t>& size) {
    for (std::size_t a = sample.size(); a-- > 0;) {
      const int64_t k = j % count[a];
      j /= count[a];
      start[a] = k * stride[a];
      size[a] = std::min(win[a], sample[a] - start[a]);
    }
  };
  // How many windows cover each feature: the same for every sample.
  std::vector<float> cover(static_cast<std::size_t>(m), 0.f);
  std::vector<int64_t> start(sample.size()), size(sample.size());
  for (int64_t j = 0; j < windows; ++j) {
    box(j, start, size);
    for_each_run(sample, start, size, [&](int64_t off, int64_t len) {
      for (int64_t e = 0; e < len; ++e) cover[static_cast<std::size_t>(off + e)] += 1.f;
    });
  }

  Tensor acc = Tensor::zeros(DType::Float32, x.shape());
  const int64_t total = n * windows;
  const int64_t per_pass = occlusion_batch(m);
  // Recompute only each window's cone of influence through the local ops at the start of the
  // model (runtime/local_forward.hpp); ONNXPLAIN_LOCAL_FORWARD=0 runs every copy whole.
  const char* env = std::getenv("ONNXPLAIN_LOCAL_FORWARD");
  // A model with a fixed batch (the Model Zoo's: 1, with Reshape shapes that repeat it) takes no
  // batch of crops; its copies go through run(), which passes them one fixed batch at a time.
  const bool local = sample.size() >= 2 && !(env && std::string(env) == "0") && model_->fixed_batch() == 0;
  int64_t done = 0;
  for (int64_t b = 0; b < n; ++b) {
    std::vector<Tensor> base;
    Tensor xb;
    if (local) {
      Shape one = x.shape();
      one[0] = 1;
      xb = Tensor(DType::Float32, one);
      std::memcpy(xb.f32(), x.f32() + b * m, static_cast<std::size_t>(m) * sizeof(float));
      model_->run({xb}, threads, &base);
    }
    const auto ub = static_cast<std::size_t>(b);
    for (int64_t j0 = 0; j0 < windows; j0 += per_pass) {
      const int64_t j1 = std::min(windows, j0 + per_pass);
      Shape bshape = x.shape();
      bshape[0] = j1 - j0;
      Tensor batch(DType::Float32, bshape);
      std::vector<int64_t> box_start;
      for (int64_t j = j0; j < j1; ++j) {
        float* q = batch.f32() + (j - j0) * m;
        std::memcpy(q, x.f32() + b * m, static_cast<std::size_t>(m) * sizeof(float));
        box(j, start, size);
        for_each_run(sample, start, size, [&](int64_t off, int64_t len) {
          std::copy(fill.data() + off, fill.data() + off + len, q + off);
        });
        if (local) box_start.insert(box_start.end(), start.begin() + 1, start.end());
      }
      const Tensor y = local ? runtime::run_local(*model_, batch, base, box_start,
                                                  std::vector<int64_t>(win.begin() + 1, win.end()), threads).at(0)
                             : model_->run({batch}, threads).at(0);
      const int64_t k = y.numel() / std::max<int64_t>(j1 - j0, 1);
      float* r = acc.f32() + b * m;
      for (int64_t j = j0; j < j1; ++j) {
        const float d = ex.target_values[ub] - y.f32()[(j - j0) * k + ex.targets[ub]];
        box(j, start, size);
        for_each_run(sample, start, size, [&](int64_t off, int64_t len) {
          for (int64_t e = 0; e < len; ++e) r[off + e] += d;
        });
      }
      done += j1 - j0;
      if (progress) progress(done, total);
    }
  }
  for (int64_t b = 0; b < n; ++b) {
    float* r = acc.f32() + b * m;
    for (int64_t e = 0; e < m; ++e) r[e] /= cover[static_cast<std::size_t>(e)];
  }
  ex.relevance = {acc};
  return ex;
}

}  // namespace onnxplain::methods
