// Data an op derives from one of its inputs and keeps across calls: a convolution's flipped
// weight (its input gradient runs as a convolution) or its Winograd-transformed weight. Deriving
// them costs a pass over the weight on every call, which for a wide layer is a tenth of the
// layer's own time. Only frozen tensors (graph constants, a rule's modified weights) are cached:
// their contents never change while their storage lives. An entry is keyed by the storage's
// address and remembers the storage weakly, so a freed weight (and an address reused by a new
// tensor) is recognised and recomputed, and entries of freed weights are dropped.
//
// What all caches hold together is capped (ONNXPLAIN_DERIVED_MB, default 256 MiB): past the cap
// new data is derived for the call and not kept, while what is kept stays (no eviction: a sweep
// visits every layer once per call, and a least-recently-used cache smaller than that cycle would
// miss on every layer). Without a cap the derived data was the largest item of an LRP
// explanation's memory: αβ keeps its modified weights stacked, [W+; W-], and the convolutions
// cached their Winograd transforms for the forward and for the VJP, 16 copies of each 3x3 weight
// (VGG-16: 0.9 GB beside 59 MB of convolution weights). A miss costs a pass over the weight,
// which is 1-2% of a VGG-16 explanation at batch 8.
//
// Data kept past the cap (keep_past_cap: a transform that costs a fifth of its product or more)
// does not count against it: counted, ResNet-50's four 512-channel 3x3 layers filled the cap on
// their own (their forward and reverse transforms, 226 MB) and every 256-channel layer's reverse
// transform was derived afresh on every call, 4 of the 14 ms of each such layer's z+ reverse at
// batch 8.
#pragma once

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "ir/tensor.hpp"

namespace onnxplain::ops {

class DerivedCache {
 public:
  /// Pooled: data derived for one call only (past the cap, or from an unfrozen source) reuses
  /// the buffers of the last call instead of fresh pages.
  using Vec = std::vector<float, PoolAllocator<float>>;
  using Data = std::shared_ptr<const Vec>;

  /// The data derived from `src` under `tag` (one op may derive several things), made by
  /// make(Vec&) on a miss. Unfrozen sources are derived afresh every call.
  /// `keep_past_cap`: keep it even past the cap, for data whose derivation would cost a large
  /// part of the call that uses it (a weight transform for a product over a few tiles).
  template <class F>
  Data get(const Tensor& src, int tag, F make, bool keep_past_cap = false) {
    if (!src.is_frozen()) return fresh(make);
    const std::shared_ptr<void> owner = src.storage_ref().lock();
    const Key key{src.raw(), tag};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end() && same_owner(it->second.owner, owner)) return it->second.data;
    }
    Data d = fresh(make);
    const std::size_t bytes = d->size() * sizeof(float);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = map_.begin(); it != map_.end();) {
      if (it->second.owner.expired() || (it->first == key)) {
        if (!it->second.pinned) total() -= it->second.data->size() * sizeof(float);
        it = map_.erase(it);
      } else {
        ++it;
      }
    }
    if (!keep_past_cap) {
      if (total() + bytes > cap()) return d;
      total() += bytes;
    }
    map_[key] = Entry{owner, d, keep_past_cap};
    return d;
  }
  ~DerivedCache() {
    for (const auto& e : map_)
      if (!e.second.pinned) total() -= e.second.data->size() * sizeof(float);
  }

  /// Bytes held by all caches together under the cap (past it: not counted), and the cap.
  static std::size_t held() { return total().load(); }
  static std::size_t cap() {
    static const std::size_t c = [] {
      const char* v = std::getenv("ONNXPLAIN_DERIVED_MB");
      if (v && *v) {
        const long long mb = std::atoll(v);
        return mb > 0 ? static_cast<std::size_t>(mb) << 20 : std::size_t{0};
      }
      return std::size_t{256} << 20;
    }();
    return c;
  }

 private:
  using Key = std::pair<const void*, int>;
  struct Entry {
    std::weak_ptr<void> owner;
    Data data;
    bool pinned = false;  // kept past the cap, not counted against it
  };
  template <class F>
  static Data fresh(F& make) {
    auto v = std::make_shared<Vec>();
    make(*v);
    return v;
  }
  static std::atomic<std::size_t>& total() {
    static std::atomic<std::size_t> t{0};
    return t;
  }
  static bool same_owner(const std::weak_ptr<void>& a, const std::shared_ptr<void>& b) {
    return b && !a.expired() && !a.owner_before(b) && !b.owner_before(a);
  }
  std::mutex mu_;
  std::map<Key, Entry> map_;
};

}  // namespace onnxplain::ops
