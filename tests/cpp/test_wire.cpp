// wire::Reader on hand-made byte strings: varints (limits and overflow), fixed-width values,
// length checks, tags, skipping every wire type (groups included) and the nesting limit.
#include <cstdint>
#include <string>
#include <vector>

#include "check.hpp"
#include "importer/wire.hpp"

using onnxplain::ModelFormatError;
using onnxplain::importer::wire::Reader;
using onnxplain::importer::wire::Span;
using onnxplain::importer::wire::WireType;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes varint(uint64_t v) {
  Bytes out;
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
  return out;
}
Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes tag(uint64_t field, int wt) { return varint((field << 3) | static_cast<uint64_t>(wt)); }
Bytes ld(uint64_t field, const Bytes& payload) { return cat({tag(field, 2), varint(payload.size()), payload}); }
Reader reader(const Bytes& b, std::size_t max_depth = 64) { return Reader(b.data(), b.size(), 0, 0, max_depth); }

uint64_t read_varint(const Bytes& b) {
  Reader r = reader(b);
  uint64_t v = r.varint();
  if (!r.at_end()) throw std::runtime_error("varint left bytes unread");
  return v;
}

}  // namespace

TEST(varint_round_trips) {
  const uint64_t values[] = {0, 1, 127, 128, 300, 16383, 16384, (1ull << 32) - 1, 1ull << 32,
                             (1ull << 63) - 1, 1ull << 63, UINT64_MAX};
  for (uint64_t v : values) CHECK_EQ(read_varint(varint(v)), v);
  CHECK_EQ(varint(UINT64_MAX).size(), std::size_t{10});
}

TEST(varint_max_is_ten_bytes_ending_in_one) {
  Bytes max(9, 0xFF);
  max.push_back(0x01);
  CHECK_EQ(read_varint(max), UINT64_MAX);
}

TEST(varint_overflow_is_an_error) {
  Bytes over(9, 0xFF);
  over.push_back(0x02);  // bit 64 set
  CHECK_THROWS(read_varint(over), ModelFormatError, "overflows 64 bits");
  Bytes eleven(10, 0xFF);
  eleven.push_back(0x01);
  CHECK_THROWS(read_varint(eleven), ModelFormatError, "varint");
  Bytes long_zero(10, 0x80);  // continuation into an 11th byte, even with zero payload
  long_zero.push_back(0x00);
  CHECK_THROWS(read_varint(long_zero), ModelFormatError, "varint");
}

TEST(non_canonical_varint_accepted) {
  CHECK_EQ(read_varint(Bytes{0x81, 0x80, 0x80, 0x00}), uint64_t{1});  // padded encodings are legal
}

TEST(truncated_varint) {
  CHECK_THROWS(read_varint(Bytes{}), ModelFormatError, "truncated varint");
  CHECK_THROWS(read_varint(Bytes{0x80}), ModelFormatError, "truncated varint at byte 0");
  CHECK_THROWS(read_varint(Bytes{0xFF, 0xFF, 0xFF}), ModelFormatError, "truncated varint");
}

TEST(errors_report_absolute_offsets) {
  Bytes b{0x08, 0x01, 0x80};
  Reader r(b.data(), b.size(), 1000);
  CHECK_EQ(r.offset(), std::size_t{1000});
  r.varint();
  r.varint();
  CHECK_EQ(r.offset(), std::size_t{1002});
  CHECK_THROWS(r.varint(), ModelFormatError, "at byte 1002");
}

TEST(fixed32_and_fixed64) {
  Bytes b{0x78, 0x56, 0x34, 0x12, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80};
  Reader r = reader(b);
  CHECK_EQ(r.fixed32(), uint32_t{0x12345678});
  CHECK_EQ(r.fixed64(), uint64_t{0x8000000000000001ull});
  CHECK(r.at_end());
  Bytes f{0x00, 0x00, 0xC0, 0x3F, 0, 0, 0, 0, 0, 0, 0xF8, 0xBF};  // 1.5f, -1.5
  Reader rf = reader(f);
  CHECK_EQ(rf.f32(), 1.5f);
  CHECK_EQ(rf.f64(), -1.5);
}

