// Dense tensors of the IR. Compute is float32; integer tensors (int64) exist only for the shape
// arithmetic exporters emit (Shape/Gather/Concat/...), which constant folding or the runtime
// evaluates on a handful of elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace onnxplain {

enum class DType : int { Float32 = 1, Int64 = 7 };

const char* dtype_name(DType t);
inline std::size_t dtype_size(DType t) { return t == DType::Int64 ? 8 : 4; }

using Shape = std::vector<int64_t>;

/// The most elements a shape may have (2^60, so that its bytes fit in 64 bits); a shape with more
/// is refused with ShapeError wherever elements are counted.
constexpr int64_t kMaxNumel = int64_t{1} << 60;
/// a * b for element counts (a, b >= 0); ShapeError when the product exceeds kMaxNumel.
int64_t checked_numel_mul(int64_t a, int64_t b);
/// Number of elements of a fully known shape (all dims >= 0); ShapeError above kMaxNumel.
int64_t shape_numel(const Shape& s);
/// The most bytes one allocated tensor may take: the machine's physical memory, or
/// ONNXPLAIN_MAX_TENSOR_MB where set. A larger one is a ShapeError (at load: ModelFormatError), not
/// an allocation that fails or that the kernel kills the process for.
/// A 64-byte aligned buffer of at least `bytes` from the tensors' pool (buffers of 256 KiB and
/// more are recycled, see tensor.cpp), and its release with the same byte count.
void* pool_alloc(std::size_t bytes);
void pool_free(void* p, std::size_t bytes);

/// An allocator over pool_alloc, for long vectors that are made and dropped per call (data
/// derived from weights): fresh pages on every call cost a page fault per 4 KiB.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  T* allocate(std::size_t n) { return static_cast<T*>(pool_alloc(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) { pool_free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const PoolAllocator<U>&) const { return false; }
};

std::size_t max_tensor_bytes();
/// The ShapeError Tensor(dtype, shape) would throw (a dim < 0, more than kMaxNumel elements, more
/// than max_tensor_bytes()), for code that sizes other buffers by a shape before allocating it.
void check_tensor_size(DType dtype, const Shape& shape);
/// "(1, 3, 224, 224)"; unknown dims (-1) print as "?".
std::string shape_str(const Shape& s);

/// A contiguous, row-major tensor. Storage is shared (copying a Tensor is cheap and aliases);
/// use clone() for a deep copy.
class Tensor {
 public:
  Tensor() = default;
  /// Allocates uninitialised storage (64-byte aligned).
  Tensor(DType dtype, Shape shape);
  /// Wraps external memory; `owner` keeps it alive (e.g. a numpy array).
  Tensor(DType dtype, Shape shape, void* data, std::shared_ptr<void> owner);

  static Tensor zeros(DType dtype, Shape shape);
  static Tensor scalar_f32(float v);
  static Tensor from_i64(const std::vector<int64_t>& v);  // 1-D int64

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const { return shape_[static_cast<std::size_t>(i)]; }
  int64_t numel() const { return numel_; }
  std::size_t nbytes() const;
  bool empty_storage() const { return data_ == nullptr && numel_ != 0; }
  bool defined() const { return storage_ != nullptr || numel_ == 0; }

  float* f32();
  const float* f32() const;
  int64_t* i64();
  const int64_t* i64() const;
  void* raw() { return data_; }
  const void* raw() const { return data_; }

  /// The same tensor, marked as never written again (graph constants, a rule's modified
  /// weights): only frozen tensors may have derived data cached for them (ops/derived_cache.hpp).
  Tensor frozen() const {
    Tensor t = *this;
    t.frozen_ = true;
    return t;
  }
  bool is_frozen() const { return frozen_; }
  /// A weak reference to the storage: expires when the last tensor sharing it goes.
  std::weak_ptr<void> storage_ref() const { return storage_; }

  /// `shape`'s worth of elements from element `offset` on, sharing the storage (bounds-checked).
  Tensor view(Shape shape, int64_t offset) const;
  /// Same storage, new shape with the same number of elements.
  Tensor reshaped(Shape shape) const;
  Tensor clone() const;
  /// Values of an int64 tensor (or a float tensor holding integers) as a vector.
  std::vector<int64_t> to_i64_vector() const;

 private:
  DType dtype_ = DType::Float32;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  bool frozen_ = false;
};

}  // namespace onnxplain
