// A minimal test harness for the C++ tests (no external framework): TEST(name) registers a test,
// CHECK* record failures without stopping the test, TEST_MAIN() runs every test and returns
// nonzero when any check failed or a test threw. Each tests/cpp/test_*.cpp is one CTest executable.
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

namespace check {

struct Case {
  const char* name;
  void (*fn)();
};

inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int n = 0;
  return n;
}
struct Register {
  Register(const char* name, void (*fn)()) { cases().push_back({name, fn}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
}

template <class T>
std::string show(const T& v);
template <class T>
std::string show(const std::vector<T>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + show(v[i]);
  return s + "]";
}
template <class T>
std::string show(const T& v) {
  if constexpr (std::is_arithmetic_v<T>) {
    return std::to_string(v);
  } else if constexpr (std::is_convertible_v<T, std::string>) {
    return "\"" + std::string(v) + "\"";
  } else {
    return "<value>";
  }
}

inline int run_all() {
  int crashed = 0;
  for (const auto& c : cases()) {
    const int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      ++crashed;
      std::fprintf(stderr, "[%s] threw unexpectedly: %s\n", c.name, e.what());
    } catch (...) {
      ++crashed;
      std::fprintf(stderr, "[%s] threw a non-std exception\n", c.name);
    }
    std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("%zu tests, %d failed checks, %d unexpected exceptions\n", cases().size(), failures(), crashed);
  return failures() == 0 && crashed == 0 ? 0 : 1;
}

}  // namespace check

#define TEST(name)                                               \
  static void name();                                            \
  static const check::Register name##_registered(#name, &name); \
  static void name()

#define CHECK(cond)                                             \
  do {                                                          \
    if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_EQ(a, b)                                                                         \
  do {                                                                                         \
    const auto& check_a_ = (a);                                                                \
    const auto& check_b_ = (b);                                                                \
    if (!(check_a_ == check_b_))                                                               \
      check::fail(__FILE__, __LINE__, "CHECK_EQ(" #a ", " #b "): " + check::show(check_a_) + \
                                          " != " + check::show(check_b_));                     \
  } while (0)

// Runs `expr`, which must throw `Exc` whose what() contains `fragment`.
#define CHECK_THROWS(expr, Exc, fragment)                                                             \
  do {                                                                                                \
    bool check_thrown_ = false;                                                                       \
    try {                                                                                             \
      (void)(expr);                                                                                   \
    } catch (const Exc& e) {                                                                          \
      check_thrown_ = true;                                                                           \
      if (std::string(e.what()).find(fragment) == std::string::npos)                                  \
        check::fail(__FILE__, __LINE__,                                                               \
                    std::string(#Exc " message lacks \"") + (fragment) + "\": " + e.what());          \
    } catch (const std::exception& e) {                                                               \
      check_thrown_ = true;                                                                           \
      check::fail(__FILE__, __LINE__, std::string(#expr " threw another exception: ") + e.what());   \
    }                                                                                                 \
    if (!check_thrown_) check::fail(__FILE__, __LINE__, #expr " did not throw " #Exc);               \
  } while (0)

#define TEST_MAIN() \
  int main() { return check::run_all(); }

