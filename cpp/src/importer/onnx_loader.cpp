// ONNX ModelProto (protobuf wire format) -> IR Graph.
// Field numbers follow onnx/onnx.proto3 (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
// Only the fields onnxplain needs are read; every other field is skipped through the
// bounds-checked reader, so unknown or future fields never break loading.
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "importer/onnx_loader.hpp"
#include "importer/wire.hpp"
#include "onnxplain/errors.hpp"

namespace onnxplain::importer {
namespace {

using wire::Reader;
using wire::Span;
using wire::WireType;

// TensorProto.DataType
enum OnnxType : int64_t {
  kFloat = 1, kUint8 = 2, kInt8 = 3, kUint16 = 4, kInt16 = 5, kInt32 = 6, kInt64 = 7, kString = 8,
  kBool = 9, kFloat16 = 10, kDouble = 11, kUint32 = 12, kUint64 = 13, kComplex64 = 14,
  kComplex128 = 15, kBfloat16 = 16,
};

const char* onnx_type_name(int64_t t) {
  static const char* names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
                                "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
                                "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  if (t >= 0 && t <= 16) return names[t];
  return "an 8-bit float / 4-bit integer type";
}

bool is_float_type(int64_t t) { return t == kFloat || t == kFloat16 || t == kDouble || t == kBfloat16; }
bool is_int_type(int64_t t) {
  return t == kUint8 || t == kInt8 || t == kUint16 || t == kInt16 || t == kInt32 || t == kInt64 ||
         t == kBool || t == kUint32 || t == kUint64;
}

/// Bytes per element as stored in raw_data; 0 for types we cannot hold.
std::size_t raw_elem_size(int64_t t) {
  switch (t) {
    case kFloat: case kInt32: case kUint32: return 4;
    case kDouble: case kInt64: case kUint64: return 8;
    case kFloat16: case kBfloat16: case kInt16: case kUint16: return 2;
    case kInt8: case kUint8: case kBool: return 1;
    default: return 0;
  }
}

/// Names come from the file and end up in Python strings and messages: bytes that are not valid
/// UTF-8 become "\xNN" so that neither pybind11 nor a terminal ever chokes on them.
std::string safe_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto escape = [&](unsigned char c) {
    static const char hex[] = "0123456789abcdef";
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  while (i < n) {
    unsigned char c = p[i];
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len > 1) {
      // Reject overlong forms, surrogates and code points above U+10FFFF.
      uint32_t cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
      for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3Fu);
      ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
             (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF);
    }
    if (c == 0) ok = false;  // NUL would cut C strings in the C API
    if (!ok) {
      escape(c);
      ++i;
    } else {
      out.append(s, i, len);
      i += len;
    }
  }
  return out;
}

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  uint32_t bits = exp == 31 ? (sign | 0x7F800000u | (man << 13)) : (sign | ((exp + 112u) << 23) | (man << 13));
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// Reads a repeated scalar field that may be packed (one length-delimited run) or not (one value
/// per tag). `one` reads a single value from a reader positioned at it.
template <class T, class F>
void read_repeated(Reader& r, WireType wt, WireType scalar_wt, std::vector<T>& out, F one) {
  if (wt == WireType::Len) {
    Span s = r.bytes();
    Reader pr(s, r.depth(), r.max_depth());
    // A packed run cannot hold more values than bytes: reserving from the byte count is safe.
    out.reserve(out.size() + (scalar_wt == WireType::Fixed32 ? s.size / 4 : scalar_wt == WireType::Fixed64 ? s.size / 8 : s.size));
    while (!pr.at_end()) out.push_back(one(pr));
  } else if (wt == scalar_wt) {
    out.push_back(one(r));
  } else {
    r.fail(std::string("repeated field has wire type ") + wire::wire_type_name(wt) + ", expected " +
           wire::wire_type_name(scalar_wt));
  }
}

void expect(Reader& r, WireType got, WireType want, const char* what) {
  if (got != want)
    r.fail(std::string(what) + " has wire type " + wire::wire_type_name(got) + ", expected " +
           wire::wire_type_name(want));
}

int64_t as_i64(uint64_t v) { return static_cast<int64_t>(v); }

// ---- TensorProto ----------------------------------------------------------------------------

