#include "patterns/oxp.hpp"

#include "patterns/binary_io.hpp"

namespace onnxplain::patterns {

std::string write_oxp(const SavedExplainer& s) {
  Writer w;
  w.bytes("OXPLAIN1", 8);
  w.u32(1);
  w.str(s.method);
  w.u32(static_cast<uint32_t>(s.numbers.size()));
  for (const auto& kv : s.numbers) w.str(kv.first), w.f64(kv.second);
  w.u32(static_cast<uint32_t>(s.strings.size()));
  for (const auto& kv : s.strings) w.str(kv.first), w.str(kv.second);
  w.pod<uint8_t>(s.options.strip_softmax);
  w.pod<uint8_t>(s.options.fold_batch_norm);
  w.pod<uint8_t>(s.options.winograd);
  w.u64(s.fingerprint);
  w.u64(s.model_bytes.size());
  w.bytes(s.model_bytes.data(), s.model_bytes.size());
  w.pod<uint8_t>(s.has_statistics);
  const std::string st = s.has_statistics ? s.statistics.serialize() : std::string();
  w.u64(st.size());
  w.bytes(st.data(), st.size());
  w.u32(static_cast<uint32_t>(s.patterns.size()));
  for (const auto& p : s.patterns) {
    w.str(p.node);
    w.pod<uint8_t>(p.a_pos.numel() > 0);
    if (p.a_pos.numel()) w.tensor(p.a_pos);
    w.pod<uint8_t>(p.a_neg.numel() > 0);
    if (p.a_neg.numel()) w.tensor(p.a_neg);
  }
  return w.take();
}

SavedExplainer read_oxp(const uint8_t* data, std::size_t size) {
  Reader r(data, size, "saved explainer");
  r.magic("OXPLAIN1");
  const uint32_t version = r.u32();
  if (version != 1) r.fail("format version " + std::to_string(version) + " is newer than this onnxplain reads (1)");
  SavedExplainer s;
  s.method = r.str();
  const uint32_t nn = r.u32();
  for (uint32_t i = 0; i < nn; ++i) {
    std::string k = r.str();
    s.numbers[k] = r.f64();
  }
  const uint32_t ns = r.u32();
  for (uint32_t i = 0; i < ns; ++i) {
    std::string k = r.str();
    s.strings[k] = r.str();
  }
  s.options.strip_softmax = r.pod<uint8_t>() != 0;
  s.options.fold_batch_norm = r.pod<uint8_t>() != 0;
  s.options.winograd = r.pod<uint8_t>() != 0;
  s.fingerprint = r.u64();
  const uint64_t ml = r.u64();
  if (ml > r.left()) r.fail("truncated: a model of " + std::to_string(ml) + " bytes announced");
  const uint8_t* mp = r.take(static_cast<std::size_t>(ml));
  s.model_bytes.assign(reinterpret_cast<const char*>(mp), static_cast<std::size_t>(ml));
  s.has_statistics = r.pod<uint8_t>() != 0;
  const uint64_t sl = r.u64();
  if (sl > r.left()) r.fail("truncated: statistics of " + std::to_string(sl) + " bytes announced");
  const uint8_t* sp = r.take(static_cast<std::size_t>(sl));
  if (s.has_statistics) s.statistics = Statistics::deserialize(sp, static_cast<std::size_t>(sl));
  const uint32_t np = r.u32();
  for (uint32_t i = 0; i < np; ++i) {
    LayerPattern p;
    p.node = r.str();
    if (r.pod<uint8_t>()) p.a_pos = r.tensor();
    if (r.pod<uint8_t>()) p.a_neg = r.tensor();
    s.patterns.push_back(std::move(p));
  }
  r.end();
  return s;
}

}  // namespace onnxplain::patterns
