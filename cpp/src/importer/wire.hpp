// A bounds-checked reader of the protobuf wire format (varints, fixed32/64, length-delimited
// fields, groups). Every length read from the bytes is checked against the bytes that remain
// before anything is taken from it, so hostile files cannot make it read out of bounds or
// allocate from an untrusted length. Errors are ModelFormatError with the absolute byte offset.
// Spec: https://protobuf.dev/programming-guides/encoding/
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "onnxplain/errors.hpp"

namespace onnxplain::importer::wire {

enum class WireType : int { Varint = 0, Fixed64 = 1, Len = 2, StartGroup = 3, EndGroup = 4, Fixed32 = 5 };

inline const char* wire_type_name(WireType t) {
  switch (t) {
    case WireType::Varint: return "varint";
    case WireType::Fixed64: return "fixed64";
    case WireType::Len: return "length-delimited";
    case WireType::StartGroup: return "start-group";
    case WireType::EndGroup: return "end-group";
    case WireType::Fixed32: return "fixed32";
  }
  return "?";
}

/// A view of bytes inside the buffer being parsed; `offset` is its position in the whole file
/// (for messages).
struct Span {
  const uint8_t* data = nullptr;
  std::size_t size = 0;
  std::size_t offset = 0;
};

class Reader {
 public:
  /// `depth` counts enclosing messages; `max_depth` bounds it (nested() refuses to go deeper).
  Reader(const uint8_t* data, std::size_t size, std::size_t base_offset = 0, std::size_t depth = 0,
         std::size_t max_depth = 64)
      : p_(data), end_(data + size), begin_(data), base_(base_offset), depth_(depth), max_depth_(max_depth) {}
  explicit Reader(const Span& s, std::size_t depth = 0, std::size_t max_depth = 64)
      : Reader(s.data, s.size, s.offset, depth, max_depth) {}

  bool at_end() const { return p_ >= end_; }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  /// Absolute offset (in the file) of the next byte.
  std::size_t offset() const { return base_ + static_cast<std::size_t>(p_ - begin_); }
  std::size_t depth() const { return depth_; }
  std::size_t max_depth() const { return max_depth_; }

  /// Reads the next tag. Returns false at the end of the message.
  bool next(uint32_t& field, WireType& type) {
    if (at_end()) return false;
    std::size_t at = offset();
    uint64_t tag = varint();
    uint64_t f = tag >> 3;
    uint64_t wt = tag & 7u;
    if (f == 0) fail_at(at, "field number 0 is invalid");
    if (f > 0x1FFFFFFFu) fail_at(at, "field number " + std::to_string(f) + " is out of range");
    if (wt > 5) fail_at(at, "invalid wire type " + std::to_string(wt) + " for field " + std::to_string(f));
    field = static_cast<uint32_t>(f);
    type = static_cast<WireType>(wt);
    return true;
  }

  uint64_t varint() {
    std::size_t at = offset();
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (p_ >= end_) fail_at(at, "truncated varint");
      uint8_t b = *p_++;
      if (i == 9 && b > 1) fail_at(at, "varint overflows 64 bits");
      v |= static_cast<uint64_t>(b & 0x7Fu) << (7 * i);
      if (!(b & 0x80u)) return v;
    }
    fail_at(at, "varint longer than 10 bytes");
  }

  uint32_t fixed32() {
    if (remaining() < 4) fail("truncated fixed32 (needs 4 bytes, " + std::to_string(remaining()) + " left)");
    uint32_t v;
    std::memcpy(&v, p_, 4);  // the wire format is little-endian, as is every host we build for
    p_ += 4;
    return v;
  }

  uint64_t fixed64() {
    if (remaining() < 8) fail("truncated fixed64 (needs 8 bytes, " + std::to_string(remaining()) + " left)");
    uint64_t v;
    std::memcpy(&v, p_, 8);
    p_ += 8;
    return v;
  }

  float f32() {
    uint32_t b = fixed32();
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  double f64() {
    uint64_t b = fixed64();
    double d;
    std::memcpy(&d, &b, 8);
    return d;
  }

  /// A length-delimited payload. The length is checked against the remaining bytes first.
  Span bytes() {
    std::size_t at = offset();
    uint64_t n = varint();
    if (n > remaining())
      fail_at(at, "length " + std::to_string(n) + " exceeds the " + std::to_string(remaining()) +
                      " bytes left in the enclosing message (truncated or corrupt file)");
    Span s{p_, static_cast<std::size_t>(n), offset()};
    p_ += n;
    return s;
  }

  std::string string() {
    Span s = bytes();
    return std::string(reinterpret_cast<const char*>(s.data), s.size);
  }

  /// A nested message: a reader one level deeper. Refuses to exceed max_depth.
  Reader nested() {
    std::size_t at = offset();
    if (depth_ + 1 > max_depth_)
      fail_at(at, "messages nested deeper than " + std::to_string(max_depth_) + " levels");
    Span s = bytes();
    return Reader(s, depth_ + 1, max_depth_);
  }

  /// Skips a field's value of the given wire type (groups included, without recursion).
  void skip(WireType t, uint32_t field) {
    switch (t) {
      case WireType::Varint: varint(); return;
      case WireType::Fixed64: fixed64(); return;
      case WireType::Fixed32: fixed32(); return;
      case WireType::Len: bytes(); return;
      case WireType::EndGroup: fail("unexpected end-group tag for field " + std::to_string(field));
      case WireType::StartGroup: {
        // Groups (deprecated) have no length: walk to the matching end tag, counting depth.
        std::size_t at = offset();
        std::size_t open = 1;
        while (open > 0) {
          if (depth_ + open > max_depth_) fail_at(at, "groups nested deeper than " + std::to_string(max_depth_) + " levels");
          uint32_t f;
          WireType wt;
          if (!next(f, wt)) fail_at(at, "unterminated group for field " + std::to_string(field));
          if (wt == WireType::StartGroup) {
            ++open;
          } else if (wt == WireType::EndGroup) {
            --open;
          } else {
            skip(wt, f);
          }
        }
        return;
      }
    }
  }

  [[noreturn]] void fail(const std::string& msg) const { fail_at(offset(), msg); }
  [[noreturn]] static void fail_at(std::size_t at, const std::string& msg) {
    throw ModelFormatError(msg + " at byte " + std::to_string(at));
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* begin_;
  std::size_t base_;
  std::size_t depth_;
  std::size_t max_depth_;
};

}  // namespace onnxplain::importer::wire
