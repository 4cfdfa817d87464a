// The C API (include/onnxplain/onnxplain.h): opaque handles over runtime::Model and
// methods::Explainer. Every entry point runs inside guard(), which turns each C++ exception into
// a status and this thread's last-error message, so none crosses into C.
#include "onnxplain/onnxplain.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "methods/methods.hpp"
#include "onnxplain/errors.hpp"
#include "patterns/oxp.hpp"
#include "patterns/statistics.hpp"
#include "runtime/model.hpp"

using namespace onnxplain;

struct onnxplain_tensor {
  Tensor t;
  std::vector<int64_t> shape;
};

struct onnxplain_model {
  std::shared_ptr<runtime::Model> m;
  std::string bytes;  // what it was loaded from, for saving explainers
  int threads = 1;
};

struct onnxplain_params {
  methods::Params p;
};

struct onnxplain_explainer {
  std::shared_ptr<methods::Explainer> ex;
  std::shared_ptr<runtime::Model> model;
  std::string bytes;
  int threads = 1;
  std::mutex fit_mu;
};

namespace {

thread_local std::string t_error;
thread_local onnxplain_status t_status = ONNXPLAIN_OK;

onnxplain_status fail(onnxplain_status s, const std::string& kind, const std::string& msg) {
  t_status = s;
  t_error = kind + ": " + msg;
  return s;
}

template <class F>
onnxplain_status guard(F&& f) {
  try {
    f();
    t_status = ONNXPLAIN_OK;
    t_error.clear();
    return ONNXPLAIN_OK;
  } catch (const IoError& e) {
    return fail(ONNXPLAIN_IO, "IoError", e.what());
  } catch (const InvalidArgument& e) {
    return fail(ONNXPLAIN_INVALID_ARGUMENT, "InvalidArgument", e.what());
  } catch (const UnsupportedModelError& e) {
    return fail(ONNXPLAIN_UNSUPPORTED_MODEL, "UnsupportedModelError", e.what());
  } catch (const ModelFormatError& e) {
    return fail(ONNXPLAIN_MODEL_FORMAT, "ModelFormatError", e.what());
  } catch (const ShapeError& e) {
    return fail(ONNXPLAIN_SHAPE, "ShapeError", e.what());
  } catch (const std::bad_alloc&) {
    return fail(ONNXPLAIN_OUT_OF_MEMORY, "OutOfMemory", "not enough memory");
  } catch (const std::exception& e) {
    return fail(ONNXPLAIN_INTERNAL, "InternalError", e.what());
  } catch (...) {
    return fail(ONNXPLAIN_INTERNAL, "InternalError", "unknown exception");
  }
}


void need(const void* p, const char* what) {
  if (!p) throw InvalidArgument(std::string(what) + " is NULL");
}

int default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

/// A float32 tensor copied from a caller's buffer, its shape checked.
Tensor input_tensor(const float* data, const int64_t* shape, size_t rank) {
  if (rank > 0) need(shape, "shape");
  Shape s;
  int64_t n = 1;
  for (size_t i = 0; i < rank; ++i) {
    if (shape[i] < 0) throw InvalidArgument("shape[" + std::to_string(i) + "] is negative");
    if (shape[i] > 0 && n > std::numeric_limits<int64_t>::max() / shape[i])
      throw InvalidArgument("the shape's element count overflows");
    n *= shape[i];
    s.push_back(shape[i]);
  }
  if (n > 0) need(data, "input");
  Tensor t(DType::Float32, s);
  if (n > 0) std::memcpy(t.f32(), data, static_cast<size_t>(n) * sizeof(float));
  return t;
}

onnxplain_tensor* output_tensor(const Tensor& t) {
  auto* o = new onnxplain_tensor;
  o->t = t;
  o->shape.assign(t.shape().begin(), t.shape().end());
  return o;
}

runtime::LoadOptions load_options(const onnxplain_load_options* opts, int* threads) {
  onnxplain_load_options d;
  onnxplain_load_options_init(&d);
  const onnxplain_load_options& o = opts ? *opts : d;
  if (o.threads < 0) throw InvalidArgument("threads must be >= 0 (0 = all cores), got " + std::to_string(o.threads));
  runtime::LoadOptions lo;
  lo.strip_softmax = o.strip_softmax != 0;
  lo.fold_batch_norm = o.fold_batch_norm != 0;
  lo.winograd = o.winograd != 0;
  *threads = o.threads > 0 ? o.threads : default_threads();
  return lo;
}

std::string read_file(const char* path) { return runtime::read_file(path); }

int threads_or(int threads, int dflt) {
  if (threads < 0) throw InvalidArgument("threads must be >= 0 (0 = the default), got " + std::to_string(threads));
  return threads > 0 ? threads : dflt;
}

}  // namespace

