#include "memory/kv_store.h"

#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "util/error.h"

namespace endless {

KVStore::KVStore(int n_layers, int kv_dim, int64_t capacity, TensorType type, int head_dim)
    : n_layers_(n_layers), kv_dim_(kv_dim), head_dim_(head_dim > 0 ? head_dim : kv_dim), capacity_(capacity),
      type_(type) {
  if (type != TensorType::F32 && type != TensorType::F16)
    fail("KV cache type must be f32 or f16, not ", type_name(type));
  if (kv_dim <= 0 || kv_dim % head_dim_ != 0)
    fail("KV cache: head size ", head_dim_, " does not divide the key size ", kv_dim);
  n_heads_ = kv_dim / head_dim_;
  const double gib = static_cast<double>(n_layers) * capacity * kv_dim * elem_size() * 2 / (1 << 30);
  if (capacity <= 0 || gib > 256)
    fail("KV cache of ", capacity, " tokens x ", n_layers, " layers would need ", gib,
         " GiB: use a smaller context (-c) or a bounded cache policy");
  n_tiles_ = (capacity + kKeyTile - 1) / kKeyTile;
  k_.assign(static_cast<size_t>(n_layers) * n_tiles_ * kKeyTile * kv_dim * elem_size(), 0);
  v_.assign(static_cast<size_t>(n_layers) * capacity * kv_dim * elem_size(), 0);
}

// Rows may come from anywhere in a byte buffer (a snapshot file), so their elements are copied
// byte-wise (plain moves once compiled), never read through a possibly misaligned T*.
template <typename T>
void KVStore::put_key(int layer, int64_t slot, int d0, int n, const void* row) {
  const auto* r = static_cast<const uint8_t*>(row);
  T* base = reinterpret_cast<T*>(k_.data());
  for (int d = d0; d < d0 + n;) {  // in runs within one head
    const int h = d / head_dim_, dd = d % head_dim_, len = std::min(head_dim_ - dd, d0 + n - d);
    T* tile = base + key_offset(layer, h, slot) + size_t{kKeyTile} * dd;
    for (int i = 0; i < len; ++i) std::memcpy(tile + i * kKeyTile, r + (d - d0 + i) * sizeof(T), sizeof(T));
    d += len;
  }
}

template <typename T>
void KVStore::take_key(int layer, int64_t slot, int d0, int n, void* row) const {
  auto* r = static_cast<uint8_t*>(row);
  const T* base = reinterpret_cast<const T*>(k_.data());
  for (int d = d0; d < d0 + n;) {
    const int h = d / head_dim_, dd = d % head_dim_, len = std::min(head_dim_ - dd, d0 + n - d);
    const T* tile = base + key_offset(layer, h, slot) + size_t{kKeyTile} * dd;
    for (int i = 0; i < len; ++i) std::memcpy(r + (d - d0 + i) * sizeof(T), tile + i * kKeyTile, sizeof(T));
    d += len;
  }
}

void KVStore::write(int layer, int64_t slot, const float* k, const float* v) {
  written_ = std::max(written_, slot + 1);
  uint8_t* vd = value(layer, slot);
  if (type_ == TensorType::F32) {
    put_key<float>(layer, slot, 0, kv_dim_, k);
    std::memcpy(vd, v, kv_dim_ * 4);
  } else {
    // The vectorized conversion (the same bits as fp32_to_fp16): on the decode step's serial
    // path, where the element-by-element one took 3% of a batched step of 8 sequences.
    uint16_t half[1024];
    for (int d0 = 0; d0 < kv_dim_; d0 += 1024) {
      const int n = std::min(kv_dim_ - d0, 1024);
      kernels::fp32_to_fp16_row(k + d0, half, n);
      put_key<uint16_t>(layer, slot, d0, n, half);
    }
    kernels::fp32_to_fp16_row(v, reinterpret_cast<uint16_t*>(vd), kv_dim_);
  }
}

namespace {

// Dimensions [0, n_dims) of n consecutive slots' keys, from one tile position to another.
template <typename T>
void copy_key_lanes(const T* src, T* dst, int n, int n_dims) {
  for (int d = 0; d < n_dims; ++d)
    std::memmove(dst + d * KVStore::kKeyTile, src + d * KVStore::kKeyTile, n * sizeof(T));
}

}  // namespace

void KVStore::move(int64_t from, int64_t to, int64_t n) {
  if (n <= 0 || from == to) return;
  written_ = std::max(written_, to + n);
  const size_t row = kv_dim_ * elem_size();
  for (int l = 0; l < n_layers_; ++l) {
    std::memmove(value(l, to), value(l, from), n * row);
    // Keys: in runs that stay within one tile at both ends, first to last when moving down and
    // last to first when moving up, so no run overwrites keys still to be moved.
    auto run = [&](int64_t s, int64_t d, int len) {
      for (int h = 0; h < n_heads_; ++h) {
        if (type_ == TensorType::F32) {
          float* base = reinterpret_cast<float*>(k_.data());
          copy_key_lanes(base + key_offset(l, h, s), base + key_offset(l, h, d), len, head_dim_);
        } else {
          uint16_t* base = reinterpret_cast<uint16_t*>(k_.data());
          copy_key_lanes(base + key_offset(l, h, s), base + key_offset(l, h, d), len, head_dim_);
        }
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
  auto* r = static_cast<uint8_t*>(rows);
  const size_t row_bytes = kv_dim_ * elem_size();
  for (int64_t i = 0; i < n; ++i) {
    if (type_ == TensorType::F32) take_key<float>(layer, slot + i, 0, kv_dim_, r + i * row_bytes);
    else take_key<uint16_t>(layer, slot + i, 0, kv_dim_, r + i * row_bytes);
  }
}

void KVStore::set_keys(int layer, int64_t slot, int64_t n, const void* rows) {
  if (n > 0) written_ = std::max(written_, slot + n);
  const auto* r = static_cast<const uint8_t*>(rows);
  const size_t row_bytes = kv_dim_ * elem_size();
  for (int64_t i = 0; i < n; ++i) {
    if (type_ == TensorType::F32) put_key<float>(layer, slot + i, 0, kv_dim_, r + i * row_bytes);
    else put_key<uint16_t>(layer, slot + i, 0, kv_dim_, r + i * row_bytes);
  }
}

void KVStore::read_key(int layer, int64_t slot, float* out) const {
  if (type_ == TensorType::F32) {
    take_key<float>(layer, slot, 0, kv_dim_, out);
  } else {
    uint16_t half[1024];
    for (int d0 = 0; d0 < kv_dim_; d0 += 1024) {
      const int n = std::min(kv_dim_ - d0, 1024);
      take_key<uint16_t>(layer, slot, d0, n, half);
      kernels::fp16_to_fp32_row(half, out + d0, n);
    }
  }
}

kernels::KeyTiles KVStore::key_tiles(int layer, int head) const {
  return {k_.data() + key_offset(layer, head, 0) * elem_size(), static_cast<int64_t>(head_dim_) * kKeyTile,
          type_ == TensorType::F16};
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
