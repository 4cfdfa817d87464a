// ONNX (protobuf wire format) -> IR. The only code in onnxplain that knows protobuf.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "ir/graph.hpp"

namespace onnxplain::importer {

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
/// Throws ModelFormatError on anything malformed; never reads out of bounds.
Graph import_model(const uint8_t* data, std::size_t size, const std::string& base_dir,
                   const ImportLimits& limits = ImportLimits());

}  // namespace onnxplain::importer
