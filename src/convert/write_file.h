// Writing a converter's output without leaving a partial file behind on failure.
#pragma once

#include <string>

#include "gguf/gguf.h"

namespace endless::convert {

// Writes `w` to a temporary file beside `path`, then renames it into place; on failure removes
// the temporary file and throws Error.
void write_gguf_atomically(const gguf::Writer& w, const std::string& path);

}  // namespace endless::convert