struct RawTensor {
  std::string name;
  std::vector<int64_t> dims;
  int64_t data_type = 0;
  std::vector<float> float_data;
  std::vector<int64_t> int32_data;  // int32_data holds every small int type, bool, float16 bits
  std::vector<int64_t> int64_data;
  std::vector<double> double_data;
  std::vector<uint64_t> uint64_data;
  std::size_t string_count = 0;
  bool has_raw = false;
  Span raw;
  bool external = false;
  std::map<std::string, std::string> external_data;
  std::size_t offset = 0;  // in the file, for messages
};

RawTensor parse_tensor(Reader r) {
  RawTensor t;
  t.offset = r.offset();
  uint32_t f;
  WireType wt;
  while (r.next(f, wt)) {
    switch (f) {
      case 1: read_repeated(r, wt, WireType::Varint, t.dims, [](Reader& x) { return as_i64(x.varint()); }); break;
      case 2: expect(r, wt, WireType::Varint, "TensorProto.data_type"); t.data_type = as_i64(r.varint()); break;
      case 4: read_repeated(r, wt, WireType::Fixed32, t.float_data, [](Reader& x) { return x.f32(); }); break;
      case 5:
        read_repeated(r, wt, WireType::Varint, t.int32_data,
                      [](Reader& x) { return static_cast<int64_t>(static_cast<int32_t>(x.varint())); });
        break;
      case 6: expect(r, wt, WireType::Len, "TensorProto.string_data"); r.bytes(); ++t.string_count; break;
      case 7: read_repeated(r, wt, WireType::Varint, t.int64_data, [](Reader& x) { return as_i64(x.varint()); }); break;
      case 8: expect(r, wt, WireType::Len, "TensorProto.name"); t.name = safe_utf8(r.string()); break;
      case 9: expect(r, wt, WireType::Len, "TensorProto.raw_data"); t.raw = r.bytes(); t.has_raw = true; break;
      case 10: read_repeated(r, wt, WireType::Fixed64, t.double_data, [](Reader& x) { return x.f64(); }); break;
      case 11: read_repeated(r, wt, WireType::Varint, t.uint64_data, [](Reader& x) { return x.varint(); }); break;
      case 13: {
        expect(r, wt, WireType::Len, "TensorProto.external_data");
        Reader e = r.nested();
        std::string key, value;
        uint32_t ef;
        WireType ewt;
        while (e.next(ef, ewt)) {
          if (ef == 1 && ewt == WireType::Len) key = e.string();
          else if (ef == 2 && ewt == WireType::Len) value = e.string();
          else e.skip(ewt, ef);
        }
        t.external_data[key] = value;
        break;
      }
      case 14: expect(r, wt, WireType::Varint, "TensorProto.data_location"); t.external = r.varint() == 1; break;
      default: r.skip(wt, f);
    }
  }
  return t;
}

std::string tensor_label(const RawTensor& t) {
  return "tensor '" + t.name + "' (at byte " + std::to_string(t.offset) + ")";
}

/// Checked product of the dims; refuses negative dims and anything above `max_bytes`.
int64_t checked_numel(const RawTensor& t, std::size_t elem_bytes, std::size_t max_bytes) {
  int64_t n = 1;
  for (int64_t d : t.dims) {
    if (d < 0) throw ModelFormatError(tensor_label(t) + " has a negative dimension " + std::to_string(d));
    if (d != 0 && n > static_cast<int64_t>(max_bytes / std::max<std::size_t>(elem_bytes, 1)) / d)
      throw ModelFormatError(tensor_label(t) + " declares more than the " + std::to_string(max_bytes) +
                             "-byte limit per tensor");
    n *= d;
  }
  if (static_cast<std::size_t>(n) * std::max<std::size_t>(elem_bytes, 1) > max_bytes)
    throw ModelFormatError(tensor_label(t) + " declares more than the " + std::to_string(max_bytes) +
                           "-byte limit per tensor");
  return n;
}

struct ExternalCtx {
  std::string base_dir;       // as given
  std::string base_real;      // realpath of base_dir, "" if unavailable
};

bool path_has_dotdot(const std::string& p) {
  std::size_t i = 0;
  while (i <= p.size()) {
    std::size_t j = p.find_first_of("/\\", i);
    if (j == std::string::npos) j = p.size();
    if (p.compare(i, j - i, "..") == 0 && j - i == 2) return true;
    i = j + 1;
  }
  return false;
}

