// onnxplain for C++: header-only RAII wrappers over the C API (onnxplain.h), so that C++ users need
// neither the C calls nor the library's internal headers. Failures throw onnxplain::ApiError with
// the C API's status and message.
//
//   onnxplain::Model model = onnxplain::Model::load("model.onnx");
//   onnxplain::Explainer ex(model, "lrp.epsilon_plus_flat");
//   onnxplain::Result r = ex.explain(x.data(), {8, 3, 224, 224});   // r.shape, r.data
#pragma once

#include <onnxplain/onnxplain.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace onnxplain {

/// A failed C API call: its status and message.
class ApiError : public std::runtime_error {
 public:
  ApiError(onnxplain_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  onnxplain_status status() const { return status_; }

 private:
  onnxplain_status status_;
};

inline void check(onnxplain_status s) {
  if (s != ONNXPLAIN_OK) throw ApiError(s, onnxplain_last_error());
}

/// A tensor the library computed, copied out of its handle.
struct Result {
  std::vector<int64_t> shape;
  std::vector<float> data;
  std::vector<float> deltas;  // explain(..., deltas = true): one per sample
};

inline Result take(onnxplain_tensor* t) {
  std::unique_ptr<onnxplain_tensor, decltype(&onnxplain_tensor_free)> owned(t, onnxplain_tensor_free);
  Result r;
  const int64_t* s = onnxplain_tensor_shape(t);
  r.shape.assign(s, s + onnxplain_tensor_rank(t));
  const float* d = onnxplain_tensor_data(t);
  r.data.assign(d, d + onnxplain_tensor_size(t));
  return r;
}

/// Method parameters: numbers, strings and float arrays by name.
class Params {
 public:
  Params() {
    onnxplain_params* p = nullptr;
    check(onnxplain_params_create(&p));
    p_.reset(p);
  }
  Params& set(const std::string& key, double value) {
    check(onnxplain_params_set_number(p_.get(), key.c_str(), value));
    return *this;
  }
  Params& set(const std::string& key, const std::string& value) {
    check(onnxplain_params_set_string(p_.get(), key.c_str(), value.c_str()));
    return *this;
  }
  Params& set(const std::string& key, const char* value) { return set(key, std::string(value)); }
  Params& set(const std::string& key, const std::vector<float>& data, const std::vector<int64_t>& shape) {
    check(onnxplain_params_set_array(p_.get(), key.c_str(), data.data(), shape.data(), shape.size()));
    return *this;
  }
  const onnxplain_params* get() const { return p_.get(); }

 private:
  std::unique_ptr<onnxplain_params, decltype(&onnxplain_params_free)> p_{nullptr, onnxplain_params_free};
};

/// A loaded model; copies share it.
class Model {
 public:
  static Model load(const std::string& path, const onnxplain_load_options* opts = nullptr) {
    onnxplain_model* m = nullptr;
    check(onnxplain_model_load(path.c_str(), opts, &m));
    return Model(m);
  }
  static Model from_bytes(const void* data, size_t size, const onnxplain_load_options* opts = nullptr) {
    onnxplain_model* m = nullptr;
    check(onnxplain_model_load_bytes(data, size, opts, &m));
    return Model(m);
  }
  /// Output 0 of a single-input model for the batch `x` shaped `shape`.
  Result run(const float* x, const std::vector<int64_t>& shape, int threads = 0) const {
    onnxplain_tensor* t = nullptr;
    check(onnxplain_model_run(m_.get(), x, shape.data(), shape.size(), threads, &t));
    return take(t);
  }
  /// The declared shape of input `index` (-1 = dynamic).
  std::vector<int64_t> input_shape(size_t index = 0) const {
    size_t rank = 0;
    check(onnxplain_model_input_shape(m_.get(), index, nullptr, 0, &rank));
    std::vector<int64_t> dims(rank);
    check(onnxplain_model_input_shape(m_.get(), index, dims.data(), dims.size(), &rank));
    return dims;
  }
  const onnxplain_model* get() const { return m_.get(); }

 private:
  explicit Model(onnxplain_model* m) : m_(m, onnxplain_model_free) {}
  std::shared_ptr<onnxplain_model> m_;
};

/// A method bound to a model.
class Explainer {
 public:
  Explainer(const Model& model, const std::string& method, const Params& params = Params()) {
    onnxplain_explainer* e = nullptr;
    check(onnxplain_explainer_create(model.get(), method.c_str(), params.get(), &e));
    e_.reset(e, onnxplain_explainer_free);
  }
  /// Reads a .oxp file (Python's Explainer.save or save() below).
  static Explainer load(const std::string& path, int threads = 0) {
    onnxplain_explainer* e = nullptr;
    check(onnxplain_explainer_load(path.c_str(), threads, &e));
    return Explainer(e);
  }
  /// Relevance shaped like x; targets empty = the argmax per sample, one value = for every sample.
  Result explain(const float* x, const std::vector<int64_t>& shape, const std::vector<int64_t>& targets = {},
                 bool deltas = false, int threads = 0) const {
    std::vector<float> d(deltas && !shape.empty() ? static_cast<size_t>(shape[0]) : 0);
    onnxplain_tensor* t = nullptr;
    check(onnxplain_explain(e_.get(), x, shape.data(), shape.size(), targets.empty() ? nullptr : targets.data(),
                            targets.size(), threads, &t, deltas ? d.data() : nullptr));
    Result r = take(t);
    r.deltas = std::move(d);
    return r;
  }
  /// Adds a batch to what a pattern.* method learns (a no-op for the others).
  void fit(const float* x, const std::vector<int64_t>& shape, int threads = 0) {
    check(onnxplain_explainer_fit(e_.get(), x, shape.data(), shape.size(), threads));
  }
  void save(const std::string& path) const { check(onnxplain_explainer_save(e_.get(), path.c_str())); }

 private:
  explicit Explainer(onnxplain_explainer* e) : e_(e, onnxplain_explainer_free) {}
  std::shared_ptr<onnxplain_explainer> e_;
};

}  // namespace onnxplain
