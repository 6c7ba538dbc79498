// The search index of an InfLLM memory: per block and layer one entry of `width` floats (what the
// block is scored by: its mean key, or InfLLM's representative), in pages of `group` consecutive
// blocks. An index that kept every entry in RAM would grow with the stream (640 bytes per block
// of stories260K: 10 MiB after 1M tokens) and scoring every entry would cost O(blocks) per chunk.
// Here RAM holds each complete page's mean entry (the group's summary), the page being filled and
// a small LRU of pages read back; complete pages go to an append-only, checksummed index file
// beside the memory file (a BlockStore of one plane), or, without a memory directory, stay in RAM
// until their blocks are forgotten. A search scores the summaries and then the entries of the
// best groups only (InfLLMPolicy), so both its cost and the RAM grow with blocks / group.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memory/block_store.h"

namespace endless {

class BlockIndex {
 public:
  // dir: where complete pages go ("" = RAM); hot: page-layers read back kept in RAM.
  BlockIndex(int n_layers, int width, int group, const std::string& dir, int hot);

  int width() const { return width_; }
  int group() const { return group_; }
  int64_t size() const { return n_; }                   // blocks indexed
  int64_t first_alive() const { return first_alive_; }  // entries before it are forgotten
  int64_t complete_groups() const { return n_ / group_; }
  // Bytes of entries and summaries held in RAM (pages read back included).
  size_t ram_bytes() const;
  const BlockStore& pages() const { return pages_; }

  // Appends the entries of block size(): n_layers * width floats, layer by layer.
  void append(const float* entries);
  // Forgets the entries of blocks before b (an index without a file, following its blocks).
  void forget_before(int64_t b);

  // The entries of group g in `layer`: group() rows of width floats for a complete group (rows
  // of forgotten blocks included), the rows appended so far for the open one; valid until the
  // next call.
  const float* entries(int layer, int64_t g);
  // The mean entry of complete group g in `layer` (over all its blocks, forgotten or not).
  const float* summary(int layer, int64_t g) const;
  // Per coordinate, the sum of the entries of the blocks not forgotten, in `layer`.
  const std::vector<double>& total(int layer) const { return total_[layer]; }

  // The index's state for a snapshot (the file's name and length, the pages in RAM, the open
  // page, summaries and totals), and its inverse. The file is kept once saved.
  void save(std::vector<int64_t>& s);
  // Reads what save wrote from s[i...] into an empty index; Error when it is inconsistent.
  void load(const std::vector<int64_t>& s, size_t& i);

 private:
  BlockGeometry page_geometry() const;

  int n_layers_, width_, group_, hot_;
  std::string dir_;
  int64_t n_ = 0, first_alive_ = 0;
  BlockStore pages_;                        // complete groups, one "block" each
  std::vector<std::vector<float>> open_;    // per layer: the open group's entries
  std::vector<std::vector<float>> summary_; // per layer: (complete groups - summary_base_) * width
  int64_t summary_base_ = 0;                // group of summary_[l][0]
  std::vector<std::vector<double>> total_;  // per layer: sum of the alive entries
};

}  // namespace endless