TEST(truncated_fixed) {
  Bytes three{1, 2, 3};
  Reader r = reader(three);
  CHECK_THROWS(r.fixed32(), ModelFormatError, "truncated fixed32 (needs 4 bytes, 3 left)");
  Bytes seven(7, 0);
  Reader r8 = reader(seven);
  CHECK_THROWS(r8.fixed64(), ModelFormatError, "truncated fixed64 (needs 8 bytes, 7 left)");
}

TEST(length_delimited) {
  Bytes b = cat({varint(3), Bytes{'a', 'b', 'c'}, varint(0)});
  Reader r(b.data(), b.size(), 50);
  Span s = r.bytes();
  CHECK_EQ(s.size, std::size_t{3});
  CHECK_EQ(s.offset, std::size_t{51});
  CHECK_EQ(std::string(reinterpret_cast<const char*>(s.data), s.size), std::string("abc"));
  CHECK_EQ(r.string(), std::string());
  CHECK(r.at_end());
}

TEST(length_beyond_the_end) {
  Bytes b = cat({varint(4), Bytes{'a', 'b', 'c'}});
  Reader r = reader(b);
  CHECK_THROWS(r.bytes(), ModelFormatError, "length 4 exceeds the 3 bytes left");
  Bytes huge = cat({varint(1ull << 62), Bytes{'a'}});
  Reader rh = reader(huge);
  CHECK_THROWS(rh.bytes(), ModelFormatError, "length 4611686018427387904 exceeds");
  Bytes max = cat({varint(UINT64_MAX), Bytes{'a'}});
  Reader rm = reader(max);
  CHECK_THROWS(rm.bytes(), ModelFormatError, "exceeds");
}

TEST(nested_length_is_checked_against_the_enclosing_message) {
  // outer { inner: 5 bytes declared } but the outer message holds only 2 of them.
  Bytes b = ld(1, cat({tag(2, 2), varint(5), Bytes{'x', 'y'}}));
  b.insert(b.end(), {'z', 'z', 'z'});  // bytes after the outer message must not count
  Reader r = reader(b);
  uint32_t f;
  WireType wt;
  CHECK(r.next(f, wt));
  Reader inner = r.nested();
  CHECK(inner.next(f, wt));
  CHECK_EQ(f, uint32_t{2});
  CHECK_THROWS(inner.bytes(), ModelFormatError, "length 5 exceeds the 2 bytes left");
}

TEST(tags) {
  Bytes b = cat({tag(1, 0), varint(7), tag(536870911, 5), Bytes{0, 0, 0, 0}});
  Reader r = reader(b);
  uint32_t f = 0;
  WireType wt = WireType::Len;
  CHECK(r.next(f, wt));
  CHECK_EQ(f, uint32_t{1});
  CHECK(wt == WireType::Varint);
  CHECK_EQ(r.varint(), uint64_t{7});
  CHECK(r.next(f, wt));
  CHECK_EQ(f, uint32_t{536870911});  // the largest field number
  CHECK(wt == WireType::Fixed32);
  r.fixed32();
  CHECK(!r.next(f, wt));
}

TEST(bad_tags) {
  uint32_t f;
  WireType wt;
  Bytes zero = tag(0, 0);
  Reader r0 = reader(zero);
  CHECK_THROWS(r0.next(f, wt), ModelFormatError, "field number 0 is invalid");
  for (int bad : {6, 7}) {
    Bytes b = tag(3, bad);
    Reader r = reader(b);
    CHECK_THROWS(r.next(f, wt), ModelFormatError, "invalid wire type " + std::to_string(bad) + " for field 3");
  }
  Bytes big = tag(536870912, 0);
  Reader rb = reader(big);
  CHECK_THROWS(rb.next(f, wt), ModelFormatError, "out of range");
  Bytes huge = varint(UINT64_MAX);
  Reader rh = reader(huge);
  CHECK_THROWS(rh.next(f, wt), ModelFormatError, "field number");
}

TEST(skip_every_wire_type) {
  Bytes b = cat({tag(1, 0), varint(UINT64_MAX), tag(2, 1), Bytes(8, 0xAA), tag(3, 2), varint(2), Bytes{1, 2},
                 tag(4, 5), Bytes(4, 0xBB),
                 // a group holding a varint, a nested group and a length-delimited field
                 tag(5, 3), tag(6, 0), varint(1), tag(7, 3), tag(7, 4), ld(8, Bytes{9}), tag(5, 4),
                 tag(9, 0), varint(42)});
  Reader r = reader(b);
  uint32_t f;
  WireType wt;
  int skipped = 0;
  while (r.next(f, wt)) {
    if (f == 9) {
      CHECK_EQ(r.varint(), uint64_t{42});
      continue;
    }
    r.skip(wt, f);
    ++skipped;
  }
  CHECK_EQ(skipped, 5);
  CHECK(r.at_end());
}

