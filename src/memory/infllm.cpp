#include "memory/infllm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>

#include "util/error.h"
#include "util/fp16.h"

namespace endless {
namespace {

std::atomic<uint64_t> next_policy_id{1};

// The first element of a saved state: its format (negative, unlike the stream position that began
// the states of builds before the block index).
constexpr int64_t kStateFormat = -2;

// Fixed point of the attention-mass sums: weights in [0, 1] times 2^32, truncated. A float
// times a power of two is exact, so every thread adds exactly the same integers.
constexpr float kMassScale = 4294967296.0f;

void put_bytes(std::vector<int64_t>& s, const uint8_t* p, size_t n) {
  s.push_back(static_cast<int64_t>(n));
  for (size_t i = 0; i < n; i += 8) {
    int64_t w = 0;
    std::memcpy(&w, p + i, std::min<size_t>(8, n - i));
    s.push_back(w);
  }
}

}  // namespace

InfLLMPolicy::InfLLMPolicy(const MemoryConfig& c)
    : cfg_(c),
      n_init_(c.n_sink),
      local_(c.window - c.n_sink),
      block_(c.block_size),
      reps_(c.block_reps),
      top_k_(c.top_k),
      skip_layers_(c.mem_skip_layers),
      retrieve_every_(c.mem_retrieve_every),
      by_keys_(c.mem_score == "keys"),
      max_batch_(c.max_batch),
      id_(next_policy_id++) {
  if (n_init_ < 0) fail("infllm cache: the number of sink tokens must not be negative");
  if (local_ < 1)
    fail("infllm cache: the window (", c.window, ") must be larger than the sink count (", n_init_, ")");
  if (block_ < 1 || block_ > 65536) fail("infllm cache: the block size must be in [1, 65536], got ", block_);
  if (reps_ < 1 || reps_ > block_)
    fail("infllm cache: representative tokens per block must be in [1, ", block_, "], got ", reps_);
  if (top_k_ < 0 || top_k_ > 4096) fail("infllm cache: top-k must be in [0, 4096], got ", top_k_);
  if (max_batch_ < 1) fail("infllm cache: batch size must be positive");
  if (c.mem_score != "query" && c.mem_score != "keys")
    fail("infllm cache: the block score must be 'query' or 'keys', got '", c.mem_score, "'");
  if (c.mem_skip_layers < 0) fail("infllm cache: the number of layers without retrieval must not be negative");
  if (c.mem_retrieve_every < 1) fail("infllm cache: the retrieval stride must be at least 1 token");
  if (c.mem_key_window < 1) fail("infllm cache: the key window must hold at least one token");
  if (!(c.mem_key_halflife >= 0) || !std::isfinite(c.mem_key_halflife))
    fail("infllm cache: the key half-life must be a finite number of tokens, 0 or more");
  if (c.mem_consensus_from < -1) fail("infllm cache: the first layer of the consensus must be a layer (or -1)");
  if (c.mem_key_parts < 1 || block_ % c.mem_key_parts != 0)
    fail("infllm cache: the key parts per block (", c.mem_key_parts, ") must divide the block size (", block_, ")");
  if (c.mem_distance < 0) fail("infllm cache: the memory distance must not be negative");
  if (c.mem_ram_mib < 0) fail("infllm cache: the RAM budget must not be negative");
  if (c.mem_hot_blocks < 1) fail("infllm cache: the hot-block cache needs at least one entry");
  if (c.mem_index_group < 1 || c.mem_index_group > (1 << 20))
    fail("infllm cache: index groups must hold 1 to 1048576 blocks, got ", c.mem_index_group);
  if (c.mem_index_beam < 1) fail("infllm cache: the index search must look into at least one group");
  if (c.mem_consensus && c.mem_score != "keys")
    fail("infllm cache: choosing blocks by every layer's scores needs --mem-score keys (queries exist for one layer at a time)");
  consensus_ = c.mem_consensus;
  if (c.mem_consensus_from >= 0 && !c.mem_consensus)
    fail("infllm cache: --mem-consensus-from needs --mem-consensus");
  if ((c.mem_key_whiten || c.mem_key_halflife > 0) && c.mem_score != "keys")
    fail("infllm cache: the key half-life and whitening apply to --mem-score keys only");
  l0_ = n_init_ + static_cast<int64_t>(top_k_) * block_;
  region_cap_ = local_ + block_ + max_batch_;
  region_first_ = next_block_ = n_init_;
}

InfLLMPolicy::~InfLLMPolicy() = default;

std::string InfLLMPolicy::describe() const {
  return cat("infllm ", n_init_, "+", local_, " top ", top_k_, "x", block_, " r", reps_,
             " from layer ", skip_layers_, by_keys_ ? cat(" keys ", cfg_.mem_key_window, cfg_.mem_key_parts > 1 ? cat(" parts ", cfg_.mem_key_parts) : std::string())
                      : std::string(" query"),
             retrieve_every_ > 1 ? cat(" every ", retrieve_every_) : std::string(),
             cfg_.mem_key_halflife > 0 ? cat(" half-life ", cfg_.mem_key_halflife) : std::string(),
             cfg_.mem_key_whiten ? " whiten" : "",
             cfg_.mem_consensus ? " consensus" : "",
             cfg_.mem_consensus_from >= 0 ? cat(" from ", cfg_.mem_consensus_from) : std::string(),
             cfg_.mem_compact ? " compact" : "",
             cfg_.mem_distance > 0 ? cat(" at ", cfg_.mem_distance) : std::string());
}

int64_t InfLLMPolicy::retained() const {
  const int64_t sinks = std::min<int64_t>(n_seen_, n_init_);
  const int64_t recent = std::max<int64_t>(0, n_seen_ - n_init_);
  return sinks + std::min(recent, local_) + (n_blocks() - first_alive_block()) * block_;
}

void InfLLMPolicy::set_model(const RopeConfig& rope, int n_layers, int n_heads, int n_kv_heads) {
  rope_ = Rope(rope);
  init(n_layers, n_kv_heads * rope.head_dim, rope.head_dim, n_heads);
}

void InfLLMPolicy::init(int n_layers, int kv_dim, int head_dim, int n_heads) {
  if (n_layers < 1 || kv_dim < 1 || head_dim < 1 || n_heads < 1 || kv_dim % head_dim != 0 ||
      n_heads % (kv_dim / head_dim) != 0)
    fail("infllm cache: unsupported model shape (", n_layers, " layers, ", n_heads, " heads, kv dim ",
         kv_dim, ", head dim ", head_dim, ")");
  n_layers_ = n_layers;
  kv_dim_ = kv_dim;
  head_dim_ = head_dim;
  n_heads_ = n_heads;
  n_kv_heads_ = kv_dim_ / head_dim_;
  BlockGeometry g;
  g.n_layers = n_layers_;
  g.kv_dim = kv_dim_;
  g.block_size = block_;
  g.elem_size = cfg_.kv_type == TensorType::F32 ? 4 : 2;
  blocks_.emplace(g, static_cast<size_t>(cfg_.mem_ram_mib) << 20, cfg_.memory_dir, cfg_.mem_hot_blocks);
  // A search reads the pages of mem_index_beam groups per retrieving layer: room for two searches.
  parts_ = by_keys_ ? cfg_.mem_key_parts : 1;
  index_.emplace(n_layers_, by_keys_ ? parts_ * kv_dim_ : n_heads_ * head_dim_, cfg_.mem_index_group, cfg_.memory_dir,
                 std::max(16, 2 * cfg_.mem_index_beam * n_layers_));
  scored_last_.assign(n_layers_, 0);
  unrot_.assign(static_cast<size_t>(n_layers_) * cfg_.mem_key_window * kv_dim_, 0.0f);
  unrot_pos_.assign(static_cast<size_t>(n_layers_) * cfg_.mem_key_window, -1);
  unrot_chunk_.assign(kv_dim_, 0.0f);
  slot_block_.assign(n_layers_, std::vector<int64_t>(top_k_, -1));
  retrieved_.assign(n_layers_, {});
  retrieved_slot_.assign(n_layers_, {});
  layer_ready_.assign(n_layers_, 0);
  ready_ = true;
}

int64_t* InfLLMPolicy::mass_buffer() {
  thread_local uint64_t owner = 0;
  thread_local int64_t* buffer = nullptr;
  if (owner == id_) return buffer;
  std::lock_guard lock(mass_mu_);
  const auto me = std::this_thread::get_id();
  int64_t* found = nullptr;
  for (auto& [tid, buf] : mass_)
    if (tid == me) found = buf.get();
  if (found == nullptr) {
    mass_.emplace_back(me, std::make_unique<int64_t[]>(mass_size()));  // zeroed
    found = mass_.back().second.get();
  }
  owner = id_;
  buffer = found;
  return found;
}

void InfLLMPolicy::observe_attention(int layer, int i, int head, const float* w, int64_t n) {
  const int64_t t = n_seen_ + i;
  if (t < n_init_ || head >= n_heads_) return;
  const int64_t start = std::max<int64_t>(n_init_, t - local_ + 1);
  const int64_t len = t - start + 1;  // the window is the last span
  if (len > n) return;
  const float* wl = w + (n - len);
  int64_t* a = mass_buffer() + (static_cast<size_t>(layer) * n_heads_ + head) * region_cap_ +
               (local_slot(start) - l0_);
  for (int64_t j = 0; j < len; ++j) a[j] += static_cast<int64_t>(wl[j] * kMassScale);
}

void InfLLMPolicy::form_block(KVStore& store) {
  const BlockGeometry& g = blocks_->geometry();
  const size_t es = store.elem_size();
  const size_t rows = static_cast<size_t>(block_) * kv_dim_ * es;
  const int group = n_heads_ / n_kv_heads_;
  std::vector<uint8_t> data(g.block_bytes());
  std::vector<float> unrot(static_cast<size_t>(block_) * kv_dim_), row(kv_dim_);
  std::vector<int64_t> mass(block_);
  std::vector<int> order(block_);
  const int W = index_->width();
  std::vector<float> entries(static_cast<size_t>(n_layers_) * W);
  for (int l = 0; l < n_layers_; ++l) {
    uint8_t* K = data.data() + l * g.layer_bytes();
    uint8_t* V = K + rows;
    for (int j = 0; j < block_; ++j) {
      const int64_t p = next_block_ + j;
      const int64_t slot = local_slot(p);
      float* u = unrot.data() + static_cast<size_t>(j) * kv_dim_;
      store.read_key(l, slot, u);
      rope_.apply(u, n_kv_heads_, -static_cast<double>(p));  // position-free
      std::copy(u, u + kv_dim_, row.begin());
      if (cfg_.mem_compact) rope_.apply(row.data(), n_kv_heads_, j);
      uint8_t* kd = K + static_cast<size_t>(j) * kv_dim_ * es;
      if (es == 4) {
        std::memcpy(kd, row.data(), kv_dim_ * 4);
      } else {
        auto* h = reinterpret_cast<uint16_t*>(kd);
        for (int d = 0; d < kv_dim_; ++d) h[d] = fp32_to_fp16(row[d]);
      }
      std::memcpy(V + static_cast<size_t>(j) * kv_dim_ * es, store.value(l, slot), kv_dim_ * es);
    }
    float* entry = entries.data() + static_cast<size_t>(l) * W;
    if (by_keys_) {  // the mean un-rotated key of each part of the block, for scoring by keys
      const int len = block_ / parts_;
      for (int part = 0; part < parts_; ++part)
        for (int d = 0; d < kv_dim_; ++d) {
          double sum = 0;
          for (int j = part * len; j < (part + 1) * len; ++j) sum += unrot[static_cast<size_t>(j) * kv_dim_ + d];
          entry[part * kv_dim_ + d] = static_cast<float>(sum / len);
        }
      continue;
    }
    // Representatives: per query head, the mean un-rotated key of its most-attended tokens.
    for (int h = 0; h < n_heads_; ++h) {
      std::fill(mass.begin(), mass.end(), 0);
      for (auto& [tid, buf] : mass_) {
        const int64_t* a = buf.get() + (static_cast<size_t>(l) * n_heads_ + h) * region_cap_;
        for (int j = 0; j < block_; ++j) mass[j] += a[local_slot(next_block_ + j) - l0_];
      }
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mass[a] > mass[b]; });
      float* r = entry + static_cast<size_t>(h) * head_dim_;
      const int kvh = h / group;
      for (int d = 0; d < head_dim_; ++d) {
        double sum = 0;
        for (int k = 0; k < reps_; ++k) sum += unrot[static_cast<size_t>(order[k]) * kv_dim_ + kvh * head_dim_ + d];
        r[d] = static_cast<float>(sum / reps_);
      }
    }
  }
  blocks_->append(data.data());
  index_->append(entries.data());
  next_block_ += block_;
  // Without a memory file the RAM budget forgets the oldest blocks: their entries go too.
  if (blocks_->first_alive() > index_->first_alive()) index_->forget_before(blocks_->first_alive());
}

