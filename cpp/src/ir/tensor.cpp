#include "ir/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "onnxplain/errors.hpp"

namespace onnxplain {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32:
      return "float32";
    case DType::Int64:
      return "int64";
  }
  return "?";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw ShapeError("shape " + shape_str(s) + " is not fully known");
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) os << ", ";
    if (s[i] < 0)
      os << "?";
    else
      os << s[i];
  }
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

namespace {
std::shared_ptr<void> aligned_storage(std::size_t bytes) {
  // Round up: aligned_alloc requires a multiple of the alignment; never allocate 0 bytes.
  std::size_t n = ((bytes + 63) / 64) * 64;
  if (n == 0) n = 64;
  void* p = std::aligned_alloc(64, n);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  numel_ = shape_numel(shape_);
  storage_ = aligned_storage(static_cast<std::size_t>(numel_) * dtype_size(dtype_));
  data_ = storage_.get();
}

Tensor::Tensor(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner)
    : dtype_(dtype), shape_(std::move(shape)), storage_(std::move(owner)), data_(data) {
  numel_ = shape_numel(shape_);
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::scalar_f32(float v) {
  Tensor t(DType::Float32, {});
  t.f32()[0] = v;
  return t;
}

Tensor Tensor::from_i64(const std::vector<int64_t>& v) {
  Tensor t(DType::Int64, {static_cast<int64_t>(v.size())});
  if (!v.empty()) std::memcpy(t.data_, v.data(), v.size() * sizeof(int64_t));
  return t;
}

std::size_t Tensor::nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }

float* Tensor::f32() {
  if (dtype_ != DType::Float32) throw Error("internal: float32 access to a " + std::string(dtype_name(dtype_)) + " tensor");
  return static_cast<float*>(data_);
}
const float* Tensor::f32() const { return const_cast<Tensor*>(this)->f32(); }
int64_t* Tensor::i64() {
  if (dtype_ != DType::Int64) throw Error("internal: int64 access to a " + std::string(dtype_name(dtype_)) + " tensor");
  return static_cast<int64_t*>(data_);
}
const int64_t* Tensor::i64() const { return const_cast<Tensor*>(this)->i64(); }

Tensor Tensor::reshaped(Shape shape) const {
  Tensor t = *this;
  int64_t n = shape_numel(shape);
  if (n != numel_)
    throw ShapeError("cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, shape_);
  if (numel_) std::memcpy(t.data_, data_, nbytes());
  return t;
}

std::vector<int64_t> Tensor::to_i64_vector() const {
  std::vector<int64_t> v(static_cast<std::size_t>(numel_));
  if (dtype_ == DType::Int64) {
    for (int64_t i = 0; i < numel_; ++i) v[static_cast<std::size_t>(i)] = i64()[i];
  } else {
    for (int64_t i = 0; i < numel_; ++i) v[static_cast<std::size_t>(i)] = static_cast<int64_t>(f32()[i]);
  }
  return v;
}

}  // namespace onnxplain
