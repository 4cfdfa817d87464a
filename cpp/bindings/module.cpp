// pybind11 module onnxplain._core: converts numpy <-> Tensor and maps C++ errors to Python ones.
// Python validates and presents; all computation happens in the C++ library.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "importer/onnx_loader.hpp"
#include "ops/op.hpp"
#include "runtime/model.hpp"
#include "runtime/reverse.hpp"
#include "methods/methods.hpp"
#include "patterns/oxp.hpp"
#include "patterns/statistics.hpp"
#include "rules/rule.hpp"

namespace py = pybind11;
using namespace onnxplain;

namespace {

py::array to_numpy(const Tensor& t) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  // The array keeps the tensor's storage alive through a capsule holding a copy of the Tensor.
  auto* keep = new Tensor(t);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  if (t.dtype() == DType::Int64)
    return py::array_t<int64_t>(shape, static_cast<const int64_t*>(keep->raw()), owner);
  return py::array_t<float>(shape, static_cast<const float*>(keep->raw()), owner);
}

// Zero-copy when the array is C-contiguous float32; Python has already converted other dtypes.
Tensor from_numpy(const py::array& a) {
  Shape shape(a.shape(), a.shape() + a.ndim());
  if (py::isinstance<py::array_t<float>>(a) && (a.flags() & py::array::c_style)) {
    auto owner = std::shared_ptr<void>(new py::object(a), [](void* p) {
      py::gil_scoped_acquire gil;
      delete static_cast<py::object*>(p);
    });
    return Tensor(DType::Float32, shape, const_cast<void*>(a.data()), owner);
  }
  if (py::isinstance<py::array_t<int64_t>>(a)) {
    auto c = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
    Tensor t(DType::Int64, shape);
    if (t.numel()) std::memcpy(t.raw(), c.data(), t.nbytes());
    return t;
  }
  auto c = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  Tensor t(DType::Float32, shape);
  if (t.numel()) std::memcpy(t.raw(), c.data(), t.nbytes());
  return t;
}

py::list specs(const std::vector<runtime::TensorSpec>& s) {
  py::list l;
  for (const auto& x : s) {
    py::list shape;
    for (int64_t d : x.shape) {
      if (d < 0)
        shape.append(py::none());
      else
        shape.append(d);
    }
    l.append(py::make_tuple(x.name, dtype_name(x.dtype), py::tuple(shape)));
  }
  return l;
}

py::array_t<double> vec(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  py::array_t<double> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(double));
  return a;
}

py::dict layer_dict(const patterns::LayerStats& l) {
  const auto M = static_cast<py::ssize_t>(l.neurons), D = static_cast<py::ssize_t>(l.dim),
             G = static_cast<py::ssize_t>(l.groups);
  py::dict d;
  d["rows"] = l.rows;
  d["count_pos"] = vec(l.count_pos, {M});
  d["sum_y"] = vec(l.sum_y, {M});
  d["sum_y_pos"] = vec(l.sum_y_pos, {M});
  d["sum_yy"] = vec(l.sum_yy, {M});
  d["sum_yy_pos"] = vec(l.sum_yy_pos, {M});
  d["sum_x"] = vec(l.sum_x, {G, D});
  d["sum_x_pos"] = vec(l.sum_x_pos, {M, D});
  d["sum_xy"] = vec(l.sum_xy, {M, D});
  d["sum_xy_pos"] = vec(l.sum_xy_pos, {M, D});
  d["weight_axis"] = l.weight_axis;
  d["weight_shape"] = py::tuple(py::cast(l.weight_shape));
  d["groups"] = l.groups;
  if (!l.sum_xx.empty()) d["sum_xx"] = vec(l.sum_xx, {G, D, D});
  return d;
}