void InfLLMPolicy::compact(KVStore& store, int64_t keep_from) {
  const int64_t drop = keep_from - region_first_;
  const int64_t keep = region_used_ - drop;
  if (drop <= 0) return;
  store.move(l0_ + drop, l0_, keep);
  std::lock_guard lock(mass_mu_);
  for (auto& [tid, buf] : mass_)
    for (size_t row = 0; row < static_cast<size_t>(n_layers_) * n_heads_; ++row) {
      int64_t* a = buf.get() + row * region_cap_;
      std::memmove(a, a + drop, keep * sizeof(int64_t));
      std::fill(a + keep, a + region_cap_, 0);
    }
  region_first_ = keep_from;
  region_used_ = keep;
}

void InfLLMPolicy::begin_batch(int n, KVStore& store, int64_t* slots, double* key_pos) {
  if (n > max_batch_) fail("infllm cache: batch of ", n, " exceeds the maximum of ", max_batch_);
  // Without a model (policy tests): one head per kv row, no rotation.
  if (!ready_) init(store.n_layers(), store.kv_dim(), store.kv_dim(), 1);
  if (store.n_layers() != n_layers_ || store.kv_dim() != kv_dim_ ||
      static_cast<int>(store.elem_size()) != blocks_->geometry().elem_size)
    fail("infllm cache: the KV store does not match the model the policy was made for");
  // Tokens that no future query sees in its window, in whole blocks, go to the memory.
  const int64_t frontier = n_seen_ - local_ + 1;
  if (top_k_ == 0) next_block_ = std::max(next_block_, frontier);
  while (next_block_ + block_ <= frontier) form_block(store);

  const int64_t new_local = std::max<int64_t>(0, n_seen_ + n - std::max<int64_t>(n_seen_, n_init_));
  if (region_used_ + new_local > region_cap_)
    compact(store, std::max(region_first_, std::min(next_block_, frontier)));
  for (int i = 0; i < n; ++i) {
    const int64_t t = n_seen_ + i;
    key_pos[i] = static_cast<double>(t);
    if (t < n_init_) {
      slots[i] = t;
    } else {
      slots[i] = local_slot(t);
      ++region_used_;
    }
  }
  std::fill(layer_ready_.begin(), layer_ready_.end(), 0);
  // Score again when the batch holds a multiple of retrieve_every (stateless: the same batches
  // score whatever came before).
  const int64_t next_multiple = (n_seen_ + retrieve_every_ - 1) / retrieve_every_ * retrieve_every_;
  rescore_ = retrieve_every_ <= 1 || next_multiple < n_seen_ + n;
}

