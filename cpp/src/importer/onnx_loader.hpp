// ONNX (protobuf wire format) -> IR. The only code in onnxplain that knows protobuf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ir/graph.hpp"

namespace onnxplain::importer {

/// The newest default-domain (ai.onnx) opset whose op definitions onnxplain's ops were checked
/// against: ONNX 1.23. Every supported op's schema up to this opset was compared with its file;
/// the versions after 22 only add element types (float4/6/8, int2/4) that onnxplain does not hold.
constexpr int64_t kNewestOpset = 28;
/// The newest ModelProto.ir_version the wire reader reads (ONNX 1.23 writes 14; onnxruntime 1.32
/// refuses 15 and above too). Fields added by newer IR versions would be skipped unseen.
constexpr int64_t kNewestIrVersion = 14;

/// Limits that keep hostile files from exhausting memory or the stack.
struct ImportLimits {
  std::size_t max_nesting = 64;                        // message nesting depth
  std::size_t max_tensor_bytes = std::size_t{1} << 33; // one tensor (8 GiB)
};

/// Parses a serialized ModelProto into a Graph: values, nodes (op_type, domain, attributes; ops
/// not instantiated), initializers as constants (float types -> Float32, integer/bool types ->
/// Int64), graph inputs (initializers excluded) with their declared dtype/shape (dim_param and
/// missing dims -> -1), outputs, opset imports, producer name. External data is resolved relative
/// to `base_dir`; a location that is absolute, contains "..", or resolves (through symlinks)
/// outside base_dir is refused. `base_dir` empty = external data not allowed (bytes input).
/// Names that are not valid UTF-8 are escaped (\xNN) so messages can always show them.
/// Nodes without a name get "<op_type>_<index>". The graph is toposorted before returning.
/// Throws ModelFormatError on anything malformed, on an ir_version above kNewestIrVersion, on an
/// ai.onnx opset above kNewestOpset, and on default-domain nodes without an ai.onnx opset import;
/// never reads out of bounds.
Graph import_model(const uint8_t* data, std::size_t size, const std::string& base_dir,
                   const ImportLimits& limits = ImportLimits());

}  // namespace onnxplain::importer
