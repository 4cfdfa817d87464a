#include "ir/tensor.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

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

int64_t checked_numel_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) throw ShapeError("negative element count " + std::to_string(a < 0 ? a : b));
  if (a != 0 && b > kMaxNumel / a)
    throw ShapeError(std::to_string(a) + " x " + std::to_string(b) + " elements is more than 2^60");
  return a * b;
}

int64_t shape_numel(const Shape& s) {
  // The product of the non-zero dims is bounded too, so that no product of some of a tensor's
  // dims (outer x inner around an axis, strides) can overflow, even for an empty tensor.
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : s) {
    if (d < 0) throw ShapeError("shape " + shape_str(s) + " is not fully known");
    if (d == 0) {
      empty = true;
      continue;
    }
    if (n > kMaxNumel / d) throw ShapeError("shape " + shape_str(s) + " has more than 2^60 elements");
    n *= d;
  }
  return empty ? 0 : n;
}

std::size_t max_tensor_bytes() {
  static const std::size_t limit = [] {
    const char* v = std::getenv("ONNXPLAIN_MAX_TENSOR_MB");
    if (v && *v) {
      const long long mb = std::atoll(v);
      if (mb > 0) return static_cast<std::size_t>(mb) << 20;
    }
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                                 : std::size_t{1} << 40;
  }();
  return limit;
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

// Large buffers are recycled instead of returned to the system: a freshly mapped buffer costs a
// page fault per 4 KiB on first touch, which for the tensors of a VGG-sized forward and reverse
// pass added a fifth to their time. Freed buffers of at least kPoolMin bytes wait here (up to a
// total of ONNXPLAIN_POOL_MB, default a quarter of physical memory; 0 turns the pool off) for a
// request of their size class (a quarter larger at most). A request that finds none maps a new
// buffer; if what is live and what waits would then exceed the most that was ever live at once
// (plus 1/64 or 32 MiB), it first releases waiting buffers. A pool that only grew held, at the end
// of a VGG-16 explanation, every size class of both sweeps beside the live tensors (peak RSS 2.3
// GB instead of 1.9 GB for lrp.epsilon_plus_flat at batch 8); one that released on every miss
// kept missing on repeated calls (14,000 page faults per VGG-16 explanation at batch 1, 13% of its
// time), while the slack lets the waiting set settle on the sizes a repeated call asks for.
// Pooled buffers are their own mappings (mmap), so that releasing one returns its pages to the
// system at once (freed heap memory below glibc's mmap threshold would stay resident). Leaked on
// purpose: tensors may be freed during static destruction.
class BufferPool {
 public:
  static constexpr std::size_t kPoolMin = std::size_t{256} << 10;
  // Slack of at least 32 MiB: a small model's forward at batch 64 (activations of 0.5-8 MiB in
  // four size classes, peak a few MiB) otherwise released and re-mapped buffers on every call
  // (cnn16: 1728 page faults per call, a fifth of its time). For a VGG-sized explanation, 1/64
  // of the peak is more than this anyway.
  static constexpr std::size_t kMinSlack = std::size_t{32} << 20;
  static constexpr std::size_t kHugeMin = std::size_t{4} << 20, kHugeAlign = std::size_t{2} << 20;
  static BufferPool& get() {
    static BufferPool* pool = new BufferPool();
    return *pool;
  }
  void* take(std::size_t n) {
    if (n < kPoolMin) {
      void* p = std::aligned_alloc(64, n);
      if (!p) throw std::bad_alloc();
      return p;
    }
    if (cap_ > 0) {
      std::vector<std::pair<void*, std::size_t>> drop;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = free_.lower_bound(n);
        if (it != free_.end() && it->first <= n + n / 4) {
          void* p = it->second;
          cached_ -= it->first;
          free_.erase(it);
          taken(n);
          return p;
        }
        // A miss. Over the footprint allowed, give back waiting buffers: one larger buffer if
        // there is one (the smallest such), then the largest smaller ones.
        const std::size_t allowed = std::max(peak_, live_ + n) + std::max(peak_ / 64, kMinSlack);
        auto over = [&] { return live_ + n + cached_ > allowed; };
        if (over() && it != free_.end()) {
          drop.emplace_back(it->second, it->first);
          cached_ -= it->first;
          free_.erase(it);
        }
        while (over() && !free_.empty()) {
          auto last = std::prev(free_.end());
          drop.emplace_back(last->second, last->first);
          cached_ -= last->first;
          free_.erase(last);
        }
        taken(n);
      }
      for (const auto& d : drop) unmap(d.first, d.second);
    }
    return map(n);
  }
  void give(void* p, std::size_t n) {
    if (n < kPoolMin) {
      std::free(p);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_ -= std::min(live_, n);
      if (cached_ + n <= cap_) {
        free_.emplace(n, p);
        cached_ += n;
        return;
      }
    }
    unmap(p, n);
  }

 private:
  BufferPool() {
    const char* v = std::getenv("ONNXPLAIN_POOL_MB");
    if (v && *v) {
      const long long mb = std::atoll(v);
      cap_ = mb > 0 ? static_cast<std::size_t>(mb) << 20 : 0;
      return;
    }
    // A quarter of physical memory: enough to hold the activations of a batch-8 VGG explanation,
    // whose fresh pages otherwise cost a fifth of it.
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    cap_ = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4
                                 : std::size_t{1} << 30;
  }
  /// Bytes mapped for a request of n (a multiple of 4 KiB): whole huge pages from kHugeMin.
  static std::size_t mapped_size(std::size_t n) {
    return n >= kHugeMin ? (n + kHugeAlign - 1) / kHugeAlign * kHugeAlign : n;
  }
  // Large buffers on 2 MiB boundaries and advised as huge pages (transparent huge pages in
  // "madvise" mode): 512x fewer page faults and TLB misses on activation-sized tensors.
  static void* map(std::size_t n) {
    const std::size_t len = mapped_size(n), align = n >= kHugeMin ? kHugeAlign : 0;
    void* m = mmap(nullptr, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    auto* base = static_cast<char*>(m);
    char* p = base;
    if (align) {
      const auto addr = reinterpret_cast<std::uintptr_t>(base);
      p = base + ((align - addr % align) % align);
      if (p > base) (void)munmap(base, static_cast<std::size_t>(p - base));
      const std::size_t tail = static_cast<std::size_t>(base + len + align - (p + len));
      if (tail) (void)munmap(p + len, tail);
#ifdef MADV_HUGEPAGE
      (void)madvise(p, len, MADV_HUGEPAGE);
#endif
    }
    return p;
  }
  static void unmap(void* p, std::size_t n) { (void)munmap(p, mapped_size(n)); }

  // Under mu_: bytes of pooled-size buffers handed out and not given back, and their maximum.
  void taken(std::size_t n) {
    live_ += n;
    peak_ = std::max(peak_, live_);
  }

  std::mutex mu_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_ = 0, cap_ = 0, live_ = 0, peak_ = 0;
};

// A multiple of the alignment (aligned_alloc requires it), of 4 KiB for pooled sizes so that
// near-equal requests share a size class; never 0 bytes.
std::size_t storage_size(std::size_t bytes) {
  std::size_t n = ((bytes + 63) / 64) * 64;
  if (n >= BufferPool::kPoolMin) n = ((n + 4095) / 4096) * 4096;
  return n == 0 ? 64 : n;
}

std::shared_ptr<void> aligned_storage(std::size_t bytes) {
  const std::size_t n = storage_size(bytes);
  void* p = BufferPool::get().take(n);
  return std::shared_ptr<void>(p, [n](void* q) { BufferPool::get().give(q, n); });
}
}  // namespace

