// The evicted blocks of an InfLLM sequence: keys and values of block_size tokens in every layer.
// Blocks stay in RAM up to a byte budget; older ones then go to an append-only file in a
// directory (or, with none, are forgotten), read back through a small LRU of hot block-layers.
// RAM stays bounded however long the stream.
//
// The file: a 64-byte header (magic "ENDLSMEM", version, geometry with its planes, its own checksum), then one
// record per block at a fixed stride; a record holds, per layer, the layer's keys and values and
// their FNV-1a checksum. A block-layer is checked every time it is read from the file, so a
// corrupt or truncated file gives an Error naming the file, the block and the layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace endless {

struct BlockGeometry {
  int n_layers = 0;
  int kv_dim = 0;
  int block_size = 0;
  int elem_size = 0;  // bytes per key or value element (2: F16, 4: F32)
  // 2: a block of keys then values (InfLLM's blocks); 1: one plane of rows (a page of the block
  // index, BlockIndex: block_size entries of kv_dim floats).
  int planes = 2;
  // Bytes of one layer of one block: `planes` planes of block_size rows of kv_dim each.
  size_t layer_bytes() const { return static_cast<size_t>(planes) * block_size * kv_dim * elem_size; }
  size_t block_bytes() const { return layer_bytes() * n_layers; }
};

class BlockStore {
 public:
  static constexpr uint32_t kVersion = 2;  // 2: the geometry names its planes

  // ram_bytes: most bytes of blocks held in RAM; dir: where blocks beyond it go ("" = forget
  // the oldest instead); hot: block-layers read from the file kept in RAM (LRU); ext: the
  // extension of the file's name.
  BlockStore(const BlockGeometry& g, size_t ram_bytes, const std::string& dir, int hot,
             const std::string& ext = "mem");
  // Reopens `path` (a file this class wrote) holding at least `n_blocks` blocks, read-only for
  // them; new blocks are appended after them. Error for a missing, foreign or truncated file.
  static BlockStore reopen(const BlockGeometry& g, size_t ram_bytes, const std::string& path,
                           int64_t n_blocks, int hot);
  BlockStore(BlockStore&& o) noexcept;
  BlockStore& operator=(BlockStore&& o) noexcept;
  BlockStore(const BlockStore&) = delete;
  BlockStore& operator=(const BlockStore&) = delete;
  ~BlockStore();

  const BlockGeometry& geometry() const { return g_; }
  int64_t size() const { return n_blocks_; }          // blocks appended so far
  int64_t first_alive() const { return first_alive_; }  // blocks before it were forgotten
  int64_t on_disk() const { return ram_first_ - first_alive_; }
  int64_t in_ram() const { return n_blocks_ - ram_first_; }
  size_t ram_bytes() const;  // blocks and hot cache
  const std::string& path() const { return path_; }
  int64_t disk_reads() const { return disk_reads_; }
  // Keep the file when this store is destroyed (a snapshot refers to it).
  void keep_file() { keep_file_ = true; }
  // Writes everything appended so far to the file (if there is one) and syncs it.
  void sync();

  // On an empty store: numbers the next block n, as if blocks [0, n) had been forgotten.
  void skip(int64_t n);
  // Forgets the blocks before b that are still in RAM (a store without a file: the index of
  // blocks another store has forgotten).
  void forget_before(int64_t b);
  // Appends a block (geometry().block_bytes(): layer by layer, keys then values).
  void append(const uint8_t* data);
  // Keys (block_size rows) then values of `layer` in block b (first_alive() <= b < size()),
  // valid until the next call on this store.
  const uint8_t* layer(int64_t b, int layer);

 private:
  BlockStore() = default;
  void open_file();
  void spill_oldest();
  uint64_t record_offset(int64_t b) const;
  size_t record_bytes() const { return g_.n_layers * (g_.layer_bytes() + 8); }
  void close();

  BlockGeometry g_;
  size_t ram_budget_ = 0;
  std::string dir_, path_, ext_ = "mem";
  int fd_ = -1;
  bool keep_file_ = false;
  int64_t n_blocks_ = 0, first_alive_ = 0, ram_first_ = 0;
  std::deque<std::vector<uint8_t>> ram_;  // blocks [ram_first_, n_blocks_)
  int hot_cap_ = 0;
  std::list<int64_t> lru_;  // keys b * n_layers + layer, most recent first
  std::unordered_map<int64_t, std::pair<std::vector<uint8_t>, std::list<int64_t>::iterator>> hot_;
  int64_t disk_reads_ = 0;
};

}  // namespace endless
