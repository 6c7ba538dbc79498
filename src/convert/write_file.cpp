#include "convert/write_file.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "util/error.h"

namespace endless::convert {

void write_gguf_atomically(const gguf::Writer& w, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string tmp = cat(path, ".tmp.", ::getpid());
  try {
    w.write(tmp);
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    fail("cannot move the output into place as ", path, ": ", why);
  }
}

}  // namespace endless::convert