extern "C" {

const char* onnxplain_version(void) { return "0.1.0"; }
const char* onnxplain_last_error(void) { return t_error.c_str(); }
onnxplain_status onnxplain_last_status(void) { return t_status; }

const char* onnxplain_status_name(onnxplain_status status) {
  switch (status) {
    case ONNXPLAIN_OK: return "ONNXPLAIN_OK";
    case ONNXPLAIN_INVALID_ARGUMENT: return "ONNXPLAIN_INVALID_ARGUMENT";
    case ONNXPLAIN_MODEL_FORMAT: return "ONNXPLAIN_MODEL_FORMAT";
    case ONNXPLAIN_UNSUPPORTED_MODEL: return "ONNXPLAIN_UNSUPPORTED_MODEL";
    case ONNXPLAIN_SHAPE: return "ONNXPLAIN_SHAPE";
    case ONNXPLAIN_IO: return "ONNXPLAIN_IO";
    case ONNXPLAIN_OUT_OF_MEMORY: return "ONNXPLAIN_OUT_OF_MEMORY";
    case ONNXPLAIN_INTERNAL: return "ONNXPLAIN_INTERNAL";
  }
  return "ONNXPLAIN_UNKNOWN_STATUS";
}

size_t onnxplain_tensor_rank(const onnxplain_tensor* t) { return t ? t->shape.size() : 0; }
const int64_t* onnxplain_tensor_shape(const onnxplain_tensor* t) { return t ? t->shape.data() : nullptr; }
size_t onnxplain_tensor_size(const onnxplain_tensor* t) { return t ? static_cast<size_t>(t->t.numel()) : 0; }
const float* onnxplain_tensor_data(const onnxplain_tensor* t) { return t ? t->t.f32() : nullptr; }
void onnxplain_tensor_free(onnxplain_tensor* t) { delete t; }

void onnxplain_load_options_init(onnxplain_load_options* opts) {
  if (!opts) return;
  opts->strip_softmax = 1;
  opts->fold_batch_norm = 1;
  opts->winograd = 1;
  opts->threads = 0;
}

onnxplain_status onnxplain_model_load_bytes(const void* data, size_t size, const onnxplain_load_options* opts,
                                            onnxplain_model** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    if (size > 0) need(data, "data");
    int threads = 1;
    const runtime::LoadOptions lo = load_options(opts, &threads);
    auto h = std::make_unique<onnxplain_model>();
    h->bytes.assign(static_cast<const char*>(data), size);
    h->m = runtime::Model::from_bytes(reinterpret_cast<const uint8_t*>(h->bytes.data()), h->bytes.size(), "", lo);
    h->threads = threads;
    *out = h.release();
  });
}

onnxplain_status onnxplain_model_load(const char* path, const onnxplain_load_options* opts, onnxplain_model** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    int threads = 1;
    const runtime::LoadOptions lo = load_options(opts, &threads);
    auto h = std::make_unique<onnxplain_model>();
    h->bytes = read_file(path);
    // External data is read from the model's folder.
    std::string dir = ".";
    const std::string p(path);
    if (auto slash = p.find_last_of('/'); slash != std::string::npos) dir = slash == 0 ? "/" : p.substr(0, slash);
    h->m = runtime::Model::from_bytes(reinterpret_cast<const uint8_t*>(h->bytes.data()), h->bytes.size(), dir, lo);
    h->threads = threads;
    *out = h.release();
  });
}

void onnxplain_model_free(onnxplain_model* model) { delete model; }
size_t onnxplain_model_num_inputs(const onnxplain_model* model) { return model ? model->m->inputs().size() : 0; }
size_t onnxplain_model_num_outputs(const onnxplain_model* model) { return model ? model->m->outputs().size() : 0; }

