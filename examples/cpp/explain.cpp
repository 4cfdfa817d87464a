// Explains a batch with onnxplain's C++ wrappers (onnxplain.hpp) and writes the relevance.
//
//   explain_cpp model.onnx input.npy method out.npy [key=value ...] [target=K]
//
// As the C example, with exceptions instead of status codes.
#include <onnxplain/onnxplain.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "../common/npy.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " model.onnx input.npy method out.npy [key=value ...]\n";
    return 2;
  }
  float* raw = nullptr;
  int64_t dims[8];
  size_t rank = 0;
  if (npy_read(argv[2], &raw, dims, &rank) != 0) {
    std::cerr << "cannot read " << argv[2] << " as a float32 C-order .npy file\n";
    return 1;
  }
  std::unique_ptr<float, decltype(&std::free)> x(raw, std::free);
  const std::vector<int64_t> shape(dims, dims + rank);
  try {
    onnxplain::Model model = onnxplain::Model::load(argv[1]);
    onnxplain::Params params;
    std::vector<int64_t> targets;
    for (int i = 5; i < argc; ++i) {
      const std::string kv = argv[i];
      const auto eq = kv.find('=');
      if (eq == std::string::npos) throw std::runtime_error("expected key=value, got " + kv);
      const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      const bool number = !value.empty() && *end == '\0';
      if (key == "target") targets = {static_cast<int64_t>(v)};
      else if (number) params.set(key, v);
      else params.set(key, value);
    }
    onnxplain::Explainer ex(model, argv[3], params);
    const onnxplain::Result r = ex.explain(x.get(), shape, targets);
    if (npy_write(argv[4], r.data.data(), r.shape.data(), r.shape.size()) != 0)
      throw std::runtime_error(std::string("cannot write ") + argv[4]);
    std::cout << argv[3] << ": relevance of " << r.data.size() << " values written to " << argv[4] << "\n";
  } catch (const onnxplain::ApiError& e) {
    std::cerr << e.what() << " (" << onnxplain_status_name(e.status()) << ")\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
