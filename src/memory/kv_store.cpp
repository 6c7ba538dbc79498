#include "memory/kv_store.h"

#include <cstring>

#include "kernels/kernels.h"
#include "util/error.h"

namespace endless {

KVStore::KVStore(int n_layers, int kv_dim, int64_t capacity, TensorType type)
    : n_layers_(n_layers), kv_dim_(kv_dim), capacity_(capacity), type_(type) {
  if (type != TensorType::F32 && type != TensorType::F16)
    fail("KV cache type must be f32 or f16, not ", type_name(type));
  const double gib = static_cast<double>(n_layers) * capacity * kv_dim * elem_size() * 2 / (1 << 30);
  if (capacity <= 0 || gib > 256)
    fail("KV cache of ", capacity, " tokens x ", n_layers, " layers would need ", gib,
         " GiB: use a smaller context (-c) or a bounded cache policy");
  const size_t n = static_cast<size_t>(n_layers) * capacity * kv_dim * elem_size();
  k_.assign(n, 0);
  v_.assign(n, 0);
}

void KVStore::write(int layer, int64_t slot, const float* k, const float* v) {
  uint8_t* kd = key(layer, slot);
  uint8_t* vd = value(layer, slot);
  if (type_ == TensorType::F32) {
    std::memcpy(kd, k, kv_dim_ * 4);
    std::memcpy(vd, v, kv_dim_ * 4);
  } else {
    // The vectorized conversion (the same bits as fp32_to_fp16): on the decode step's serial
    // path, where the element-by-element one took 3% of a batched step of 8 sequences.
    kernels::fp32_to_fp16_row(k, reinterpret_cast<uint16_t*>(kd), kv_dim_);
    kernels::fp32_to_fp16_row(v, reinterpret_cast<uint16_t*>(vd), kv_dim_);
  }
}

void KVStore::move(int64_t from, int64_t to, int64_t n) {
  if (n <= 0 || from == to) return;
  const size_t row = kv_dim_ * elem_size();
  for (int l = 0; l < n_layers_; ++l) {
    std::memmove(key(l, to), key(l, from), n * row);
    std::memmove(value(l, to), value(l, from), n * row);
  }
}

void KVStore::read_key(int layer, int64_t slot, float* out) const {
  const uint8_t* p = key(layer, slot);
  if (type_ == TensorType::F32) {
    std::memcpy(out, p, kv_dim_ * 4);
  } else {
    kernels::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(p), out, kv_dim_);
  }
}

void KVStore::read_value(int layer, int64_t slot, float* out) const {
  const uint8_t* p = value(layer, slot);
  if (type_ == TensorType::F32) {
    std::memcpy(out, p, kv_dim_ * 4);
  } else {
    kernels::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(p), out, kv_dim_);
  }
}

}  // namespace endless
