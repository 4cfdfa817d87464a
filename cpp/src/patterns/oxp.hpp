// The saved-explainer file (.oxp): everything needed to explain again without Python, in one
// little-endian binary (docs/oxp-format in ARCHITECTURE.md):
//   "OXPLAIN1" | u32 version (1) | str method | u32 count + (str key, f64 value) numbers |
//   u32 count + (str key, str value) strings | u8 strip_softmax, fold_batch_norm, winograd |
//   u64 model fingerprint | u64 length + the ONNX model's bytes | u8 has statistics |
//   u64 length + statistics (Statistics::serialize) | u32 pattern count + per pattern:
//   str node, u8 has a+, tensor a+ (u32 rank, i64 dims, float32 data), u8 has a-, tensor a-
// str = u32 length + bytes. The patterns are the estimator's A (PatternAttribution multiplies
// them by the weights when it loads), so a reloaded explainer explains bit-identically.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "patterns/patterns.hpp"
#include "runtime/model.hpp"

namespace onnxplain::patterns {

struct SavedExplainer {
  std::string method;
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;
  runtime::LoadOptions options;
  uint64_t fingerprint = 0;
  std::string model_bytes;
  bool has_statistics = false;
  Statistics statistics;
  std::vector<LayerPattern> patterns;
};

std::string write_oxp(const SavedExplainer& s);
/// ModelFormatError for anything that is not a complete, well-formed file of this format.
SavedExplainer read_oxp(const uint8_t* data, std::size_t size);

}  // namespace onnxplain::patterns
