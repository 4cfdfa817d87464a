// A minimal HTTP explanation service over onnxplain's C++ wrappers: loads one model at start and
// answers
//   POST /explain?method=NAME[&target=K][&shape=N,C,H,W][&p.KEY=VALUE ...]
// with the relevance. The input is the body: raw little-endian float32 (Content-Type
// application/octet-stream, `shape` in the query) or JSON {"input": [...flat...], "shape": [...]}.
// The answer is JSON {"method", "shape", "relevance"} (or raw float32 with Accept:
// application/octet-stream). Bad requests get a 4xx and JSON {"error", "status"}.
//   GET /health -> {"ok": true, "version": ...}
//
//   onnxplain_service model.onnx [--port 8080] [--host 127.0.0.1] [--threads-per-request 1]
#include <httplib.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <onnxplain/onnxplain.hpp>
#include <sstream>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0) throw BadRequest("shape must be comma-separated sizes, got '" + s + "'");
    dims.push_back(v);
  }
  if (dims.empty()) throw BadRequest("shape is empty");
  return dims;
}

size_t count(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) {
    if (d > 0 && n > (size_t{1} << 34) / static_cast<size_t>(d)) throw BadRequest("the input is too large");
    n *= static_cast<size_t>(d);
  }
  return n;
}

void send_error(httplib::Response& res, int code, const std::string& status, const std::string& msg) {
  res.status = code;
  res.set_content(json{{"error", msg}, {"status", status}}.dump(), "application/json");
}

/// Explainers by method and parameters, made once and shared by the request threads (explain is
/// safe to call concurrently on one explainer).
class Explainers {
 public:
  explicit Explainers(onnxplain::Model model) : model_(std::move(model)) {}
  std::shared_ptr<onnxplain::Explainer> get(const std::string& method, const std::map<std::string, std::string>& p) {
    std::string key = method;
    for (const auto& [k, v] : p) key += "&" + k + "=" + v;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    onnxplain::Params params;
    for (const auto& [k, v] : p) {
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (!v.empty() && *end == '\0') params.set(k, d);
      else params.set(k, v);
    }
    auto ex = std::make_shared<onnxplain::Explainer>(model_, method, params);
    if (cache_.size() < 64) cache_[key] = ex;  // bounded: a stream of odd parameters cannot grow it
    return ex;
  }

 private:
  onnxplain::Model model_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<onnxplain::Explainer>> cache_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " model.onnx [--port 8080] [--host 127.0.0.1] [--threads-per-request 1]\n";
    return 2;
  }
  std::string host = "127.0.0.1";
  int port = 8080, threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--port") port = std::atoi(argv[i + 1]);
    else if (k == "--host") host = argv[i + 1];
    else if (k == "--threads-per-request") threads = std::atoi(argv[i + 1]);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  std::unique_ptr<Explainers> explainers;
  try {
    onnxplain_load_options opts;
    onnxplain_load_options_init(&opts);
    opts.threads = threads;
    explainers = std::make_unique<Explainers>(onnxplain::Model::load(argv[1], &opts));
  } catch (const onnxplain::ApiError& e) {
    std::cerr << "cannot load " << argv[1] << ": " << e.what() << "\n";
    return 1;
  }

  httplib::Server server;
  server.set_payload_max_length(size_t{256} << 20);
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"ok", true}, {"version", onnxplain_version()}}.dump(), "application/json");
  });
  server.Post("/explain", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      if (!req.has_param("method")) throw BadRequest("the query needs method=NAME (e.g. method=gradient)");
      const std::string method = req.get_param_value("method");
      std::map<std::string, std::string> params;
      std::vector<int64_t> targets;
      for (const auto& [k, v] : req.params) {
        if (k.rfind("p.", 0) == 0) params[k.substr(2)] = v;
        else if (k == "target") {
          char* end = nullptr;
          const long long t = std::strtoll(v.c_str(), &end, 10);
          if (v.empty() || *end != '\0' || t < 0) throw BadRequest("target must be an output index, got '" + v + "'");
          targets = {t};
        } else if (k != "method" && k != "shape") {
          throw BadRequest("unknown query parameter '" + k + "' (method parameters go as p.NAME=VALUE)");
        }
      }
      std::vector<int64_t> shape;
      std::vector<float> x;
      const std::string type = req.get_header_value("Content-Type");
      if (type.rfind("application/json", 0) == 0) {
        json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
        if (body.is_discarded() || !body.is_object()) throw BadRequest("the body is not a JSON object");
        if (!body.contains("input") || !body["input"].is_array()) throw BadRequest("the JSON needs \"input\": [...]");
        if (!body.contains("shape") || !body["shape"].is_array()) throw BadRequest("the JSON needs \"shape\": [...]");
        for (const auto& d : body["shape"]) {
          if (!d.is_number_integer() || d.get<int64_t>() < 0) throw BadRequest("shape entries must be sizes");
          shape.push_back(d.get<int64_t>());
        }
        for (const auto& v : body["input"]) {
          if (!v.is_number()) throw BadRequest("input must be a flat array of numbers");
          x.push_back(v.get<float>());
        }
      } else {
        if (!req.has_param("shape")) throw BadRequest("a raw float32 body needs shape=N,C,H,W in the query");
        shape = parse_shape(req.get_param_value("shape"));
        if (req.body.size() % sizeof(float) != 0) throw BadRequest("the body is not a whole number of float32");
        x.resize(req.body.size() / sizeof(float));
        if (!x.empty()) std::memcpy(x.data(), req.body.data(), req.body.size());
      }
      if (count(shape) != x.size())
        throw BadRequest("the input has " + std::to_string(x.size()) + " values, the shape asks for " +
                         std::to_string(count(shape)));
      const onnxplain::Result r = explainers->get(method, params)->explain(x.data(), shape, targets, false, threads);
      if (req.get_header_value("Accept") == "application/octet-stream") {
        res.set_content(std::string(reinterpret_cast<const char*>(r.data.data()), r.data.size() * sizeof(float)),
                        "application/octet-stream");
      } else {
        res.set_content(json{{"method", method}, {"shape", r.shape}, {"relevance", r.data}}.dump(),
                        "application/json");
      }
    } catch (const BadRequest& e) {
      send_error(res, 400, "BAD_REQUEST", e.what());
    } catch (const onnxplain::ApiError& e) {
      const bool client = e.status() == ONNXPLAIN_INVALID_ARGUMENT || e.status() == ONNXPLAIN_SHAPE;
      send_error(res, client ? 400 : 500, onnxplain_status_name(e.status()), e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "INTERNAL", e.what());
    }
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty())
      send_error(res, res.status, "HTTP_" + std::to_string(res.status),
                 res.status == 404 ? "no such endpoint: use POST /explain or GET /health" : "request refused");
  });
  std::cout << "onnxplain " << onnxplain_version() << " serving " << argv[1] << " on http://" << host << ":" << port
            << std::endl;
  if (!server.listen(host, port)) {
    std::cerr << "cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  return 0;
}