// Scores of one block's entry. InfLLM's ("query"): the chunk's mean query, rotated to where the
// memory sits, dotted with the block's representative. By keys: a 1-token decode chunk's query is
// one noisy sample of what the text is about, and a representative of 4 tokens another; the mean
// key of the last tokens read and a block's mean key average that noise away and compare like
// with like (keys with keys, both un-rotated). Both are centred on the mean of the blocks held,
// per KV head, and compared by cosine so that no head's scale dominates the sum.
//
// The search is in two levels (BlockIndex): each complete group of blocks is scored by its mean
// entry, and only the blocks of the best mem_index_beam groups, and of the group being filled,
// are scored one by one. Scoring is linear in the entry for "query" (a group's score is the mean
// of its blocks' scores) and nearly so for keys, so the groups holding the best blocks tend to
// score high. With at most mem_index_beam complete groups every block is scored.
const float* InfLLMPolicy::unrotated(int layer, int64_t t, const KVStore& store) {
  // Tokens of finished batches are un-rotated once per layer and kept while they may still be
  // among the last mem_key_window read; the chunk's own (not final until end_batch) every time.
  const int64_t R = cfg_.mem_key_window;
  const size_t row = static_cast<size_t>(layer) * R + static_cast<size_t>(t % R);
  float* u = t < n_seen_ ? unrot_.data() + row * kv_dim_ : unrot_chunk_.data();
  if (t < n_seen_ && unrot_pos_[row] == t) return u;
  store.read_key(layer, local_slot(t), u);
  rope_.apply(u, n_kv_heads_, -static_cast<double>(t));
  if (t < n_seen_) unrot_pos_[row] = t;
  return u;
}

