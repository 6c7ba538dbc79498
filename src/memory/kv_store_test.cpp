#include "memory/kv_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "util/error.h"
#include "util/fp16.h"

namespace endless {
namespace {

// A plain model of the store: each slot's key and value as rows of floats.
struct Rows {
  int kv_dim;
  std::vector<float> k, v;
};

float stored(TensorType t, float x) { return t == TensorType::F16 ? fp16_to_fp32(fp32_to_fp16(x)) : x; }

void expect_same(const KVStore& s, const std::vector<Rows>& want, const char* after) {
  std::vector<float> k(s.kv_dim()), v(s.kv_dim());
  for (int l = 0; l < s.n_layers(); ++l)
    for (int64_t slot = 0; slot < s.capacity(); ++slot) {
      s.read_key(l, slot, k.data());
      s.read_value(l, slot, v.data());
      for (int d = 0; d < s.kv_dim(); ++d) {
        ASSERT_EQ(k[d], want[l].k[slot * s.kv_dim() + d])
            << after << ": layer " << l << " slot " << slot << " dim " << d;
        ASSERT_EQ(v[d], want[l].v[slot * s.kv_dim() + d])
            << after << ": layer " << l << " slot " << slot << " dim " << d;
      }
    }
}

// Writes, overlapping moves up and down by any distance (within a tile, across tiles, whole
// tiles), and rows in and out: the tiled keys always read back as the plain rows would.
TEST(KVStore, TiledKeysBehaveAsRows) {
  for (TensorType type : {TensorType::F32, TensorType::F16})
    for (int64_t capacity : {1, 16, 37, 100})
      for (int head_dim : {24, 8}) {  // one head, three
        const int layers = 2, kv_dim = 24;
        KVStore s(layers, kv_dim, capacity, type, head_dim);
        std::vector<Rows> want(layers, Rows{kv_dim, std::vector<float>(capacity * kv_dim, 0.f),
                                            std::vector<float>(capacity * kv_dim, 0.f)});
        std::mt19937 rng(static_cast<uint32_t>(capacity) * 7 + (type == TensorType::F16));
        std::normal_distribution<float> dist;
        std::vector<float> k(kv_dim), v(kv_dim);
        for (int l = 0; l < layers; ++l)
          for (int64_t slot = 0; slot < capacity; ++slot) {
            for (int d = 0; d < kv_dim; ++d) k[d] = dist(rng), v[d] = dist(rng);
            s.write(l, slot, k.data(), v.data());
            for (int d = 0; d < kv_dim; ++d) {
              want[l].k[slot * kv_dim + d] = stored(type, k[d]);
              want[l].v[slot * kv_dim + d] = stored(type, v[d]);
            }
          }
        expect_same(s, want, "writes");
        for (int round = 0; round < 60; ++round) {
          const int64_t n = 1 + rng() % capacity;
          const int64_t from = rng() % (capacity - n + 1), to = rng() % (capacity - n + 1);
          s.move(from, to, n);
          for (Rows& r : want) {
            // Through copies: the ranges may overlap.
            std::vector<float> ks(r.k.begin() + from * kv_dim, r.k.begin() + (from + n) * kv_dim);
            std::vector<float> vs(r.v.begin() + from * kv_dim, r.v.begin() + (from + n) * kv_dim);
            std::copy(ks.begin(), ks.end(), r.k.begin() + to * kv_dim);
            std::copy(vs.begin(), vs.end(), r.v.begin() + to * kv_dim);
          }
          expect_same(s, want, "a move");
        }
        // Rows out and back in, shifted by one slot.
        if (capacity > 1) {
          std::vector<uint8_t> rows((capacity - 1) * kv_dim * s.elem_size());
          for (int l = 0; l < layers; ++l) {
            s.get_keys(l, 1, capacity - 1, rows.data());
            s.set_keys(l, 0, capacity - 1, rows.data());
            std::copy(want[l].k.begin() + kv_dim, want[l].k.end(), want[l].k.begin());
          }
          expect_same(s, want, "rows out and in");
        }
        EXPECT_EQ(s.bytes(),
                  static_cast<size_t>(layers) * kv_dim * s.elem_size() *
                      (capacity + (capacity + KVStore::kKeyTile - 1) / KVStore::kKeyTile * KVStore::kKeyTile));
      }
}

// A head's keys, as attention reads them: tiles of sixteen slots, one after the other.
TEST(KVStore, KeyTilesOfAHead) {
  const int kv_dim = 12, head_dim = 4;
  KVStore s(1, kv_dim, 40, TensorType::F32, head_dim);
  std::vector<float> k(kv_dim), v(kv_dim, 0.f);
  for (int64_t slot = 0; slot < 40; ++slot) {
    for (int d = 0; d < kv_dim; ++d) k[d] = static_cast<float>(1000 * slot + d);
    s.write(0, slot, k.data(), v.data());
  }
  for (int h = 0; h < kv_dim / head_dim; ++h) {
    const kernels::KeyTiles t = s.key_tiles(0, h);
    EXPECT_FALSE(t.f16);
    EXPECT_EQ(t.tile_stride, head_dim * KVStore::kKeyTile);
    const float* data = static_cast<const float*>(t.data);
    for (int64_t slot = 0; slot < 40; ++slot)
      for (int d = 0; d < head_dim; ++d)
        ASSERT_EQ(data[(slot / 16) * t.tile_stride + d * 16 + slot % 16], 1000.f * slot + h * head_dim + d);
  }
  EXPECT_THROW(KVStore(1, 12, 4, TensorType::F32, 5), Error);
}

// written(): one past the highest slot that a write, a move or set_keys reached, in any layer.
TEST(KVStore, CountsTheSlotsWritten) {
  KVStore s(2, 8, 50, TensorType::F16, 4);
  EXPECT_EQ(s.written(), 0);
  std::vector<float> k(8, 1.f), v(8, 2.f);
  s.write(1, 6, k.data(), v.data());
  EXPECT_EQ(s.written(), 7);
  s.write(0, 3, k.data(), v.data());
  EXPECT_EQ(s.written(), 7);
  s.move(2, 20, 5);
  EXPECT_EQ(s.written(), 25);
  s.move(20, 0, 5);
  EXPECT_EQ(s.written(), 25);
  std::vector<uint8_t> rows(3 * 8 * s.elem_size(), 0);
  s.set_keys(0, 40, 3, rows.data());
  EXPECT_EQ(s.written(), 43);
  s.set_keys(0, 49, 0, rows.data());
  EXPECT_EQ(s.written(), 43);
}

}  // namespace
}  // namespace endless