onnxplain_status onnxplain_model_input_shape(const onnxplain_model* model, size_t index, int64_t* dims,
                                             size_t capacity, size_t* rank) {
  return guard([&] {
    need(model, "model");
    need(rank, "rank");
    if (capacity > 0) need(dims, "dims");
    const auto specs = model->m->inputs();
    if (index >= specs.size())
      throw InvalidArgument("input " + std::to_string(index) + " is out of range: the model has " +
                            std::to_string(specs.size()) + " input(s)");
    const Shape& s = specs[index].shape;
    *rank = s.size();
    for (size_t i = 0; i < std::min(capacity, s.size()); ++i) dims[i] = s[i];
  });
}

onnxplain_status onnxplain_model_run(const onnxplain_model* model, const float* input, const int64_t* shape,
                                     size_t rank, int threads, onnxplain_tensor** output) {
  return guard([&] {
    need(output, "output");
    *output = nullptr;
    need(model, "model");
    if (model->m->inputs().size() != 1)
      throw InvalidArgument("onnxplain_model_run takes single-input models; this one has " +
                            std::to_string(model->m->inputs().size()) + " inputs");
    const Tensor x = input_tensor(input, shape, rank);
    const std::vector<Tensor> y = model->m->run({x}, threads_or(threads, model->threads));
    *output = output_tensor(y.at(0));
  });
}

onnxplain_status onnxplain_params_create(onnxplain_params** out) {
  return guard([&] {
    need(out, "out");
    *out = new onnxplain_params;
  });
}

onnxplain_status onnxplain_params_set_number(onnxplain_params* params, const char* key, double value) {
  return guard([&] {
    need(params, "params");
    need(key, "key");
    params->p.strings.erase(key);
    params->p.arrays.erase(key);
    params->p.numbers[key] = value;
  });
}

onnxplain_status onnxplain_params_set_string(onnxplain_params* params, const char* key, const char* value) {
  return guard([&] {
    need(params, "params");
    need(key, "key");
    need(value, "value");
    params->p.numbers.erase(key);
    params->p.arrays.erase(key);
    params->p.strings[key] = value;
  });
}

onnxplain_status onnxplain_params_set_array(onnxplain_params* params, const char* key, const float* data,
                                            const int64_t* shape, size_t rank) {
  return guard([&] {
    need(params, "params");
    need(key, "key");
    Tensor t = input_tensor(data, shape, rank);
    params->p.numbers.erase(key);
    params->p.strings.erase(key);
    params->p.arrays[key] = std::move(t);
  });
}

void onnxplain_params_free(onnxplain_params* params) { delete params; }

onnxplain_status onnxplain_explainer_create(const onnxplain_model* model, const char* method,
                                            const onnxplain_params* params, onnxplain_explainer** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(model, "model");
    need(method, "method");
    auto h = std::make_unique<onnxplain_explainer>();
    h->ex = std::make_shared<methods::Explainer>(model->m, method, params ? params->p : methods::Params{});
    h->model = model->m;
    h->bytes = model->bytes;
    h->threads = model->threads;
    *out = h.release();
  });
}

void onnxplain_explainer_free(onnxplain_explainer* explainer) { delete explainer; }

onnxplain_status onnxplain_explain(const onnxplain_explainer* explainer, const float* input, const int64_t* shape,
                                   size_t rank, const int64_t* targets, size_t n_targets, int threads,
                                   onnxplain_tensor** relevance, float* deltas) {
  return guard([&] {
    need(relevance, "relevance");
    *relevance = nullptr;
    need(explainer, "explainer");
    if (explainer->model->inputs().size() != 1)
      throw InvalidArgument("onnxplain_explain takes single-input models; this one has " +
                            std::to_string(explainer->model->inputs().size()) + " inputs");
    const Tensor x = input_tensor(input, shape, rank);
    const int64_t n = rank > 0 ? x.dim(0) : 1;
    std::vector<int64_t> tg;
    if (targets) {
      if (n_targets == 1) tg.assign(static_cast<size_t>(n), targets[0]);
      else if (static_cast<int64_t>(n_targets) == n) tg.assign(targets, targets + n_targets);
      else
        throw InvalidArgument("n_targets is " + std::to_string(n_targets) + " for a batch of " + std::to_string(n) +
                              " (give 1, or one per sample, or targets = NULL for the argmax)");
    } else if (n_targets != 0) {
      throw InvalidArgument("targets is NULL but n_targets is " + std::to_string(n_targets));
    }
    const std::string& fam = explainer->ex->family();
    const std::string& method = explainer->ex->method();
    const bool sums = fam == "lrp" || fam == "deep_taylor" || fam == "deeplift" || method == "integrated_gradients";
    if (deltas && !sums)
      throw InvalidArgument("deltas: " + method + " promises no sum (only LRP, Deep Taylor, DeepLIFT and "
                            "integrated gradients do); pass deltas = NULL");
    methods::Explanation e = explainer->ex->explain({x}, tg, threads_or(threads, explainer->threads));
    if (deltas) {
      const Tensor& r = e.relevance.at(0);
      const int64_t m = n > 0 ? r.numel() / n : 0;
      for (int64_t b = 0; b < n; ++b) {
        double s = 0;
        for (int64_t k = 0; k < m; ++k) s += r.f32()[b * m + k];
        const auto ub = static_cast<size_t>(b);
        double promised = e.target_values.at(ub);
        if (fam != "lrp" && fam != "deep_taylor") promised -= e.reference_values.at(ub);
        deltas[b] = static_cast<float>(s - promised);
      }
    }
    *relevance = output_tensor(e.relevance.at(0));
  });
}

