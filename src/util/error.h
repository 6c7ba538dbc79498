// One exception type for every error a user can cause (bad files, bad flags, bad requests).
// The message names the problem; callers at the edge (CLI, server) print it and fail cleanly.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace endless {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything streamable into a string: cat("tensor ", name, " has ", n, " dims").
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace endless
