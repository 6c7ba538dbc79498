// Key/value storage of one sequence: per layer, `capacity` slots of kv_dim keys and values, in F32
// or F16. Allocated once, at its largest, when the sequence is created: a policy's memory bound is
// this allocation, and nothing grows while a stream runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gguf/tensor_type.h"

namespace endless {

class KVStore {
 public:
  KVStore() = default;
  KVStore(int n_layers, int kv_dim, int64_t capacity, TensorType type);

  int n_layers() const { return n_layers_; }
  int kv_dim() const { return kv_dim_; }
  int64_t capacity() const { return capacity_; }
  TensorType type() const { return type_; }
  size_t bytes() const { return k_.size() * 2 * elem_size(); }
  size_t elem_size() const { return type_ == TensorType::F16 ? 2 : 4; }

  // Writes one slot's key and value (floats, converted to the storage type).
  void write(int layer, int64_t slot, const float* k, const float* v);
  // Copies n slots from `from` to `to` in every layer (ranges may overlap).
  void move(int64_t from, int64_t to, int64_t n);

  const uint8_t* key(int layer, int64_t slot) const { return at(k_, layer, slot); }
  const uint8_t* value(int layer, int64_t slot) const { return at(v_, layer, slot); }
  uint8_t* key(int layer, int64_t slot) { return const_cast<uint8_t*>(at(k_, layer, slot)); }
  uint8_t* value(int layer, int64_t slot) { return const_cast<uint8_t*>(at(v_, layer, slot)); }
  // Reads one key back as floats.
  void read_key(int layer, int64_t slot, float* out) const;
  void read_value(int layer, int64_t slot, float* out) const;

 private:
  const uint8_t* at(const std::vector<uint8_t>& buf, int layer, int64_t slot) const {
    return buf.data() + ((static_cast<size_t>(layer) * capacity_ + slot) * kv_dim_) * elem_size();
  }
  int n_layers_ = 0;
  int kv_dim_ = 0;
  int64_t capacity_ = 0;
  TensorType type_ = TensorType::F32;
  std::vector<uint8_t> k_, v_;
};

}  // namespace endless