void InfLLMPolicy::search(int layer, const float* q, int n, const KVStore& store, std::vector<int64_t>& chosen) {
  BlockIndex& ix = *index_;
  const int W = ix.width();
  const int64_t first = blocks_->first_alive(), nb = blocks_->size();
  // The layers whose scores are summed: this one, or with mem_consensus (called in the first
  // retrieving layer) every retrieving layer (from mem_consensus_from, if set).
  std::vector<int> layers = {layer};
  if (consensus_)  // and, with mem_consensus_from, layers before it that score without retrieving
    for (int l = cfg_.mem_consensus_from >= 0 ? cfg_.mem_consensus_from : layer; l < n_layers_; ++l)
      if (l != layer) layers.push_back(l);
  const size_t L = layers.size();
  std::vector<std::vector<double>> probe(L, std::vector<double>(W, 0.0)), centre(L, std::vector<double>(W, 0.0));
  for (size_t li = 0; li < L; ++li) {
    const int lay = layers[li];
    if (!by_keys_) {
      std::vector<double> acc(W, 0.0);
      for (int i = 0; i < n; ++i)
        for (int d = 0; d < W; ++d) acc[d] += q[static_cast<size_t>(i) * W + d];
      std::vector<float> qm(W);
      for (int d = 0; d < W; ++d) qm[d] = static_cast<float>(acc[d] / n);
      rope_.apply(qm.data(), n_heads_, static_cast<double>(cfg_.mem_distance > 0 ? cfg_.mem_distance : local_));
      for (int d = 0; d < W; ++d) probe[li][d] = qm[d];
      continue;
    }
    // The last mem_key_window tokens, all in the window: this chunk's included where its keys
    // are stored (this layer and those before it: they are stored before attention), the tokens
    // before it in the layers the forward pass has not reached yet. With a half-life, token t
    // weighs 2^(-age / half-life), age 0 for the chunk's tokens (or, where the chunk's keys are
    // not there yet, for the last token before it).
    const int64_t end = lay <= layer ? n_seen_ + n : n_seen_;
    const int64_t begin = std::max(
        {end - static_cast<int64_t>(std::max(cfg_.mem_key_window, n)), region_first_, static_cast<int64_t>(n_init_)});
    const int64_t newest = std::min(end - 1, n_seen_);
    double weights = 0;
    for (int64_t t = begin; t < end; ++t) {
      const float* u = unrotated(lay, t, store);
      const double w = cfg_.mem_key_halflife > 0
                           ? std::exp2(-static_cast<double>(std::max<int64_t>(0, newest - t)) / cfg_.mem_key_halflife)
                           : 1.0;
      weights += w;
      for (int d = 0; d < kv_dim_; ++d) probe[li][d] += w * u[d];
    }
    const std::vector<double>& total = ix.total(lay);
    for (int d = 0; d < kv_dim_; ++d) {
      double sum = 0;  // over the parts (the mean key of every part of every block held)
      for (int part = 0; part < parts_; ++part) sum += total[part * kv_dim_ + d];
      centre[li][d] = sum / static_cast<double>((nb - first) * parts_);
      probe[li][d] = (weights > 0 ? probe[li][d] / weights : 0.0) - centre[li][d];
    }
  }
  // One mean key in layer li: the cosines per KV head, summed.
  // With mem_key_whiten every dimension is scaled by wscale (1 / its standard deviation over the
  // parts scored; set below once the blocks to score are known; 1 before, for the groups).
  std::vector<std::vector<double>> wscale(L, std::vector<double>(kv_dim_, 1.0));
  auto key_score = [&](size_t li, const float* e) {
    const std::vector<double>& p = probe[li];
    const std::vector<double>& c0 = centre[li];
    const std::vector<double>& w = wscale[li];
    double s = 0;
    for (int h = 0; h < n_kv_heads_; ++h) {
      double dot = 0, nr = 0, nm = 0;
      for (int d = h * head_dim_; d < (h + 1) * head_dim_; ++d) {
        const double c = (e[d] - c0[d]) * w[d], x = p[d] * w[d];
        dot += x * c;
        nr += x * x;
        nm += c * c;
      }
      if (nr > 0 && nm > 0) s += dot / std::sqrt(nr * nm);
    }
    return s;
  };
  // A block in layer li: its best part.
  auto score = [&](size_t li, const float* e) -> double {
    if (!by_keys_) {
      double s = 0;
      for (int d = 0; d < W; ++d) s += probe[li][d] * e[d];
      return s;
    }
    double best = key_score(li, e);
    for (int part = 1; part < parts_; ++part) best = std::max(best, key_score(li, e + part * kv_dim_));
    return best;
  };
  // A group: its mean entry, the parts averaged (a group's best part would say little).
  std::vector<float> folded(kv_dim_);
  auto group_score = [&](size_t li, const float* e) -> double {
    if (!by_keys_ || parts_ == 1) return score(li, e);
    for (int d = 0; d < kv_dim_; ++d) {
      double sum = 0;
      for (int part = 0; part < parts_; ++part) sum += e[part * kv_dim_ + d];
      folded[d] = static_cast<float>(sum / parts_);
    }
    return key_score(li, folded.data());
  };
  // Highest score first; among equals the newer block (or group).
  auto better = [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second > b.second; };

  const int G = ix.group();
  const int64_t open = nb / G, first_group = first / G;
  std::vector<int64_t> groups;
  if (open - first_group <= cfg_.mem_index_beam) {
    for (int64_t g = first_group; g <= open; ++g) groups.push_back(g);
  } else {
    std::vector<std::pair<float, int64_t>> by_group;
    for (int64_t g = first_group; g < open; ++g) {
      double s = 0;
      for (size_t li = 0; li < L; ++li) s += group_score(li, ix.summary(layers[li], g));
      by_group.push_back({static_cast<float>(s), g});
    }
    std::partial_sort(by_group.begin(), by_group.begin() + cfg_.mem_index_beam, by_group.end(), better);
    for (int k = 0; k < cfg_.mem_index_beam; ++k) groups.push_back(by_group[k].second);
    groups.push_back(open);
  }
  if (by_keys_ && cfg_.mem_key_whiten) {
    for (size_t li = 0; li < L; ++li) {
      std::vector<double> var(kv_dim_, 0.0);
      int64_t count = 0;
      for (int64_t g : groups) {
        const int64_t lo = std::max(first, g * G), hi = std::min(nb, (g + 1) * G);
        if (lo >= hi) continue;
        const float* e = ix.entries(layers[li], g);
        for (int64_t b = lo; b < hi; ++b)
          for (int part = 0; part < parts_; ++part, ++count) {
            const float* x = e + static_cast<size_t>(b - g * G) * W + part * kv_dim_;
            for (int d = 0; d < kv_dim_; ++d) var[d] += (x[d] - centre[li][d]) * (x[d] - centre[li][d]);
          }
      }
      for (int d = 0; d < kv_dim_; ++d)
        wscale[li][d] = var[d] > 0 ? std::sqrt(static_cast<double>(count) / var[d]) : 1.0;
    }
  }
  std::vector<std::pair<float, int64_t>> scored;
  std::vector<double> acc;
  for (int64_t g : groups) {
    const int64_t lo = std::max(first, g * G), hi = std::min(nb, (g + 1) * G);
    if (lo >= hi) continue;
    acc.assign(hi - lo, 0.0);
    for (size_t li = 0; li < L; ++li) {  // one page at a time: entries() is valid until the next call
      const float* e = ix.entries(layers[li], g);
      for (int64_t b = lo; b < hi; ++b) acc[b - lo] += score(li, e + static_cast<size_t>(b - g * G) * W);
    }
    for (int64_t b = lo; b < hi; ++b) scored.push_back({static_cast<float>(acc[b - lo]), b});
  }
  scored_last_[layer] = static_cast<int64_t>(scored.size());
  const size_t k = std::min<size_t>(top_k_, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + k, scored.end(), better);
  chosen.clear();
  for (size_t j = 0; j < k; ++j) chosen.push_back(scored[j].second);
  std::sort(chosen.begin(), chosen.end());
}

