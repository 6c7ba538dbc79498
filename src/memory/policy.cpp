#include "memory/policy.h"

#include "memory/full.h"
#include "memory/shift.h"
#include "memory/sink.h"
#include "util/error.h"

namespace endless {

void MemoryPolicy::load_state(const std::vector<int64_t>& s) {
  if (s.size() != 1 || s[0] < 0) fail("snapshot: bad state for cache policy ", describe());
  n_seen_ = s[0];
}

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {"full", "window", "sink", "shift"};
  return names;
}

std::unique_ptr<MemoryPolicy> make_policy(const MemoryConfig& c) {
  if (c.policy == "full") return std::make_unique<FullPolicy>(c.n_ctx);
  if (c.policy == "sink") return std::make_unique<SinkPolicy>(c.n_sink, c.window, c.max_batch);
  if (c.policy == "window") return std::make_unique<SinkPolicy>(0, c.window, c.max_batch);
  if (c.policy == "shift") return std::make_unique<ShiftPolicy>(c.n_ctx, c.n_keep, c.max_batch);
  fail("unknown cache policy '", c.policy, "' (known: full, window, sink, shift)");
}

}  // namespace endless
