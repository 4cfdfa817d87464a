// Opt-in timing of the forward and reverse sweeps (ONNXPLAIN_PROFILE=1 in the environment: per
// op type; =2: per node): a table per sweep on stderr, slowest first. Reading the clock twice per
// node costs nothing measurable next to a layer; without the variable it is one branch.
#pragma once

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace onnxplain::runtime {

class SweepProfile {
 public:
  explicit SweepProfile(const char* sweep) : sweep_(sweep), on_(enabled()) {
    if (on_) t0_ = Clock::now();
  }
  SweepProfile(const SweepProfile&) = delete;
  SweepProfile& operator=(const SweepProfile&) = delete;
  ~SweepProfile() {
    if (!on_) return;
    const double total = ms_since(t0_);
    std::vector<std::pair<std::string, Row>> rows(by_key_.begin(), by_key_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    std::fprintf(stderr, "[onnxplain profile] %s: %.3f ms\n", sweep_, total);
    for (const auto& [key, r] : rows)
      std::fprintf(stderr, "  %-36s %5d nodes %9.3f ms %5.1f%%\n", key.c_str(), r.count, r.ms,
                   total > 0 ? 100.0 * r.ms / total : 0.0);
  }
  bool on() const { return on_; }
  /// Rows per node rather than per op type.
  static bool per_node() {
    static const bool on = [] {
      const char* v = std::getenv("ONNXPLAIN_PROFILE");
      return v && std::string(v) == "2";
    }();
    return on;
  }
  /// Starts timing one node; `stop(key)` books the time since under key.
  void start() {
    if (on_) tn_ = Clock::now();
  }
  void stop(const std::string& key) {
    if (!on_) return;
    Row& r = by_key_[key];
    r.ms += ms_since(tn_);
    r.count += 1;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Row {
    double ms = 0.0;
    int count = 0;
  };
  static bool enabled() {
    static const bool on = [] {
      const char* v = std::getenv("ONNXPLAIN_PROFILE");
      return v && *v && std::string(v) != "0";
    }();
    return on;
  }
  static double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }
  const char* sweep_;
  bool on_;
  Clock::time_point t0_, tn_;
  std::map<std::string, Row> by_key_;
};

}  // namespace onnxplain::runtime
