// Data an op derives from one of its inputs and keeps across calls: a convolution's flipped
// weight (its input gradient runs as a convolution) or its Winograd-transformed weight. Deriving
// them costs a pass over the weight on every call, which for a wide layer is a tenth of the
// layer's own time. Only frozen tensors (graph constants, a rule's modified weights) are cached:
// their contents never change while their storage lives. An entry is keyed by the storage's
// address and remembers the storage weakly, so a freed weight (and an address reused by a new
// tensor) is recognised and recomputed, and entries of freed weights are dropped.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "ir/tensor.hpp"

namespace onnxplain::ops {

class DerivedCache {
 public:
  using Data = std::shared_ptr<const std::vector<float>>;

  /// The data derived from `src` under `tag` (one op may derive several things), made by
  /// make(std::vector<float>&) on a miss. Unfrozen sources are derived afresh every call.
  template <class F>
  Data get(const Tensor& src, int tag, F make) {
    if (!src.is_frozen()) return fresh(make);
    const std::shared_ptr<void> owner = src.storage_ref().lock();
    const Key key{src.raw(), tag};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end() && same_owner(it->second.owner, owner)) return it->second.data;
    }
    Data d = fresh(make);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = map_.begin(); it != map_.end();) it = it->second.owner.expired() ? map_.erase(it) : std::next(it);
    map_[key] = Entry{owner, d};
    return d;
  }

 private:
  using Key = std::pair<const void*, int>;
  struct Entry {
    std::weak_ptr<void> owner;
    Data data;
  };
  template <class F>
  static Data fresh(F& make) {
    auto v = std::make_shared<std::vector<float>>();
    make(*v);
    return v;
  }
  static bool same_owner(const std::weak_ptr<void>& a, const std::shared_ptr<void>& b) {
    return b && !a.expired() && !a.owner_before(b) && !b.owner_before(a);
  }
  std::mutex mu_;
  std::map<Key, Entry> map_;
};

}  // namespace onnxplain::ops