py::object maybe(const Tensor& t) { return t.numel() ? py::object(to_numpy(t)) : py::none(); }

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "onnxplain C++ core";

  auto base = py::register_exception<Error>(m, "OnnxplainError", PyExc_RuntimeError);
  // Also a ValueError: shapes that contradict the model's own weights were ShapeError (a ValueError)
  // before they became ModelFormatError, and code that catches ValueError keeps working.
  py::register_exception<ModelFormatError>(m, "ModelFormatError", py::make_tuple(base, py::handle(PyExc_ValueError)));
  py::register_exception<ShapeError>(m, "ShapeError", PyExc_ValueError);
  py::register_exception<InvalidArgument>(m, "InvalidArgument", PyExc_ValueError);
  // Kept as a raw, intentionally leaked reference: the type lives as long as the interpreter.
  static PyObject* unsupported = nullptr;
  {
    py::exception<UnsupportedModelError> t(m, "UnsupportedModelError", base.ptr());
    unsupported = t.ptr();
    Py_INCREF(unsupported);
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UnsupportedModelError& e) {
      py::list ops;
      for (const auto& u : e.ops()) ops.append(py::make_tuple(u.op_type, u.domain, u.node_names));
      py::object exc = py::reinterpret_borrow<py::object>(unsupported)(e.what());
      exc.attr("ops") = ops;
      PyErr_SetObject(unsupported, exc.ptr());
    }
  });
  // OSError(errno, message, path) picks its subclass from errno: FileNotFoundError,
  // IsADirectoryError, PermissionError. Registered last, so it is tried before the Error base.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const IoError& e) {
      const int err = e.error_number();
      py::object exc = err ? py::reinterpret_borrow<py::object>(PyExc_OSError)(err, std::strerror(err), e.path())
                           : py::reinterpret_borrow<py::object>(PyExc_OSError)(e.what());
      PyErr_SetObject(PyExc_OSError, exc.ptr());
    }
  });

  m.attr("NEWEST_OPSET") = importer::kNewestOpset;
  m.attr("NEWEST_IR_VERSION") = importer::kNewestIrVersion;

  m.def("supported_ops", [] {
    std::vector<std::pair<std::string, std::string>> v;
    for (const auto& d : ops::registry()) {
      // The kind of an op can depend on its node (MatMul with a constant is Linear); report the
      // op type only.
      v.emplace_back(d.op_type, "");
    }
    std::vector<std::string> names;
    for (auto& p : v) names.push_back(p.first);
    return names;
  });

  m.def("op_versions", [] {
    py::dict d;
    for (const auto& o : ops::all_op_versions())
      d[py::str(o.op_type)] = py::make_tuple(o.implemented, o.missing, std::string(o.advice));
    return d;
  });

  py::class_<runtime::Model, std::shared_ptr<runtime::Model>>(m, "Model")
      .def_static(
          "from_file",
          [](const std::string& path, bool strip_softmax, bool fold_batch_norm, bool winograd) {
            runtime::LoadOptions o;
            o.strip_softmax = strip_softmax;
            o.fold_batch_norm = fold_batch_norm;
            o.winograd = winograd;
            py::gil_scoped_release nogil;
            return runtime::Model::from_file(path, o);
          },
          py::arg("path"), py::arg("strip_softmax") = true, py::arg("fold_batch_norm") = true,
          py::arg("winograd") = true)
      .def_static(
          "from_bytes",
          [](py::bytes data, bool strip_softmax, bool fold_batch_norm, bool winograd) {
            runtime::LoadOptions o;
            o.strip_softmax = strip_softmax;
            o.fold_batch_norm = fold_batch_norm;
            o.winograd = winograd;
            std::string s = data;
            py::gil_scoped_release nogil;
            return runtime::Model::from_bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "", o);
          },
          py::arg("data"), py::arg("strip_softmax") = true, py::arg("fold_batch_norm") = true,
          py::arg("winograd") = true)
      .def_property_readonly("inputs", [](const runtime::Model& mdl) { return specs(mdl.inputs()); })
      .def_property_readonly("outputs", [](const runtime::Model& mdl) { return specs(mdl.outputs()); })
      .def_property_readonly("op_counts", &runtime::Model::op_counts)
      .def_property_readonly("producer", [](const runtime::Model& mdl) { return mdl.graph().producer_name; })
      .def_property_readonly("opset", [](const runtime::Model& mdl) { return mdl.graph().opset(); })
      .def_property_readonly("notes", [](const runtime::Model& mdl) { return mdl.graph().notes; })
      .def_property_readonly("nodes",
                             [](const runtime::Model& mdl) {
                               py::list l;
                               for (const auto& n : mdl.graph().nodes)
                                 l.append(py::make_tuple(n.name, n.op_type,
                                                         n.op ? ops::kind_name(n.op->kind()) : "unsupported"));
                               return l;
                             })
      .def(
          "run",
          [](const runtime::Model& mdl, const std::vector<py::array>& arrays, int threads) {
            std::vector<Tensor> ins;
            for (const auto& a : arrays) ins.push_back(from_numpy(a));
            std::vector<Tensor> outs;
            {
              py::gil_scoped_release nogil;
              outs = mdl.run(ins, threads);
            }
            py::list l;
            for (const auto& t : outs) l.append(to_numpy(t));
            return l;
          },
          py::arg("inputs"), py::arg("threads") = 1)
      .def("linear_params",
           [](const runtime::Model& mdl) {
             py::list l;
             for (const auto& p : mdl.linear_params()) {
               const auto& vals = mdl.graph().values;
               py::object b = p.bias >= 0 ? py::object(to_numpy(vals[static_cast<std::size_t>(p.bias)].constant))
                                          : py::object(py::none());
               l.append(py::make_tuple(p.node, p.weight, p.bias,
                                       to_numpy(vals[static_cast<std::size_t>(p.weight)].constant), b,
                                       p.neuron_axis));
             }
             return l;
           },
           "(node, weight value id, bias value id or -1, weight, bias or None, neuron axis) per linear op with "
           "constant parameters.")
      .def("with_output", &runtime::Model::with_output, py::arg("index"),
           "A copy with only graph output `index` (what the methods explain).")
      .def("with_constants",
           [](const runtime::Model& mdl, const std::map<int, py::array>& replace) {
             std::map<int, Tensor> r;
             for (const auto& [id, a] : replace) r[id] = from_numpy(a);
             return mdl.with_constants(r);
           },
           py::arg("replace"), "A copy with the constants (value id -> array of the same shape) replaced.")
      .def(
          "vjp",
          [](const runtime::Model& mdl, const std::vector<py::array>& arrays, const std::vector<py::object>& cot,
             int threads) {
            std::vector<Tensor> ins;
            for (const auto& a : arrays) ins.push_back(from_numpy(a));
            std::vector<Tensor> start;
            for (const auto& c : cot) start.push_back(c.is_none() ? Tensor() : from_numpy(c.cast<py::array>()));
            std::vector<Tensor> grads;
            {
              py::gil_scoped_release nogil;
              std::vector<Tensor> values;
              mdl.run(ins, threads, &values);
              static const rules::GradientRule gradient;
              grads = runtime::reverse_sweep(
                  mdl, values, start, [](std::size_t) -> const rules::Rule& { return gradient; }, threads);
            }
            py::list l;
            for (const auto& t : grads) l.append(to_numpy(t));
            return l;
          },
          py::arg("inputs"), py::arg("cotangents"), py::arg("threads") = 1,
          "Vector-Jacobian product of the whole model: one cotangent per output (None = zero), one "
          "gradient per input.");

  m.def("model_fingerprint", [](const runtime::Model& mdl) { return patterns::model_fingerprint(mdl); });

  py::class_<patterns::Statistics, std::shared_ptr<patterns::Statistics>>(m, "Statistics")
      .def(py::init<>())
      .def_readonly("fingerprint", &patterns::Statistics::fingerprint)
      .def_property_readonly("nodes",
                             [](const patterns::Statistics& s) {
                               std::vector<std::string> v;
                               for (const auto& l : s.layers) v.push_back(l.node);
                               return v;
                             })
      .def("layer",
           [](const patterns::Statistics& s, const std::string& node) {
             const patterns::LayerStats* l = s.find(node);
             if (!l) throw InvalidArgument("no pattern statistics for node '" + node + "'");
             return layer_dict(*l);
           })
      .def("merge",
           [](const patterns::Statistics& a, const patterns::Statistics& b) {
             patterns::Statistics c = a;
             c.merge(b);
             return c;
           })
      .def("to_bytes", [](const patterns::Statistics& s) { return py::bytes(s.serialize()); })
      .def_static("from_bytes", [](const py::bytes& b) {
        std::string s = b;
        return patterns::Statistics::deserialize(reinterpret_cast<const uint8_t*>(s.data()), s.size());
      });

  py::class_<patterns::SavedExplainer, std::shared_ptr<patterns::SavedExplainer>>(m, "SavedExplainer")
      .def_static("from_bytes",
                  [](const py::bytes& b) {
                    std::string s = b;
                    return patterns::read_oxp(reinterpret_cast<const uint8_t*>(s.data()), s.size());
                  })
      .def_readonly("method", &patterns::SavedExplainer::method)
      .def_readonly("numbers", &patterns::SavedExplainer::numbers)
      .def_readonly("strings", &patterns::SavedExplainer::strings)
      .def_readonly("fingerprint", &patterns::SavedExplainer::fingerprint)
      .def_readonly("has_statistics", &patterns::SavedExplainer::has_statistics)
      .def_readonly("statistics", &patterns::SavedExplainer::statistics)
      .def_property_readonly("options",
                             [](const patterns::SavedExplainer& s) {
                               return py::make_tuple(s.options.strip_softmax, s.options.fold_batch_norm,
                                                     s.options.winograd);
                             })
      .def_property_readonly("model_bytes", [](const patterns::SavedExplainer& s) { return py::bytes(s.model_bytes); });

  m.def("methods", [] {
    py::list l;
    for (const auto& mi : methods::method_infos()) {
      py::list params;
      for (const auto& p : mi.params) params.append(py::make_tuple(p.name, p.default_value, p.doc));
      l.append(py::make_tuple(mi.name, mi.family, mi.description, mi.reference, params));
    }
    return l;
  });

  py::class_<methods::Explainer, std::shared_ptr<methods::Explainer>>(m, "Explainer")
      .def(py::init([](std::shared_ptr<runtime::Model> model, const std::string& method, const py::dict& numbers,
                       const py::dict& strings, const py::dict& arrays, const py::list& rules) {
             methods::Params p;
             for (auto kv : numbers) p.numbers[kv.first.cast<std::string>()] = kv.second.cast<double>();
             for (auto kv : strings) p.strings[kv.first.cast<std::string>()] = kv.second.cast<std::string>();
             for (auto kv : arrays) p.arrays[kv.first.cast<std::string>()] = from_numpy(kv.second.cast<py::array>());
             for (auto item : rules) {
               auto t = item.cast<py::tuple>();
               methods::RuleChoice c;
               c.rule = t[1].cast<std::string>();
               for (auto kv : t[2].cast<py::dict>()) c.numbers[kv.first.cast<std::string>()] = kv.second.cast<double>();
               for (auto kv : t[3].cast<py::dict>())
                 c.arrays[kv.first.cast<std::string>()] = from_numpy(kv.second.cast<py::array>());
               p.rules.emplace_back(t[0].cast<std::string>(), c);
             }
             return std::make_shared<methods::Explainer>(std::move(model), method, p);
           }),
           py::arg("model"), py::arg("method"), py::arg("numbers"), py::arg("strings"), py::arg("arrays"),
           py::arg("rules"))
      .def_property_readonly("method", &methods::Explainer::method)
      .def_property_readonly("node_rules", &methods::Explainer::node_rules)
      .def_property_readonly("family", &methods::Explainer::family)
      .def_property_readonly("learns", &methods::Explainer::learns)
      .def(
          "partial_fit",
          [](methods::Explainer& ex, const std::vector<py::array>& arrays, int threads, int64_t gram_max_dim) {
            std::vector<Tensor> ins;
            for (const auto& a : arrays) ins.push_back(from_numpy(a));
            py::gil_scoped_release nogil;
            ex.partial_fit(ins, threads, gram_max_dim);
          },
          py::arg("inputs"), py::arg("threads") = 1, py::arg("gram_max_dim") = 0)
      .def("statistics",
           [](const methods::Explainer& ex) -> py::object {
             const patterns::Statistics* s = ex.statistics();
             if (!s) return py::none();
             return py::cast(patterns::Statistics(*s));
           })
      .def("set_statistics", &methods::Explainer::set_statistics)
      .def("fingerprint", &methods::Explainer::fingerprint)
      .def(
          "patterns",
          [](const methods::Explainer& ex, int threads) {
            std::vector<patterns::LayerPattern> ps;
            {
              py::gil_scoped_release nogil;
              ps = ex.patterns(threads);
            }
            py::list l;
            for (const auto& p : ps) {
              py::dict report;
              report["neurons"] = p.neurons;
              report["rows"] = p.rows;
              report["never_fired"] = p.never_fired;
              report["never_inactive"] = p.never_inactive;
              report["zero_denominator"] = p.zero_denominator;
              l.append(py::make_tuple(p.node, maybe(p.a_pos), maybe(p.a_neg), report));
            }
            return l;
          },
          py::arg("threads") = 1)
      .def("set_saved_patterns",
           [](methods::Explainer& ex, const patterns::SavedExplainer& s) {
             if (s.has_statistics) ex.set_statistics(s.statistics);
             if (!s.patterns.empty()) ex.set_patterns(s.patterns);
           })
      .def(
          "save_bytes",
          [](const methods::Explainer& ex, const py::bytes& model_bytes, bool with_statistics, int threads) {
            patterns::SavedExplainer s;
            s.method = ex.method();
            s.numbers = ex.params().numbers;
            s.strings = ex.params().strings;
            s.options = ex.model().options();
            s.model_bytes = model_bytes;
            std::string out;
            {
              py::gil_scoped_release nogil;
              s.fingerprint = ex.fingerprint();
              const patterns::Statistics* st = ex.statistics();
              s.has_statistics = with_statistics && st;
              if (s.has_statistics) s.statistics = *st;
              // An explainer not fitted yet is saved (or pickled) without patterns.
              if (ex.family() == "pattern" && (!ex.learns() || st)) s.patterns = ex.patterns(threads);
              out = patterns::write_oxp(s);
            }
            return py::bytes(out);
          },
          py::arg("model_bytes"), py::arg("statistics") = true, py::arg("threads") = 1)
      .def(
          "explain",
          [](const methods::Explainer& ex, const std::vector<py::array>& arrays, const std::vector<int64_t>& targets,
             int threads, const py::object& progress) {
            std::vector<Tensor> ins;
            for (const auto& a : arrays) ins.push_back(from_numpy(a));
            // Between batches of passes: pending signals first (Ctrl-C stops a long driver: the
            // KeyboardInterrupt unwinds through the C++ as error_already_set), then the callback.
            methods::Explainer::Progress report = [&progress](int64_t done, int64_t total) {
              py::gil_scoped_acquire gil;
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
              if (!progress.is_none()) progress(done, total);
            };
            methods::Explanation e;
            {
              py::gil_scoped_release nogil;
              e = ex.explain(ins, targets, threads, report);
            }
            py::list rel;
            for (const auto& t : e.relevance) rel.append(to_numpy(t));
            py::dict d;
            d["relevance"] = rel;
            d["targets"] = e.targets;
            d["target_values"] = e.target_values;
            d["reference_values"] = e.reference_values;
            d["start"] = e.start;
            return d;
          },
          py::arg("inputs"), py::arg("targets"), py::arg("threads") = 1, py::arg("progress") = py::none());
}
