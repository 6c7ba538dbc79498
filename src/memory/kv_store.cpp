#include "memory/kv_store.h"

#include <algorithm>
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
  n_tiles_ = (capacity + kKeyTile - 1) / kKeyTile;
  k_.assign(static_cast<size_t>(n_layers) * n_tiles_ * kKeyTile * kv_dim * elem_size(), 0);
  v_.assign(static_cast<size_t>(n_layers) * capacity * kv_dim * elem_size(), 0);
}

void KVStore::write(int layer, int64_t slot, const float* k, const float* v) {
  uint8_t* vd = value(layer, slot);
  if (type_ == TensorType::F32) {
    set_keys(layer, slot, 1, k);
    std::memcpy(vd, v, kv_dim_ * 4);
  } else {
    // The vectorized conversion (the same bits as fp32_to_fp16): on the decode step's serial
    // path, where the element-by-element one took 3% of a batched step of 8 sequences.
    uint16_t half[kKeyTile * 64];
    for (int d0 = 0; d0 < kv_dim_; d0 += kKeyTile * 64) {
      const int n = std::min(kv_dim_ - d0, kKeyTile * 64);
      kernels::fp32_to_fp16_row(k + d0, half, n);
      uint16_t* kd = reinterpret_cast<uint16_t*>(k_.data()) + key_offset(layer, slot) + size_t{kKeyTile} * d0;
      for (int d = 0; d < n; ++d) kd[d * kKeyTile] = half[d];
    }
    kernels::fp32_to_fp16_row(v, reinterpret_cast<uint16_t*>(vd), kv_dim_);
  }
}

namespace {

// Dimension d of n consecutive slots' keys, from one tile position to another (elements of type
// T, kKeyTile apart per dimension).
template <typename T>
void copy_key_lanes(const T* src, T* dst, int n, int kv_dim) {
  for (int d = 0; d < kv_dim; ++d) std::memmove(dst + d * KVStore::kKeyTile, src + d * KVStore::kKeyTile, n * sizeof(T));
}

}  // namespace

void KVStore::move(int64_t from, int64_t to, int64_t n) {
  if (n <= 0 || from == to) return;
  const size_t row = kv_dim_ * elem_size();
  for (int l = 0; l < n_layers_; ++l) {
    std::memmove(value(l, to), value(l, from), n * row);
    // Keys: in runs that stay within one tile at both ends, first to last when moving down and
    // last to first when moving up, so no run overwrites keys still to be moved.
    auto run = [&](int64_t s, int64_t d, int len) {
      if (type_ == TensorType::F32) {
        float* base = reinterpret_cast<float*>(k_.data());
        copy_key_lanes(base + key_offset(l, s), base + key_offset(l, d), len, kv_dim_);
      } else {
        uint16_t* base = reinterpret_cast<uint16_t*>(k_.data());
        copy_key_lanes(base + key_offset(l, s), base + key_offset(l, d), len, kv_dim_);
      }
    };
    if (to < from) {
      for (int64_t i = 0; i < n;) {
        const int len = static_cast<int>(std::min({n - i, kKeyTile - (from + i) % kKeyTile, kKeyTile - (to + i) % kKeyTile}));
        run(from + i, to + i, len);
        i += len;
      }
    } else {
      for (int64_t i = n; i > 0;) {  // [i - len, i) ends where a tile of either range starts
        const int64_t s_in = (from + i - 1) % kKeyTile + 1, d_in = (to + i - 1) % kKeyTile + 1;
        const int len = static_cast<int>(std::min({i, s_in, d_in}));
        run(from + i - len, to + i - len, len);
        i -= len;
      }
    }
  }
}

void KVStore::get_keys(int layer, int64_t slot, int64_t n, void* rows) const {
  for (int64_t i = 0; i < n; ++i) {
    const size_t o = key_offset(layer, slot + i);
    if (type_ == TensorType::F32) {
      const float* k = reinterpret_cast<const float*>(k_.data()) + o;
      float* r = static_cast<float*>(rows) + i * kv_dim_;
      for (int d = 0; d < kv_dim_; ++d) r[d] = k[d * kKeyTile];
    } else {
      const uint16_t* k = reinterpret_cast<const uint16_t*>(k_.data()) + o;
      uint16_t* r = static_cast<uint16_t*>(rows) + i * kv_dim_;
      for (int d = 0; d < kv_dim_; ++d) r[d] = k[d * kKeyTile];
    }
  }
}

void KVStore::set_keys(int layer, int64_t slot, int64_t n, const void* rows) {
  for (int64_t i = 0; i < n; ++i) {
    const size_t o = key_offset(layer, slot + i);
    if (type_ == TensorType::F32) {
      float* k = reinterpret_cast<float*>(k_.data()) + o;
      const float* r = static_cast<const float*>(rows) + i * kv_dim_;
      for (int d = 0; d < kv_dim_; ++d) k[d * kKeyTile] = r[d];
    } else {
      uint16_t* k = reinterpret_cast<uint16_t*>(k_.data()) + o;
      const uint16_t* r = static_cast<const uint16_t*>(rows) + i * kv_dim_;
      for (int d = 0; d < kv_dim_; ++d) k[d * kKeyTile] = r[d];
    }
  }
}

void KVStore::read_key(int layer, int64_t slot, float* out) const {
  if (type_ == TensorType::F32) {
    get_keys(layer, slot, 1, out);
  } else {
    uint16_t half[kKeyTile * 64];
    for (int d0 = 0; d0 < kv_dim_; d0 += kKeyTile * 64) {
      const int n = std::min(kv_dim_ - d0, kKeyTile * 64);
      const uint16_t* k = reinterpret_cast<const uint16_t*>(k_.data()) + key_offset(layer, slot) + size_t{kKeyTile} * d0;
      for (int d = 0; d < n; ++d) half[d] = k[d * kKeyTile];
      kernels::fp16_to_fp32_row(half, out + d0, n);
    }
  }
}

kernels::KeyTiles KVStore::key_tiles(int layer, int first_dim) const {
  return {k_.data() + (key_offset(layer, 0) + size_t{kKeyTile} * first_dim) * elem_size(),
          static_cast<int64_t>(kv_dim_) * kKeyTile, type_ == TensorType::F16};
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