void InfLLMPolicy::before_attention(int layer, const float* q, int n, KVStore& store) {
  if (!ready_) return;
  layer_ready_[layer] = 1;
  std::vector<int64_t>& chosen = retrieved_[layer];
  std::vector<int64_t>& chosen_slot = retrieved_slot_[layer];
  const int64_t first = blocks_->first_alive(), nb = blocks_->size();
  // Between scorings the last choice stands, unless it is empty (a restored sequence's first
  // batch, or no block existed then) or holds a block the RAM budget has forgotten since.
  if (!rescore_ && !chosen.empty() && chosen.front() >= first &&
      !(consensus_ && layer > skip_layers_ && layer_ready_[skip_layers_] && chosen != retrieved_[skip_layers_]))
    return;
  chosen.clear();
  chosen_slot.clear();
  if (top_k_ == 0 || nb <= first || n < 1 || layer < skip_layers_) return;

  const int64_t alive = nb - first;
  if (alive <= top_k_) {
    for (int64_t b = first; b < nb; ++b) chosen.push_back(b);
  } else if (consensus_ && layer > skip_layers_ && layer_ready_[skip_layers_]) {
    chosen = retrieved_[skip_layers_];  // chosen there by every retrieving layer's scores
  } else {
    search(layer, q, n, store, chosen);
  }

  // Blocks already in a retrieval slot stay; the others are copied into the slots freed.
  std::vector<int64_t>& in_slot = slot_block_[layer];
  auto is_chosen = [&](int64_t b) { return b >= 0 && std::binary_search(chosen.begin(), chosen.end(), b); };
  std::vector<int> free_slots;
  for (int h = 0; h < top_k_; ++h)
    if (!is_chosen(in_slot[h])) free_slots.push_back(h);
  size_t next_free = 0;
  const size_t bytes = static_cast<size_t>(block_) * kv_dim_ * store.elem_size();
  for (int64_t b : chosen) {
    if (std::find(in_slot.begin(), in_slot.end(), b) != in_slot.end()) continue;
    const int h = free_slots[next_free++];
    const uint8_t* src = blocks_->layer(b, layer);
    const int64_t slot = n_init_ + static_cast<int64_t>(h) * block_;
    store.set_keys(layer, slot, block_, src);
    std::memcpy(store.value(layer, slot), src + bytes, bytes);
    in_slot[h] = b;
    ++loads_;
  }
  for (int64_t b : chosen)
    chosen_slot.push_back(std::find(in_slot.begin(), in_slot.end(), b) - in_slot.begin());
}

