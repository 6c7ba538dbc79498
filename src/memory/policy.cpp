#include "memory/policy.h"

#include <algorithm>

#include "memory/full.h"
#include "memory/infllm.h"
#include "memory/shift.h"
#include "memory/sink.h"
#include "memory/sirllm.h"
#include "util/error.h"

namespace endless {

void MemoryPolicy::load_state(const std::vector<int64_t>& s) {
  if (s.size() != 1 || s[0] < 0) fail("snapshot: bad state for cache policy ", describe());
  n_seen_ = s[0];
}

const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names = {"full", "window", "sink", "shift", "sirllm", "infllm"};
  return names;
}

std::unique_ptr<MemoryPolicy> make_policy(const MemoryConfig& c) {
  if (c.policy == "full") return std::make_unique<FullPolicy>(c.n_ctx);
  if (c.policy == "sink") return std::make_unique<SinkPolicy>(c.n_sink, c.window, c.max_batch);
  if (c.policy == "window") return std::make_unique<SinkPolicy>(0, c.window, c.max_batch);
  if (c.policy == "shift") return std::make_unique<ShiftPolicy>(c.n_ctx, c.n_keep, c.max_batch);
  if (c.policy == "sirllm") {
    const int64_t keep = c.sir_keep >= 0 ? c.sir_keep : std::max<int64_t>(0, (c.window - c.n_sink) / 4);
    return std::make_unique<SirLLMPolicy>(c.n_sink, c.window, keep, c.sir_decay, c.turn_marker, c.max_batch,
                                          c.sir_decay_every, std::max(0.0, c.sir_max_nll));
  }
  if (c.policy == "infllm") return std::make_unique<InfLLMPolicy>(c);
  fail("unknown cache policy '", c.policy, "' (known: full, window, sink, shift, sirllm, infllm)");
}

}  // namespace endless