onnxplain_status onnxplain_explainer_fit(onnxplain_explainer* explainer, const float* data, const int64_t* shape,
                                         size_t rank, int threads) {
  return guard([&] {
    need(explainer, "explainer");
    if (!explainer->ex->learns()) return;
    const Tensor x = input_tensor(data, shape, rank);
    std::lock_guard<std::mutex> lock(explainer->fit_mu);
    explainer->ex->partial_fit({x}, threads_or(threads, explainer->threads));
  });
}

onnxplain_status onnxplain_explainer_save(const onnxplain_explainer* explainer, const char* path) {
  return guard([&] {
    need(explainer, "explainer");
    need(path, "path");
    const methods::Explainer& ex = *explainer->ex;
    patterns::SavedExplainer s;
    s.method = ex.method();
    s.numbers = ex.params().numbers;
    s.strings = ex.params().strings;
    s.options = ex.model().options();
    s.model_bytes = explainer->bytes;
    s.fingerprint = ex.fingerprint();
    const patterns::Statistics* st = ex.statistics();
    s.has_statistics = st != nullptr;
    if (st) s.statistics = *st;
    if (ex.family() == "pattern" && (!ex.learns() || st)) s.patterns = ex.patterns(explainer->threads);
    const std::string bytes = patterns::write_oxp(s);
    const std::string tmp = std::string(path) + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary);
      if (!f) throw IoError("cannot write '" + tmp + "'");
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!f) throw IoError("cannot write '" + tmp + "'");
    }
    if (std::rename(tmp.c_str(), path) != 0) throw IoError("cannot rename '" + tmp + "' to '" + path + "'");
  });
}

onnxplain_status onnxplain_explainer_load(const char* path, int threads, onnxplain_explainer** out) {
  return guard([&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    if (threads < 0) throw InvalidArgument("threads must be >= 0 (0 = all cores)");
    const std::string data = read_file(path);
    patterns::SavedExplainer s = patterns::read_oxp(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    auto h = std::make_unique<onnxplain_explainer>();
    h->bytes = s.model_bytes;
    h->model = runtime::Model::from_bytes(reinterpret_cast<const uint8_t*>(h->bytes.data()), h->bytes.size(), "",
                                          s.options);
    if (patterns::model_fingerprint(*h->model) != s.fingerprint)
      throw ModelFormatError("the explainer in '" + std::string(path) + "' does not match the model it holds");
    methods::Params p;
    p.numbers = s.numbers;
    p.strings = s.strings;
    h->ex = std::make_shared<methods::Explainer>(h->model, s.method, p);
    if (h->ex->family() == "pattern") {
      if (s.has_statistics) h->ex->set_statistics(s.statistics);
      if (!s.patterns.empty()) h->ex->set_patterns(s.patterns);
    }
    h->threads = threads > 0 ? threads : default_threads();
    *out = h.release();
  });
}

size_t onnxplain_method_count(void) { return methods::method_infos().size(); }

const char* onnxplain_method_name(size_t index) {
  const auto& infos = methods::method_infos();
  return index < infos.size() ? infos[index].name.c_str() : nullptr;
}

}  // extern "C"
