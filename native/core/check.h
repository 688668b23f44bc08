// Cheap invariant checks for the native side. The TypeScript layer validates user input
// first; these catch a broken caller and name the argument with both values.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lowrank {

// Thrown for a value outside its allowed range; surfaces in JavaScript as a RangeError.
struct RangeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown for an argument of the wrong kind; surfaces in JavaScript as a TypeError.
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename A, typename B>
[[noreturn]] void check_eq_fail(const char* what, const A& a, const char* a_expr, const B& b, const char* b_expr) {
  std::ostringstream s;
  s << what << ": expected " << a_expr << " == " << b_expr << " but got " << a << " vs " << b;
  throw RangeError(s.str());
}

}  // namespace lowrank

#define LR_CHECK_EQ(what, a, b)                                      \
  do {                                                               \
    if (!((a) == (b))) ::lowrank::check_eq_fail(what, a, #a, b, #b); \
  } while (0)

#define LR_CHECK(what, cond, msg)                                               \
  do {                                                                          \
    if (!(cond)) throw ::lowrank::RangeError(std::string(what) + ": " + (msg)); \
  } while (0)
