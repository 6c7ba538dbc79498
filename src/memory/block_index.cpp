#include "memory/block_index.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "util/error.h"

namespace endless {
namespace {

[[noreturn]] void bad_state() { fail("snapshot: inconsistent state for the infllm block index"); }

int64_t next(const std::vector<int64_t>& s, size_t& i) {
  if (i >= s.size()) bad_state();
  return s[i++];
}

void put_floats(std::vector<int64_t>& s, const float* p, size_t n) {
  s.push_back(static_cast<int64_t>(n));
  for (size_t k = 0; k < n; ++k) s.push_back(std::bit_cast<int32_t>(p[k]));
}

void get_floats(const std::vector<int64_t>& s, size_t& i, std::vector<float>& out, size_t max) {
  const int64_t n = next(s, i);
  if (n < 0 || static_cast<uint64_t>(n) > max || static_cast<uint64_t>(n) > s.size() - i) bad_state();
  out.resize(static_cast<size_t>(n));
  for (float& x : out) x = std::bit_cast<float>(static_cast<int32_t>(next(s, i)));
}

}  // namespace

BlockIndex::BlockIndex(int n_layers, int width, int group, const std::string& dir, int hot)
    : n_layers_(n_layers),
      width_(width),
      group_(group),
      hot_(hot),
      dir_(dir),
      // With a directory every complete page goes to the file at once (RAM budget 0); without,
      // pages stay in RAM until forget_before drops them.
      pages_(page_geometry(), dir.empty() ? std::numeric_limits<size_t>::max() : 0, dir, hot, "idx"),
      open_(n_layers),
      summary_(n_layers),
      total_(n_layers, std::vector<double>(width, 0.0)) {
  if (group < 1) fail("infllm cache: index groups must hold at least one block");
}

BlockGeometry BlockIndex::page_geometry() const {
  BlockGeometry g;
  g.n_layers = n_layers_;
  g.kv_dim = width_;
  g.block_size = group_;
  g.elem_size = 4;
  g.planes = 1;
  return g;
}

size_t BlockIndex::ram_bytes() const {
  size_t b = pages_.ram_bytes();
  for (int l = 0; l < n_layers_; ++l)
    b += (open_[l].size() + summary_[l].size()) * sizeof(float) + total_[l].size() * sizeof(double);
  return b;
}

void BlockIndex::append(const float* entries) {
  for (int l = 0; l < n_layers_; ++l) {
    const float* e = entries + static_cast<size_t>(l) * width_;
    open_[l].insert(open_[l].end(), e, e + width_);
    for (int d = 0; d < width_; ++d) total_[l][d] += e[d];
  }
  ++n_;
  if (n_ % group_ != 0) return;
  // The group is complete: its summary stays, its page goes to the store.
  std::vector<uint8_t> page(page_geometry().block_bytes());
  for (int l = 0; l < n_layers_; ++l) {
    std::memcpy(page.data() + static_cast<size_t>(l) * group_ * width_ * sizeof(float), open_[l].data(),
                open_[l].size() * sizeof(float));
    std::vector<float>& sum = summary_[l];
    const size_t at = sum.size();
    sum.resize(at + width_);
    for (int d = 0; d < width_; ++d) {
      double acc = 0;
      for (int j = 0; j < group_; ++j) acc += open_[l][static_cast<size_t>(j) * width_ + d];
      sum[at + d] = static_cast<float>(acc / group_);
    }
    open_[l].clear();
  }
  pages_.append(page.data());
}

void BlockIndex::forget_before(int64_t b) {
  b = std::min(b, n_);
  if (b <= first_alive_) return;
  for (int l = 0; l < n_layers_; ++l) {
    for (int64_t x = first_alive_; x < b;) {
      const int64_t g = x / group_, end = std::min(b, (g + 1) * group_);
      const float* e = entries(l, g);
      for (; x < end; ++x)
        for (int d = 0; d < width_; ++d) total_[l][d] -= e[static_cast<size_t>(x - g * group_) * width_ + d];
    }
  }
  first_alive_ = b;
  const int64_t dead_groups = b / group_;  // groups wholly forgotten
  if (dir_.empty()) pages_.forget_before(dead_groups);
  // Summaries are dropped in bulk, once the dead are half of those held.
  const int64_t dead = dead_groups - summary_base_;
  if (dead > 0 && dead * 2 >= complete_groups() - summary_base_) {
    for (auto& sum : summary_) sum.erase(sum.begin(), sum.begin() + dead * width_);
    summary_base_ += dead;
  }
}

const float* BlockIndex::entries(int layer, int64_t g) {
  if (g == n_ / group_) return open_[layer].data();
  return reinterpret_cast<const float*>(pages_.layer(g, layer));
}

const float* BlockIndex::summary(int layer, int64_t g) const {
  return summary_[layer].data() + static_cast<size_t>(g - summary_base_) * width_;
}

void BlockIndex::save(std::vector<int64_t>& s) {
  const bool file = !pages_.path().empty();
  if (file) {
    pages_.sync();
    pages_.keep_file();  // a snapshot now refers to it
  }
  s.push_back(n_);
  s.push_back(first_alive_);
  s.push_back(summary_base_);
  s.push_back(pages_.first_alive());
  s.push_back(pages_.on_disk());
  const std::string& path = file ? pages_.path() : std::string();
  s.push_back(static_cast<int64_t>(path.size()));
  for (char c : path) s.push_back(static_cast<unsigned char>(c));
  const size_t page_floats = static_cast<size_t>(group_) * width_;
  for (int64_t g = pages_.first_alive() + pages_.on_disk(); g < pages_.size(); ++g)
    for (int l = 0; l < n_layers_; ++l) put_floats(s, reinterpret_cast<const float*>(pages_.layer(g, l)), page_floats);
  for (int l = 0; l < n_layers_; ++l) {
    put_floats(s, open_[l].data(), open_[l].size());
    put_floats(s, summary_[l].data(), summary_[l].size());
    for (double x : total_[l]) s.push_back(std::bit_cast<int64_t>(x));
  }
}

void BlockIndex::load(const std::vector<int64_t>& s, size_t& i) {
  if (n_ != 0) fail("block index: load into an index that holds entries");
  const int64_t n = next(s, i), first_alive = next(s, i), summary_base = next(s, i);
  const int64_t pages_first = next(s, i), on_disk = next(s, i), path_len = next(s, i);
  const int64_t groups = n / group_;
  if (n < 0 || first_alive < 0 || first_alive > n || summary_base < 0 || summary_base > groups ||
      pages_first < 0 || pages_first > groups || on_disk < 0 || pages_first + on_disk > groups ||
      path_len < 0 || path_len > 4096 || (on_disk > 0) != (path_len > 0))
    bad_state();
  std::string path;
  for (int64_t k = 0; k < path_len; ++k) path.push_back(static_cast<char>(next(s, i)));
  if (on_disk > 0) {
    if (pages_first != 0) bad_state();
    pages_ = BlockStore::reopen(page_geometry(), 0, path, on_disk, hot_);
  } else {
    pages_.skip(pages_first);
  }
  const size_t page_floats = static_cast<size_t>(group_) * width_;
  std::vector<float> buf;
  std::vector<uint8_t> page(page_geometry().block_bytes());
  for (int64_t g = pages_first + on_disk; g < groups; ++g) {
    for (int l = 0; l < n_layers_; ++l) {
      get_floats(s, i, buf, page_floats);
      if (buf.size() != page_floats) bad_state();
      std::memcpy(page.data() + l * page_floats * sizeof(float), buf.data(), page_floats * sizeof(float));
    }
    pages_.append(page.data());
  }
  for (int l = 0; l < n_layers_; ++l) {
    get_floats(s, i, open_[l], page_floats);
    get_floats(s, i, summary_[l], static_cast<size_t>(groups - summary_base) * width_);
    if (open_[l].size() != static_cast<size_t>(n - groups * group_) * width_ ||
        summary_[l].size() != static_cast<size_t>(groups - summary_base) * width_)
      bad_state();
    for (double& x : total_[l]) x = std::bit_cast<double>(next(s, i));
  }
  n_ = n;
  first_alive_ = first_alive;
  summary_base_ = summary_base;
}

}  // namespace endless