/// Reads the bytes of an external tensor, refusing any location outside the model's folder.
std::string read_external(const RawTensor& t, const ExternalCtx& ext, std::size_t want_bytes) {
  auto it = t.external_data.find("location");
  if (it == t.external_data.end() || it->second.empty())
    throw ModelFormatError(tensor_label(t) + " is stored externally but has no location");
  const std::string loc = it->second;
  const std::string shown = safe_utf8(loc);
  if (ext.base_dir.empty())
    throw ModelFormatError(tensor_label(t) + " is stored in the external file '" + shown +
                           "'; load the model from its file path (not from bytes) so the file can be found");
  if (loc[0] == '/' || loc[0] == '\\' || (loc.size() > 1 && loc[1] == ':'))
    throw ModelFormatError(tensor_label(t) + ": external data location '" + shown +
                           "' is absolute; only paths relative to the model's folder are allowed");
  if (path_has_dotdot(loc))
    throw ModelFormatError(tensor_label(t) + ": external data location '" + shown +
                           "' contains '..'; only paths inside the model's folder are allowed");
  if (loc.find('\0') != std::string::npos)
    throw ModelFormatError(tensor_label(t) + ": external data location contains a NUL byte");
  const std::string joined = ext.base_dir + "/" + loc;
  char buf[PATH_MAX];
  if (ext.base_real.empty() || realpath(joined.c_str(), buf) == nullptr)
    throw ModelFormatError(tensor_label(t) + ": external data file '" + shown + "' not found next to the model");
  std::string real(buf);
  const std::string prefix = ext.base_real.back() == '/' ? ext.base_real : ext.base_real + "/";  // "/" stays "/"
  if (real.compare(0, prefix.size(), prefix) != 0)
    throw ModelFormatError(tensor_label(t) + ": external data location '" + shown +
                           "' resolves (through a symbolic link) outside the model's folder; refused");
  struct stat st {};
  if (stat(real.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    throw ModelFormatError(tensor_label(t) + ": external data '" + shown + "' is not a regular file");
  auto parse_num = [&](const char* key) -> std::size_t {
    auto k = t.external_data.find(key);
    if (k == t.external_data.end()) return SIZE_MAX;
    const std::string& v = k->second;
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
      throw ModelFormatError(tensor_label(t) + ": external data " + key + " '" + safe_utf8(v) + "' is not a number");
    return static_cast<std::size_t>(std::stoull(v));
  };
  std::size_t offset = parse_num("offset");
  if (offset == SIZE_MAX) offset = 0;
  std::size_t length = parse_num("length");
  const auto fsize = static_cast<std::size_t>(st.st_size);
  if (length == SIZE_MAX) length = want_bytes;
  if (length != want_bytes)
    throw ModelFormatError(tensor_label(t) + ": external data length " + std::to_string(length) +
                           " does not match the " + std::to_string(want_bytes) + " bytes its shape needs");
  if (offset > fsize || length > fsize - offset)
    throw ModelFormatError(tensor_label(t) + ": external data needs bytes " + std::to_string(offset) + ".." +
                           std::to_string(offset + length) + " but '" + shown + "' has only " +
                           std::to_string(fsize) + " bytes");
  std::ifstream in(real, std::ios::binary);
  std::string data(length, '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(&data[0], static_cast<std::streamsize>(length));
  if (!in) throw ModelFormatError(tensor_label(t) + ": could not read external data '" + shown + "'");
  return data;
}

template <class T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

/// Converts a parsed TensorProto to an IR tensor: float types -> Float32, integer/bool -> Int64.
/// Throws ModelFormatError when the data does not match the declared shape or type.
Tensor to_tensor(const RawTensor& t, const ExternalCtx& ext, const ImportLimits& limits) {
  const int64_t dt = t.data_type;
  if (!is_float_type(dt) && !is_int_type(dt))
    throw UnsupportedModelError(tensor_label(t) + " has data type " + std::string(onnx_type_name(dt)) +
                                    ", which onnxplain cannot hold (float and integer tensors only)",
                                {});
  const std::size_t esz = raw_elem_size(dt);
  const DType out_type = is_float_type(dt) ? DType::Float32 : DType::Int64;
  const int64_t n = checked_numel(t, std::max<std::size_t>(esz, dtype_size(out_type)), limits.max_tensor_bytes);
  const Shape shape(t.dims.begin(), t.dims.end());
  auto mismatch = [&](std::size_t have, const char* unit) {
    throw ModelFormatError(tensor_label(t) + " declares shape " + shape_str(shape) + " (" + std::to_string(n) +
                           " elements) but holds " + std::to_string(have) + " " + unit);
  };
  // Everything below checks the data against the declared shape before allocating: a few bytes
  // of file must not be able to make us allocate gigabytes.
  std::string ext_bytes;
  const uint8_t* raw = nullptr;
  std::size_t raw_size = 0;
  if (t.external) {
    ext_bytes = read_external(t, ext, static_cast<std::size_t>(n) * esz);
    raw = reinterpret_cast<const uint8_t*>(ext_bytes.data());
    raw_size = ext_bytes.size();
  } else if (t.has_raw) {
    raw = t.raw.data;
    raw_size = t.raw.size;
  }
  if (t.external || t.has_raw) {
    if (raw_size != static_cast<std::size_t>(n) * esz) mismatch(raw_size, "bytes of raw data");
    Tensor out(out_type, shape);
    if (out_type == DType::Float32) {
      float* y = out.f32();
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* p = raw + static_cast<std::size_t>(i) * esz;
        switch (dt) {
          case kFloat: y[i] = load_le<float>(p); break;
          case kDouble: y[i] = static_cast<float>(load_le<double>(p)); break;
          case kFloat16: y[i] = half_to_float(load_le<uint16_t>(p)); break;
          default: y[i] = bf16_to_float(load_le<uint16_t>(p)); break;
        }
      }
    } else {
      int64_t* y = out.i64();
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* p = raw + static_cast<std::size_t>(i) * esz;
        switch (dt) {
          case kInt64: y[i] = load_le<int64_t>(p); break;
          case kUint64: y[i] = static_cast<int64_t>(load_le<uint64_t>(p)); break;
          case kInt32: y[i] = load_le<int32_t>(p); break;
          case kUint32: y[i] = load_le<uint32_t>(p); break;
          case kInt16: y[i] = load_le<int16_t>(p); break;
          case kUint16: y[i] = load_le<uint16_t>(p); break;
          case kInt8: y[i] = load_le<int8_t>(p); break;
          default: y[i] = *p; break;  // uint8, bool
        }
      }
    }
    return out;
  }
  // Typed fields.
  std::size_t have = 0;
  switch (dt) {
    case kFloat: have = t.float_data.size(); break;
    case kDouble: have = t.double_data.size(); break;
    case kInt64: have = t.int64_data.size(); break;
    case kUint32: case kUint64: have = t.uint64_data.size(); break;
    default: have = t.int32_data.size(); break;  // int32, int16, int8, uint16, uint8, bool, float16, bfloat16
  }
  if (have != static_cast<std::size_t>(n)) mismatch(have, "values");
  Tensor out(out_type, shape);
  switch (dt) {
    case kFloat:
      std::copy(t.float_data.begin(), t.float_data.end(), out.f32());
      break;
    case kDouble:
      for (int64_t i = 0; i < n; ++i) out.f32()[i] = static_cast<float>(t.double_data[static_cast<std::size_t>(i)]);
      break;
    case kFloat16:
    case kBfloat16:
      for (int64_t i = 0; i < n; ++i) {
        auto bits = static_cast<uint16_t>(t.int32_data[static_cast<std::size_t>(i)]);
        out.f32()[i] = dt == kFloat16 ? half_to_float(bits) : bf16_to_float(bits);
      }
      break;
    case kInt64:
      std::copy(t.int64_data.begin(), t.int64_data.end(), out.i64());
      break;
    case kUint32:
    case kUint64:
      for (int64_t i = 0; i < n; ++i) out.i64()[i] = static_cast<int64_t>(t.uint64_data[static_cast<std::size_t>(i)]);
      break;
    default:  // int32, int16, int8, uint16, uint8, bool: int32_data
      std::copy(t.int32_data.begin(), t.int32_data.end(), out.i64());
      break;
  }
  return out;
}

// ---- attributes -------------------------------------------------------------------------------

struct ParsedAttr {
  std::string name;
  Attribute a;
  int64_t declared_type = 0;
};

ParsedAttr parse_attribute(Reader r, const ExternalCtx& ext, const ImportLimits& limits) {
  ParsedAttr p;
  Attribute& a = p.a;
  const std::size_t at = r.offset();
  bool has_f = false, has_i = false, has_s = false, has_t = false, has_g = false;
  bool has_tensors = false, has_graphs = false;
  uint32_t f;
  WireType wt;
  while (r.next(f, wt)) {
    switch (f) {
      case 1: expect(r, wt, WireType::Len, "AttributeProto.name"); p.name = safe_utf8(r.string()); break;
      case 20: expect(r, wt, WireType::Varint, "AttributeProto.type"); p.declared_type = as_i64(r.varint()); break;
      case 2: expect(r, wt, WireType::Fixed32, "AttributeProto.f"); a.f = r.f32(); has_f = true; break;
      case 3: expect(r, wt, WireType::Varint, "AttributeProto.i"); a.i = as_i64(r.varint()); has_i = true; break;
      case 4: expect(r, wt, WireType::Len, "AttributeProto.s"); a.s = safe_utf8(r.string()); has_s = true; break;
      case 5:
        expect(r, wt, WireType::Len, "AttributeProto.t");
        a.t = to_tensor(parse_tensor(r.nested()), ext, limits);
        has_t = true;
        break;
      case 6: expect(r, wt, WireType::Len, "AttributeProto.g"); r.bytes(); has_g = true; break;
      case 7: read_repeated(r, wt, WireType::Fixed32, a.floats, [](Reader& x) { return x.f32(); }); break;
      case 8: read_repeated(r, wt, WireType::Varint, a.ints, [](Reader& x) { return as_i64(x.varint()); }); break;
      case 9: expect(r, wt, WireType::Len, "AttributeProto.strings"); a.strings.push_back(safe_utf8(r.string())); break;
      case 10: expect(r, wt, WireType::Len, "AttributeProto.tensors"); r.bytes(); has_tensors = true; break;
      case 11: expect(r, wt, WireType::Len, "AttributeProto.graphs"); r.bytes(); has_graphs = true; break;
      default: r.skip(wt, f);
    }
  }
  // AttributeProto.AttributeType: FLOAT=1 INT=2 STRING=3 TENSOR=4 GRAPH=5 FLOATS=6 INTS=7 STRINGS=8
  // TENSORS=9 GRAPHS=10. Old files may omit `type`; infer it from which field is set.
  using T = Attribute::Type;
  switch (p.declared_type) {
    case 1: a.type = T::Float; break;
    case 2: a.type = T::Int; break;
    case 3: a.type = T::String; break;
    case 4:
      // Without its tensor the attribute would read as a scalar with no data.
      if (!has_t) Reader::fail_at(at, "attribute '" + p.name + "' is declared a TENSOR but holds no tensor");
      a.type = T::Tensor;
      break;
    case 5: case 10: a.type = T::Graph; break;
    case 6: a.type = T::Floats; break;
    case 7: a.type = T::Ints; break;
    case 8: a.type = T::Strings; break;
    default:
      if (has_t) a.type = T::Tensor;
      else if (has_g || has_graphs) a.type = T::Graph;
      else if (has_s) a.type = T::String;
      else if (has_f) a.type = T::Float;
      else if (has_i) a.type = T::Int;
      else if (!a.floats.empty()) a.type = T::Floats;
      else if (!a.ints.empty()) a.type = T::Ints;
      else if (!a.strings.empty()) a.type = T::Strings;
      else if (has_tensors) a.type = T::Undefined;
  }
  return p;
}

// ---- ValueInfoProto -----------------------------------------------------------------------------

struct ParsedValueInfo {
  std::string name;
  bool is_tensor = false;
  int64_t elem_type = 0;
  bool has_shape = false;
  Shape shape;
};

void parse_shape(Reader r, ParsedValueInfo& v) {
  v.has_shape = true;
  uint32_t f;
  WireType wt;
  while (r.next(f, wt)) {
    if (f != 1 || wt != WireType::Len) {
      r.skip(wt, f);
      continue;
    }
    Reader d = r.nested();
    int64_t dim = -1;
    uint32_t df;
    WireType dwt;
    while (d.next(df, dwt)) {
      if (df == 1 && dwt == WireType::Varint) {
        dim = as_i64(d.varint());
        if (dim < 0) dim = -1;
      } else {
        d.skip(dwt, df);
      }
    }
    v.shape.push_back(dim);
  }
}

ParsedValueInfo parse_value_info(Reader r) {
  ParsedValueInfo v;
  uint32_t f;
  WireType wt;
  while (r.next(f, wt)) {
    if (f == 1 && wt == WireType::Len) {
      v.name = safe_utf8(r.string());
    } else if (f == 2 && wt == WireType::Len) {  // TypeProto
      Reader tp = r.nested();
      uint32_t tf;
      WireType twt;
      while (tp.next(tf, twt)) {
        if (tf == 1 && twt == WireType::Len) {  // TypeProto.Tensor
          v.is_tensor = true;
          Reader tt = tp.nested();
          uint32_t xf;
          WireType xwt;
          while (tt.next(xf, xwt)) {
            if (xf == 1 && xwt == WireType::Varint) v.elem_type = as_i64(tt.varint());
            else if (xf == 2 && xwt == WireType::Len) parse_shape(tt.nested(), v);
            else tt.skip(xwt, xf);
          }
        } else {
          tp.skip(twt, tf);
        }
      }
    } else {
      r.skip(wt, f);
    }
  }
  return v;
}

ValueInfo to_value_info(const ParsedValueInfo& p) {
  ValueInfo vi;
  vi.dtype = is_int_type(p.elem_type) ? DType::Int64 : DType::Float32;
  vi.has_rank = p.is_tensor && p.has_shape;
  if (vi.has_rank) vi.shape = p.shape;
  return vi;
}

// ---- NodeProto / GraphProto / ModelProto --------------------------------------------------------

struct ParsedNode {
  std::vector<std::string> inputs, outputs;
  std::string name, op_type, domain;
  std::vector<ParsedAttr> attrs;
};

ParsedNode parse_node(Reader r, const ExternalCtx& ext, const ImportLimits& limits) {
  ParsedNode n;
  uint32_t f;
  WireType wt;
  while (r.next(f, wt)) {
    switch (f) {
      case 1: expect(r, wt, WireType::Len, "NodeProto.input"); n.inputs.push_back(safe_utf8(r.string())); break;
      case 2: expect(r, wt, WireType::Len, "NodeProto.output"); n.outputs.push_back(safe_utf8(r.string())); break;
      case 3: expect(r, wt, WireType::Len, "NodeProto.name"); n.name = safe_utf8(r.string()); break;
      case 4: expect(r, wt, WireType::Len, "NodeProto.op_type"); n.op_type = safe_utf8(r.string()); break;
      case 7: expect(r, wt, WireType::Len, "NodeProto.domain"); n.domain = safe_utf8(r.string()); break;
      case 5:
        expect(r, wt, WireType::Len, "NodeProto.attribute");
        try {
          n.attrs.push_back(parse_attribute(r.nested(), ext, limits));
        } catch (const ModelFormatError& e) {
          // Exporters write name and op_type before the attributes: name the node where known.
          if (n.name.empty() && n.op_type.empty()) throw;
          throw ModelFormatError("node '" + n.name + "' (" + n.op_type + "): " + e.what());
        }
        break;
      default: r.skip(wt, f);
    }
  }
  if (n.op_type.empty()) r.fail("a node has no op_type");
  return n;
}

struct Importer {
  const ExternalCtx& ext;
  const ImportLimits& limits;
  Graph g;
  std::unordered_map<std::string, int> ids;  // file name -> value id (Graph::add_value may rename)

  int value(const std::string& name) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    int id = g.add_value(name);
    ids[name] = id;
    return id;
  }

  void parse_graph(Reader r) {
    std::vector<ParsedNode> nodes;
    std::vector<ParsedValueInfo> inputs, outputs, infos;
    uint32_t f;
    WireType wt;
    while (r.next(f, wt)) {
      switch (f) {
        case 1: expect(r, wt, WireType::Len, "GraphProto.node"); nodes.push_back(parse_node(r.nested(), ext, limits)); break;
        case 5: {
          expect(r, wt, WireType::Len, "GraphProto.initializer");
          RawTensor rt = parse_tensor(r.nested());
          if (rt.name.empty()) r.fail("an initializer has no name");
          if (ids.count(rt.name)) throw ModelFormatError("initializer '" + rt.name + "' is defined twice");
          try {
            int id = g.add_constant(rt.name, to_tensor(rt, ext, limits));
            ids[rt.name] = id;
          } catch (const UnsupportedModelError& e) {
            // A string/complex initializer is fine as long as nothing we run reads it (skl2onnx's
            // class labels, removed with the label output); otherwise it fails at instantiation.
            int id = g.add_constant(rt.name, Tensor(DType::Int64, {0}));
            ids[rt.name] = id;
            g.unusable[id] = e.what();
          }
          break;
        }
        case 15:
          expect(r, wt, WireType::Len, "GraphProto.sparse_initializer");
          throw ModelFormatError("the graph has a sparse initializer, which onnxplain does not support");
        case 11: expect(r, wt, WireType::Len, "GraphProto.input"); inputs.push_back(parse_value_info(r.nested())); break;
        case 12: expect(r, wt, WireType::Len, "GraphProto.output"); outputs.push_back(parse_value_info(r.nested())); break;
        case 13: expect(r, wt, WireType::Len, "GraphProto.value_info"); infos.push_back(parse_value_info(r.nested())); break;
        default: r.skip(wt, f);
      }
    }
    for (const auto& in : inputs) {
      if (in.name.empty()) throw ModelFormatError("a graph input has no name");
      auto it = ids.find(in.name);
      if (it != ids.end() && g.values[static_cast<std::size_t>(it->second)].is_constant) continue;  // IR < 4
      if (it != ids.end()) throw ModelFormatError("graph input '" + in.name + "' is listed twice");
      if (in.is_tensor && !is_float_type(in.elem_type) && !is_int_type(in.elem_type))
        throw UnsupportedModelError("graph input '" + in.name + "' has element type " +
                                        onnx_type_name(in.elem_type) + "; onnxplain reads float and integer tensors only",
                                    {});
      if (!in.is_tensor)
        throw UnsupportedModelError("graph input '" + in.name + "' is not a tensor (sequence/map/optional types are not supported)", {});
      int id = value(in.name);
      g.values[static_cast<std::size_t>(id)].info = to_value_info(in);
      g.inputs.push_back(id);
    }
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      ParsedNode& pn = nodes[i];
      Node n;
      n.name = pn.name.empty() ? pn.op_type + "_" + std::to_string(i) : pn.name;
      n.op_type = pn.op_type;
      n.domain = pn.domain == "ai.onnx" ? "" : pn.domain;
      for (const auto& s : pn.inputs) n.inputs.push_back(s.empty() ? -1 : value(s));
      for (const auto& s : pn.outputs) {
        int id = s.empty() ? -1 : value(s);
        // SSA: a node may not overwrite a graph input or an initializer (onnxruntime refuses it
        // too); toposort catches two nodes writing one value.
        if (id >= 0 && g.values[static_cast<std::size_t>(id)].is_constant)
          throw ModelFormatError(Graph::node_context(n) + " writes '" + s + "', which is an initializer");
        if (id >= 0 && std::find(g.inputs.begin(), g.inputs.end(), id) != g.inputs.end())
          throw ModelFormatError(Graph::node_context(n) + " writes '" + s + "', which is a graph input");
        n.outputs.push_back(id);
      }
      n.attrs.set_context(Graph::node_context(n));
      for (auto& a : pn.attrs) {
        if (a.name.empty()) throw ModelFormatError(Graph::node_context(n) + " has an attribute without a name");
        n.attrs.set(a.name, std::move(a.a));
      }
      g.nodes.push_back(std::move(n));
    }
    for (const auto& vi : infos) {
      auto it = ids.find(vi.name);
      if (it == ids.end()) continue;
      Value& v = g.values[static_cast<std::size_t>(it->second)];
      if (!v.is_constant) v.info = to_value_info(vi);
    }
    for (const auto& out : outputs) {
      auto it = ids.find(out.name);
      if (it == ids.end())
        throw ModelFormatError("graph output '" + out.name + "' is not produced by any node, input or initializer");
      Value& v = g.values[static_cast<std::size_t>(it->second)];
      if (!v.is_constant && out.is_tensor) v.info = to_value_info(out);
      else if (!v.is_constant) v.info = ValueInfo();
      g.outputs.push_back(it->second);
    }
  }
};

}  // namespace