const std::vector<int64_t>& InfLLMPolicy::retrieved(int layer) const {
  static const std::vector<int64_t> none;
  return ready_ && layer_ready_[layer] ? retrieved_[layer] : none;
}

std::vector<float> InfLLMPolicy::entry(int layer, int64_t b) const {
  if (!ready_ || b < first_alive_block() || b >= n_blocks()) return {};
  BlockIndex& ix = const_cast<BlockIndex&>(*index_);  // reading may fill its page cache
  const float* e = ix.entries(layer, b / ix.group()) + static_cast<size_t>(b % ix.group()) * ix.width();
  return std::vector<float>(e, e + ix.width());
}

std::vector<float> InfLLMPolicy::mean_key(int layer, int64_t b) const {
  return by_keys_ ? entry(layer, b) : std::vector<float>();
}

std::vector<float> InfLLMPolicy::representative(int layer, int64_t b) const {
  return by_keys_ ? std::vector<float>() : entry(layer, b);
}

void InfLLMPolicy::spans(int layer, int i, std::vector<Span>& out) const {
  const int64_t t = n_seen_ + i;
  out.clear();
  if (t < n_init_) {
    out.push_back({0, t + 1, static_cast<double>(t)});
    return;
  }
  const int64_t start = std::max<int64_t>(n_init_, t - local_ + 1);
  const std::vector<int64_t>& chosen = retrieved(layer);
  const int64_t k = static_cast<int64_t>(chosen.size());
  const std::vector<int64_t>& chosen_slot = k > 0 ? retrieved_slot_[layer] : chosen;
  if (!cfg_.mem_compact) {
    // As `sink`, with every retrieved token at one distance: just past the window's oldest token
    // (or mem_distance). Their keys are position-free, so the query is rotated at that distance.
    const double query_in_cache = static_cast<double>(n_init_ + (t - start));
    if (n_init_ > 0) out.push_back({0, n_init_, query_in_cache});
    const double distance = static_cast<double>(cfg_.mem_distance > 0 ? cfg_.mem_distance : t - start + 1);
    // The retrieved blocks fill the first k retrieval slots (in slot order: one span).
    int64_t lo = INT64_MAX, hi = 0;
    for (int64_t r = 0; r < k; ++r) {
      lo = std::min(lo, chosen_slot[r]);
      hi = std::max(hi, chosen_slot[r] + 1);
    }
    if (k > 0 && hi - lo == k) {
      out.push_back({n_init_ + lo * block_, n_init_ + hi * block_, distance});
    } else {
      for (int64_t r = 0; r < k; ++r)
        out.push_back({n_init_ + chosen_slot[r] * block_, n_init_ + (chosen_slot[r] + 1) * block_, distance});
    }
  } else {
    // Sinks, the retrieved blocks in stream order, the window: consecutive cache positions. A
    // block's keys were rotated at their offset inside it.
    const int64_t query_in_cache = n_init_ + k * block_ + (t - start);
    if (n_init_ > 0) out.push_back({0, n_init_, static_cast<double>(query_in_cache)});
    for (int64_t r = 0; r < k; ++r) {
      const int64_t slot = n_init_ + chosen_slot[r] * block_;
      out.push_back({slot, slot + block_, static_cast<double>(query_in_cache - (n_init_ + r * block_))});
    }
  }
  out.push_back({local_slot(start), local_slot(t) + 1, static_cast<double>(t)});
}