void* pool_alloc(std::size_t bytes) { return BufferPool::get().take(storage_size(bytes)); }
void pool_free(void* p, std::size_t bytes) {
  if (p) BufferPool::get().give(p, storage_size(bytes));
}

void check_tensor_size(DType dtype, const Shape& shape) {
  // Shapes come from the model: a few bytes of it can ask for any size. Refuse what cannot fit
  // in memory before asking for it (an allocation that the system grants lazily and then kills
  // the process for while it is filled).
  const auto n = static_cast<std::size_t>(shape_numel(shape));
  if (n > max_tensor_bytes() / dtype_size(dtype))
    throw ShapeError("a " + std::string(dtype_name(dtype)) + " tensor of shape " + shape_str(shape) + " needs " +
                     std::to_string(n * dtype_size(dtype)) + " bytes, more than the " +
                     std::to_string(max_tensor_bytes()) +
                     "-byte limit per tensor (the machine's memory, or ONNXPLAIN_MAX_TENSOR_MB)");
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  check_tensor_size(dtype_, shape_);
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

Tensor Tensor::view(Shape shape, int64_t offset) const {
  const int64_t n = shape_numel(shape);
  if (offset < 0 || offset + n > numel_)
    throw ShapeError("a view of " + std::to_string(n) + " elements at " + std::to_string(offset) + " exceeds " +
                     shape_str(shape_));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  t.numel_ = n;
  t.data_ = static_cast<char*>(data_) + static_cast<std::size_t>(offset) * dtype_size(dtype_);
  return t;
}

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
    for (int64_t i = 0; i < numel_; ++i) {
      const float f = f32()[i];
      // 2^63 is exactly representable: anything from it up (and NaN) has no int64 value.
      if (!(std::fabs(f) < 9223372036854775808.f))
        throw ShapeError("the value " + std::to_string(f) + " is not an integer in the int64 range");
      v[static_cast<std::size_t>(i)] = static_cast<int64_t>(f);
    }
  }
  return v;
}

}  // namespace onnxplain
