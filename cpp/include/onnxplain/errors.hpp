// Typed errors of onnxplain. Every error thrown on user input is one of these, so that the Python
// module and the C API can map them without guessing; nothing aborts the process.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace onnxplain {

/// Base of every onnxplain error.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// The bytes are not a valid ONNX model (truncated, corrupt, inconsistent, unsafe external data).
class ModelFormatError : public Error {
 public:
  using Error::Error;
};

/// One unsupported op: its type, domain and the names of the nodes that use it.
struct UnsupportedOp {
  std::string op_type;
  std::string domain;
  std::vector<std::string> node_names;
};

/// The model uses ops onnxplain cannot run; lists all of them at once.
class UnsupportedModelError : public Error {
 public:
  UnsupportedModelError(const std::string& what, std::vector<UnsupportedOp> ops)
      : Error(what), ops_(std::move(ops)) {}
  const std::vector<UnsupportedOp>& ops() const { return ops_; }

 private:
  std::vector<UnsupportedOp> ops_;
};

/// Shapes that do not fit the given inputs at run time; maps to ValueError. Found while loading, a
/// shape that does not fit is an inconsistent model: Model::from_bytes rethrows it as ModelFormatError.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A file that cannot be read or written: missing, a directory, no permission. Carries the path and
/// the errno, so that Python raises FileNotFoundError / IsADirectoryError / PermissionError.
class IoError : public Error {
 public:
  IoError(const std::string& what, std::string path, int err) : Error(what), path_(std::move(path)), errno_(err) {}
  explicit IoError(const std::string& what) : Error(what) {}
  const std::string& path() const { return path_; }
  int error_number() const { return errno_; }

 private:
  std::string path_;
  int errno_ = 0;
};

/// A bad argument from the caller (unknown input name, wrong dtype, bad option); maps to ValueError.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

}  // namespace onnxplain