// State: its format, counters, then (once blocks exist) the memory file's name and block count,
// the blocks still in RAM, the block index, the retrieval slots and the window's attention mass.
std::vector<int64_t> InfLLMPolicy::save_state() const {
  std::vector<int64_t> s = {kStateFormat, n_seen_, region_first_, region_used_, next_block_, ready_ ? 1 : 0};
  if (!ready_) return s;
  auto* self = const_cast<InfLLMPolicy*>(this);
  BlockStore& bs = *self->blocks_;
  if (bs.on_disk() > 0) {
    bs.sync();
    bs.keep_file();  // a snapshot now refers to it
  }
  s.push_back(bs.size());
  s.push_back(bs.first_alive());
  s.push_back(bs.on_disk());
  put_bytes(s, reinterpret_cast<const uint8_t*>(bs.path().data()), bs.on_disk() > 0 ? bs.path().size() : 0);
  for (int64_t b = bs.first_alive() + bs.on_disk(); b < bs.size(); ++b)
    for (int l = 0; l < n_layers_; ++l) put_bytes(s, self->blocks_->layer(b, l), bs.geometry().layer_bytes());
  self->index_->save(s);
  for (int l = 0; l < n_layers_; ++l) {
    for (int64_t b : slot_block_[l]) s.push_back(b);
    s.push_back(static_cast<int64_t>(retrieved_[l].size()));  // the last choice, reused between scorings
    s.insert(s.end(), retrieved_[l].begin(), retrieved_[l].end());
  }
  std::vector<int64_t> mass(mass_size(), 0);
  for (const auto& [tid, buf] : mass_)
    for (size_t j = 0; j < mass.size(); ++j) mass[j] += buf[j];
  s.insert(s.end(), mass.begin(), mass.end());
  return s;
}