Graph import_model(const uint8_t* data, std::size_t size, const std::string& base_dir, const ImportLimits& limits) {
  if (data == nullptr || size == 0) throw ModelFormatError("the model is empty (0 bytes)");
  ExternalCtx ext;
  ext.base_dir = base_dir;
  if (!base_dir.empty()) {
    char buf[PATH_MAX];
    if (realpath(base_dir.c_str(), buf) != nullptr) ext.base_real = buf;
  }
  Importer im{ext, limits, Graph(), {}};
  Reader r(data, size, 0, 0, limits.max_nesting);
  bool has_graph = false;
  int64_t ir_version = 0;
  uint32_t f;
  WireType wt;
  try {
    while (r.next(f, wt)) {
      switch (f) {
        case 1: expect(r, wt, WireType::Varint, "ModelProto.ir_version"); ir_version = as_i64(r.varint()); break;
        case 2: expect(r, wt, WireType::Len, "ModelProto.producer_name"); im.g.producer_name = safe_utf8(r.string()); break;
        case 7:
          expect(r, wt, WireType::Len, "ModelProto.graph");
          if (has_graph) r.fail("the model has two graphs");
          im.parse_graph(r.nested());
          has_graph = true;
          break;
        case 8: {
          expect(r, wt, WireType::Len, "ModelProto.opset_import");
          Reader o = r.nested();
          std::string domain;
          int64_t version = 0;
          uint32_t of;
          WireType owt;
          while (o.next(of, owt)) {
            if (of == 1 && owt == WireType::Len) domain = safe_utf8(o.string());
            else if (of == 2 && owt == WireType::Varint) version = as_i64(o.varint());
            else o.skip(owt, of);
          }
          if (domain == "ai.onnx") domain.clear();
          im.g.opsets[domain] = version;
          break;
        }
        default: r.skip(wt, f);
      }
    }
  } catch (const ModelFormatError& e) {
    throw ModelFormatError(std::string("not a valid ONNX model: ") + e.what());
  }
  if (!has_graph)
    throw ModelFormatError("not a valid ONNX model: it has no graph (is this an ONNX file? " + std::to_string(size) +
                           " bytes read)");
  if (ir_version <= 0)
    throw ModelFormatError("not a valid ONNX model: ir_version is missing");
  if (ir_version > kNewestIrVersion)
    throw ModelFormatError("the model's ir_version is " + std::to_string(ir_version) +
                           ", newer than onnxplain reads (up to " + std::to_string(kNewestIrVersion) +
                           ", ONNX 1.23); re-export it with an older exporter or onnx package, or re-save it "
                           "with model.ir_version = " + std::to_string(kNewestIrVersion) +
                           " if it uses nothing newer");
  const auto def = im.g.opsets.find("");
  if (def != im.g.opsets.end() && def->second > kNewestOpset)
    throw ModelFormatError("the model imports ai.onnx opset " + std::to_string(def->second) +
                           ", newer than the newest onnxplain knows (opset " + std::to_string(kNewestOpset) +
                           "); re-export it with opset " + std::to_string(kNewestOpset) +
                           " or lower (torch.onnx.export(..., opset_version=" + std::to_string(kNewestOpset) +
                           "), tf2onnx --opset) or convert it with onnx.version_converter.convert_version(model, " +
                           std::to_string(kNewestOpset) + ")");
  if (def != im.g.opsets.end() && def->second < 1)
    throw ModelFormatError("the model imports ai.onnx opset " + std::to_string(def->second) +
                           ", which is not an opset version (they start at 1); re-export the model");
  if (def == im.g.opsets.end()) {
    // Without it the version of every default-domain op is unknown (onnxruntime refuses such a
    // model too). A graph of other domains only (ai.onnx.ml) needs none.
    for (const auto& n : im.g.nodes)
      if (n.domain.empty())
        throw ModelFormatError(Graph::node_context(n) +
                               " is an ai.onnx op, but the model imports no ai.onnx opset, so its version is "
                               "unknown; re-export the model with an opset (e.g. opset " +
                               std::to_string(kNewestOpset) + "), or add the one it was written for: "
                               "model.opset_import.append(onnx.helper.make_opsetid('', N))");
  }
  if (im.g.outputs.empty()) throw ModelFormatError("the graph has no outputs");
  im.g.toposort();
  return std::move(im.g);
}

}  // namespace onnxplain::importer
