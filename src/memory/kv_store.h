// Key/value storage of one sequence: per layer, `capacity` slots of kv_dim keys and values, in F32
// or F16. Allocated once, at its largest, when the sequence is created: a policy's memory bound is
// this allocation, and nothing grows while a stream runs.
//
// Values are rows, one per slot. Keys are kept as attention reads them: per layer and KV head, in
// tiles of kKeyTile consecutive slots, each tile a [dimension][slot] block, so dimension d of
// sixteen keys is one vector (kernels::KeyTiles), and a head's tiles follow each other. Attention
// then scores a query against many keys side by side straight from the cache, reading the head's
// keys front to back, without transposing them at every step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gguf/tensor_type.h"
#include "kernels/attention.h"
#include "util/aligned.h"

namespace endless {

class KVStore {
 public:
  static constexpr int kKeyTile = kernels::kKeyTile;

  KVStore() = default;
  // kv_dim = n_kv_heads * head_dim (head_dim 0: one head of kv_dim).
  KVStore(int n_layers, int kv_dim, int64_t capacity, TensorType type, int head_dim = 0);

  int n_layers() const { return n_layers_; }
  int kv_dim() const { return kv_dim_; }
  int64_t capacity() const { return capacity_; }
  TensorType type() const { return type_; }
  size_t bytes() const { return k_.size() + v_.size(); }  // allocated for keys and values
  size_t elem_size() const { return type_ == TensorType::F16 ? 2 : 4; }
  // One past the highest slot written so far (write, move, set_keys), in any layer: the slots
  // from here on hold zeros as constructed, so a snapshot leaves them out.
  int64_t written() const { return written_; }

  // Writes one slot's key and value (floats, converted to the storage type).
  void write(int layer, int64_t slot, const float* k, const float* v);
  // Copies n slots from `from` to `to` in every layer (ranges may overlap).
  void move(int64_t from, int64_t to, int64_t n);

  // Keys of n slots from `slot` on, as rows of kv_dim values of the storage type (slot by slot),
  // out of and into the tiles.
  void get_keys(int layer, int64_t slot, int64_t n, void* rows) const;
  void set_keys(int layer, int64_t slot, int64_t n, const void* rows);
  // Reads one key back as floats.
  void read_key(int layer, int64_t slot, float* out) const;
  // The keys of one layer's KV head, for attention.
  kernels::KeyTiles key_tiles(int layer, int head) const;

  const uint8_t* value(int layer, int64_t slot) const { return at(v_, layer, slot); }
  // For writing values of slots whose keys were just set (set_keys), which counts them as written.
  uint8_t* value(int layer, int64_t slot) { return const_cast<uint8_t*>(at(v_, layer, slot)); }
  void read_value(int layer, int64_t slot, float* out) const;

 private:
  const uint8_t* at(const HugePageVector<uint8_t>& buf, int layer, int64_t slot) const {
    return buf.data() + ((static_cast<size_t>(layer) * capacity_ + slot) * kv_dim_) * elem_size();
  }
  // Element offset of dimension 0 of head `head` of `slot`'s key; the head's dimension d is
  // d * kKeyTile elements further on.
  size_t key_offset(int layer, int head, int64_t slot) const {
    return ((static_cast<size_t>(layer) * n_heads_ + head) * n_tiles_ + slot / kKeyTile) * head_dim_ * kKeyTile +
           slot % kKeyTile;
  }
  // Dimensions [d0, d0 + n) of one slot's key between a row of them (elements of type T, at any
  // byte address) and the tiles.
  template <typename T>
  void put_key(int layer, int64_t slot, int d0, int n, const void* row);
  template <typename T>
  void take_key(int layer, int64_t slot, int d0, int n, void* row) const;
  int n_layers_ = 0;
  int kv_dim_ = 0;
  int head_dim_ = 0, n_heads_ = 0;
  int64_t capacity_ = 0;
  int64_t n_tiles_ = 0;  // key tiles per layer and head: capacity rounded up to whole tiles
  int64_t written_ = 0;
  TensorType type_ = TensorType::F32;
  HugePageVector<uint8_t> k_, v_;  // huge pages (each step reads them all), on cache lines at least
};

}  // namespace endless