void InfLLMPolicy::load_state(const std::vector<int64_t>& s) {
  auto bad = [&] { fail("snapshot: inconsistent state for cache policy ", describe()); };
  size_t i = 0;
  auto next = [&]() -> int64_t {
    if (i >= s.size()) bad();
    return s[i++];
  };
  auto bytes = [&](std::vector<uint8_t>& out) {
    const int64_t n = next();
    if (n < 0 || static_cast<uint64_t>(n) > (s.size() - i) * 8) bad();
    out.resize(n);
    for (int64_t k = 0; k < n; k += 8) {
      const int64_t w = next();
      std::memcpy(out.data() + k, &w, std::min<int64_t>(8, n - k));
    }
  };
  const int64_t format = next();
  if (format >= 0)  // states before the format tag began with the stream position
    fail("snapshot: the infllm state was written by an older build (its block index is kept differently); "
         "feed the stream again");
  if (format != kStateFormat) bad();
  n_seen_ = next();
  region_first_ = next();
  region_used_ = next();
  next_block_ = next();
  const bool was_ready = next() != 0;
  if (n_seen_ < 0 || region_first_ < n_init_ || region_used_ < 0 || region_used_ > region_cap_ ||
      next_block_ < n_init_ || (next_block_ - n_init_) % block_ != 0)
    bad();
  if (!was_ready) {
    if (i != s.size() || n_seen_ != 0) bad();
    return;
  }
  if (!ready_) bad();  // the engine gives the policy its model (set_model) before loading
  const int64_t n_blocks = next(), first_alive = next(), on_disk = next();
  if (n_blocks != (next_block_ - n_init_) / block_ || first_alive < 0 || on_disk < 0 ||
      first_alive + on_disk > n_blocks || (on_disk > 0 && first_alive != 0))
    bad();
  std::vector<uint8_t> buf;
  bytes(buf);
  const std::string path(buf.begin(), buf.end());
  const BlockGeometry g = blocks_->geometry();
  const size_t ram = static_cast<size_t>(cfg_.mem_ram_mib) << 20;
  if (on_disk > 0) {
    blocks_.emplace(BlockStore::reopen(g, ram, path, on_disk, cfg_.mem_hot_blocks));
  } else {
    blocks_.emplace(g, ram, cfg_.memory_dir, cfg_.mem_hot_blocks);
    blocks_->skip(first_alive);
  }
  std::vector<uint8_t> block(g.block_bytes());
  for (int64_t b = first_alive + on_disk; b < n_blocks; ++b) {
    for (int l = 0; l < n_layers_; ++l) {
      bytes(buf);
      if (buf.size() != g.layer_bytes()) bad();
      if (!buf.empty()) std::memcpy(block.data() + l * g.layer_bytes(), buf.data(), buf.size());
    }
    blocks_->append(block.data());
  }
  if (blocks_->size() != n_blocks) bad();
  index_.emplace(n_layers_, index_->width(), cfg_.mem_index_group, cfg_.memory_dir,
                 std::max(16, 2 * cfg_.mem_index_beam * n_layers_));
  index_->load(s, i);
  std::fill(unrot_pos_.begin(), unrot_pos_.end(), -1);
  if (index_->size() != n_blocks || index_->first_alive() != first_alive) bad();
  for (int l = 0; l < n_layers_; ++l) {
    for (int64_t& b : slot_block_[l]) {
      b = next();
      if (b < -1 || b >= n_blocks) bad();
    }
    const int64_t n_chosen = next();
    if (n_chosen < 0 || n_chosen > top_k_) bad();
    retrieved_[l].assign(static_cast<size_t>(n_chosen), 0);
    retrieved_slot_[l].clear();
    for (int64_t& b : retrieved_[l]) {
      b = next();
      const auto at = std::find(slot_block_[l].begin(), slot_block_[l].end(), b);
      if (b < 0 || at == slot_block_[l].end()) bad();
      retrieved_slot_[l].push_back(at - slot_block_[l].begin());
    }
  }
  if (s.size() - i != mass_size()) bad();
  std::lock_guard lock(mass_mu_);
  mass_.clear();
  id_ = next_policy_id++;
  mass_.emplace_back(std::thread::id(), std::make_unique<int64_t[]>(mass_size()));
  std::copy(s.begin() + i, s.end(), mass_.back().second.get());
}

}  // namespace endless
