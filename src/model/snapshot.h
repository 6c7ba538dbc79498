// Snapshots of a sequence (its cache policy's state and its keys and values) to a file, so a
// stream survives a restart. The file is versioned and checksummed; it is written to a temporary
// name, synced and renamed, so a crash leaves either the old snapshot or the new one, whole.
#pragma once

#include <memory>
#include <string>

#include "model/forward.h"

namespace endless {

void save_sequence(const Sequence& seq, const ModelConfig& model, const std::string& path);

// Rebuilds a sequence for `engine`'s model. Throws Error naming the problem for a missing,
// truncated, corrupt or foreign snapshot (wrong magic, version, checksum or model shape).
std::unique_ptr<Sequence> load_sequence(const Engine& engine, const std::string& path);

}  // namespace endless