TEST(skip_errors) {
  uint32_t f;
  WireType wt;
  Bytes unterminated = cat({tag(5, 3), tag(6, 0), varint(1)});
  Reader r1 = reader(unterminated);
  r1.next(f, wt);
  CHECK_THROWS(r1.skip(wt, f), ModelFormatError, "unterminated group for field 5");
  Bytes stray = tag(5, 4);
  Reader r2 = reader(stray);
  r2.next(f, wt);
  CHECK_THROWS(r2.skip(wt, f), ModelFormatError, "unexpected end-group tag for field 5");
  Bytes bad_inside = cat({tag(5, 3), tag(6, 2), varint(100), Bytes{1}});
  Reader r3 = reader(bad_inside);
  r3.next(f, wt);
  CHECK_THROWS(r3.skip(wt, f), ModelFormatError, "length 100 exceeds");
  Bytes truncated = cat({tag(1, 1), Bytes(3, 0)});
  Reader r4 = reader(truncated);
  r4.next(f, wt);
  CHECK_THROWS(r4.skip(wt, f), ModelFormatError, "truncated fixed64");
}

TEST(group_nesting_limit) {
  uint32_t f;
  WireType wt;
  auto groups = [](int depth) {
    Bytes b;
    for (int i = 0; i < depth; ++i) b = cat({b, tag(5, 3)});
    for (int i = 0; i < depth; ++i) b = cat({b, tag(5, 4)});
    return b;
  };
  Bytes ok = groups(8);
  Reader r1 = reader(ok, 8);
  r1.next(f, wt);
  r1.skip(wt, f);
  CHECK(r1.at_end());
  Bytes deep = groups(9);
  Reader r2 = reader(deep, 8);
  r2.next(f, wt);
  CHECK_THROWS(r2.skip(wt, f), ModelFormatError, "groups nested deeper than 8 levels");
  // A million open groups: refused at the limit, without recursion or allocation.
  Bytes million;
  for (int i = 0; i < 1000000; ++i) million.push_back(0x2B);  // tag(5, 3)
  Reader r3 = reader(million);
  r3.next(f, wt);
  CHECK_THROWS(r3.skip(wt, f), ModelFormatError, "groups nested deeper than 64 levels");
}

TEST(message_nesting_limit) {
  // depth d: d nested messages, each field 1 holding the next one.
  auto nest = [](int d) {
    Bytes b;
    for (int i = 0; i < d; ++i) b = ld(1, b);
    return b;
  };
  // Descends through `levels` nested() calls; returns the depth reached.
  auto descend = [](const Bytes& b, std::size_t max_depth) {
    Reader r = reader(b, max_depth);
    std::size_t depth = 0;
    uint32_t f;
    WireType wt;
    while (r.next(f, wt)) {
      r = r.nested();
      ++depth;
      CHECK_EQ(r.depth(), depth);
    }
    return depth;
  };
  CHECK_EQ(descend(nest(5), 5), std::size_t{5});
  CHECK_THROWS(descend(nest(6), 5), ModelFormatError, "messages nested deeper than 5 levels");
  CHECK_THROWS(descend(nest(10000), 64), ModelFormatError, "nested deeper than 64 levels");
  const Bytes two = nest(2);
  Reader r = reader(two, 7);
  uint32_t f;
  WireType wt;
  r.next(f, wt);
  Reader inner = r.nested();
  CHECK_EQ(inner.max_depth(), std::size_t{7});  // the limit travels with nested readers
}

TEST(empty_input) {
  Reader r(nullptr, 0);
  uint32_t f;
  WireType wt;
  CHECK(r.at_end());
  CHECK(!r.next(f, wt));
  CHECK_EQ(r.remaining(), std::size_t{0});
  CHECK_THROWS(r.varint(), ModelFormatError, "truncated varint");
  CHECK_THROWS(r.bytes(), ModelFormatError, "truncated varint");
}

TEST_MAIN()
