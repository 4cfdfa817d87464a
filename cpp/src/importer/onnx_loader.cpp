// STUB: replaced by the real wire-format reader.
#include "importer/onnx_loader.hpp"
#include "onnxplain/errors.hpp"
namespace onnxplain::importer {
Graph import_model(const uint8_t*, std::size_t, const std::string&, const ImportLimits&) {
  throw ModelFormatError("importer not implemented yet");
}
}  // namespace onnxplain::importer
