// Little-endian binary writing and bounds-checked reading for the pattern files (statistics,
// saved explainers). The reader checks every length against the bytes left before it allocates,
// so a truncated or hostile file is a ModelFormatError, never a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ir/tensor.hpp"
#include "onnxplain/errors.hpp"

namespace onnxplain::patterns {

class Writer {
 public:
  void bytes(const void* p, std::size_t n) { buf_.append(static_cast<const char*>(p), n); }
  template <class T>
  void pod(T v) {
    bytes(&v, sizeof v);  // the library only builds for little-endian targets (x86-64, aarch64)
  }
  void u32(uint32_t v) { pod(v); }
  void i32(int32_t v) { pod(v); }
  void u64(uint64_t v) { pod(v); }
  void i64(int64_t v) { pod(v); }
  void f64(double v) { pod(v); }
  void str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void shape(const Shape& s) {
    u32(static_cast<uint32_t>(s.size()));
    for (int64_t d : s) i64(d);
  }
  void f64s(const std::vector<double>& v) { bytes(v.data(), v.size() * sizeof(double)); }
  /// rank, dims, float32 data.
  void tensor(const Tensor& t) {
    shape(t.shape());
    if (t.numel()) bytes(t.raw(), t.nbytes());
  }
  std::string take() { return std::move(buf_); }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(const uint8_t* data, std::size_t size, std::string what) : p_(data), n_(size), what_(std::move(what)) {}
  [[noreturn]] void fail(const std::string& msg) const {
    throw ModelFormatError(what_ + " (byte " + std::to_string(off_) + "): " + msg);
  }
  std::size_t left() const { return n_ - off_; }
  void need(std::size_t k) const {
    if (k > left()) fail("truncated: " + std::to_string(k) + " bytes needed, " + std::to_string(left()) + " left");
  }
  void need_f64s(int64_t count) const {
    if (count < 0 || static_cast<uint64_t>(count) > left() / sizeof(double))
      fail("truncated: " + std::to_string(count) + " float64 values announced, " + std::to_string(left()) +
           " bytes left");
  }
  void raw(void* dst, std::size_t k) {
    need(k);
    if (k) std::memcpy(dst, p_ + off_, k);
    off_ += k;
  }
  template <class T>
  T pod() {
    T v;
    raw(&v, sizeof v);
    return v;
  }
  uint32_t u32() { return pod<uint32_t>(); }
  int32_t i32() { return pod<int32_t>(); }
  uint64_t u64() { return pod<uint64_t>(); }
  int64_t i64() { return pod<int64_t>(); }
  double f64() { return pod<double>(); }
  void magic(const char* m) {
    const std::size_t k = std::strlen(m);
    if (left() < k || std::memcmp(p_ + off_, m, k) != 0) fail(std::string("not a file of this kind (expected '") + m + "')");
    off_ += k;
  }
  std::string str() {
    const uint32_t k = u32();
    need(k);
    std::string s(reinterpret_cast<const char*>(p_ + off_), k);
    off_ += k;
    return s;
  }
  Shape shape() {
    const uint32_t r = u32();
    if (r > 16) fail("rank " + std::to_string(r) + " is too large");
    Shape s;
    int64_t total = 1;
    for (uint32_t i = 0; i < r; ++i) {
      const int64_t d = i64();
      if (d < 0 || d > (int64_t{1} << 40)) fail("dimension " + std::to_string(d) + " is invalid");
      total = d == 0 ? 0 : (total > (int64_t{1} << 40) / d ? fail_total() : total * d);
      s.push_back(d);
    }
    return s;
  }
  void f64s(std::vector<double>& v) { raw(v.data(), v.size() * sizeof(double)); }
  Tensor tensor() {
    const Shape s = shape();
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    if (static_cast<uint64_t>(n) > left() / sizeof(float))
      fail("truncated: a tensor of shape " + shape_str(s) + " announced, " + std::to_string(left()) + " bytes left");
    Tensor t(DType::Float32, s);
    raw(t.raw(), t.nbytes());
    return t;
  }
  /// A sub-buffer of k bytes (read in place).
  const uint8_t* take(std::size_t k) {
    need(k);
    const uint8_t* q = p_ + off_;
    off_ += k;
    return q;
  }
  void end() const {
    if (left() != 0) fail(std::to_string(left()) + " unexpected bytes at the end");
  }

 private:
  [[noreturn]] int64_t fail_total() const { fail("tensor too large"); }
  const uint8_t* p_;
  std::size_t n_;
  std::size_t off_ = 0;
  std::string what_;
};

}  // namespace onnxplain::patterns
