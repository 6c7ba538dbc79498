// Byte-level BPE, following llama.cpp's llm_tokenizer_bpe: within each pre-tokenized word,
// repeatedly merge the adjacent pair with the lowest merge rank (leftmost on ties).
#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace endless::detail {

namespace {

struct Merge {
  int32_t rank;
  int32_t result;  // interned text of the merged pair
};

struct Symbol {
  int32_t text;  // interned text
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Bigram {
  int32_t rank;
  int32_t left, right;            // symbol indexes
  int32_t left_text, right_text;  // what they held when queued, to skip stale entries
  int32_t result;
};

// Lowest rank first, then the leftmost pair: a min-heap through std::push_heap's max order.
struct BigramAfter {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

// (left, right) -> merge, open addressing: looked up for every adjacent pair of every word.
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    slots_.assign(capacity, Slot{});
    shift_ = 64 - unsigned(__builtin_ctzll(capacity));
  }
  // Keeps the first merge of a pair, as llama.cpp does.
  void insert(uint64_t key, Merge merge) {
    for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, merge};
        return;
      }
      if (slots_[i].key == key) return;
    }
  }
  const Merge* find(uint64_t key) const {
    for (size_t i = index(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge{};
  };
  size_t index(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Slot> slots_;
  unsigned shift_ = 60;
};

}  // namespace

struct BpeModel::State {
  const Vocab& vocab;
  PreTokenizer pre;
  bool ignore_merges;
  // Every string a merge mentions, and the 256 byte characters, get a small id.
  TextIndex text_ids;
  std::vector<std::string> texts;
  std::vector<int32_t> text_token;  // token id of each text, -1 if none
  int32_t byte_text[256];
  MergeTable merges;

  State(const Vocab& v, PreTokenizerKind kind, bool ignore)
      : vocab(v), pre(pretokenizer_patterns(kind)), ignore_merges(ignore) {}

  int32_t intern(std::string_view text) {
    const int32_t known = text_ids.find(texts, text);
    if (known >= 0) return known;
    const int32_t id = int32_t(texts.size());
    texts.emplace_back(text);
    text_token.push_back(vocab.find(text));
    text_ids.insert(texts, id);
    return id;
  }
};

BpeModel::BpeModel(const Vocab& vocab, const std::vector<std::string_view>& merges,
                   PreTokenizerKind pre, bool ignore_merges)
    : state_(std::make_unique<State>(vocab, pre, ignore_merges)) {
  State& s = *state_;
  s.texts.reserve(2 * merges.size() + 256);
  s.text_ids.reserve(2 * merges.size() + 256);
  for (int b = 0; b < 256; ++b) s.byte_text[b] = s.intern(unicode::byte_to_chars(uint8_t(b)));
  s.merges.reserve(merges.size());
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string_view line = merges[i];
    // "left right"; the separator is searched from the second character on, so a merge of a
    // space character itself still parses.
    const size_t space = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
    if (space == std::string_view::npos) continue;  // llama.cpp keeps it as an unusable pair
    const std::string_view left = line.substr(0, space), right = line.substr(space + 1);
    joined.assign(left);
    joined.append(right);
    const int32_t l = s.intern(left), r = s.intern(right), m = s.intern(joined);
    s.merges.insert(pair_key(l, r), Merge{int32_t(std::min<size_t>(i, INT32_MAX)), m});
  }
}

BpeModel::~BpeModel() = default;

void BpeModel::encode(std::string_view text, std::vector<int32_t>& out) const {
  const State& s = *state_;
  std::string normalized;
  std::vector<PreTokenizer::Word> words;
  s.pre.split(text, normalized, words);

  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;
  std::string encoded;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Merge* merge = s.merges.find(pair_key(symbols[left].text, symbols[right].text));
    if (merge == nullptr) return;
    heap.push_back({merge->rank, left, right, symbols[left].text, symbols[right].text,
                    merge->result});
    std::push_heap(heap.begin(), heap.end(), BigramAfter{});
  };

  for (const PreTokenizer::Word& word : words) {
    const std::string_view bytes = std::string_view(normalized).substr(word.offset, word.length);
    if (s.ignore_merges) {
      // Words that are whole tokens skip merging (llama3-style vocabularies).
      encoded.clear();
      for (char c : bytes) encoded.append(unicode::byte_to_chars(uint8_t(c)));
      const int32_t id = s.vocab.find(encoded);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    symbols.clear();
    heap.clear();
    const int32_t n = int32_t(bytes.size());
    for (int32_t i = 0; i < n; ++i)
      symbols.push_back({s.byte_text[uint8_t(bytes[size_t(i)])], i - 1, i + 1 < n ? i + 1 : -1,
                         true});
    for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), BigramAfter{});
      const Bigram b = heap.back();
      heap.pop_back();
      Symbol& left = symbols[b.left];
      Symbol& right = symbols[b.right];
      if (!left.alive || !right.alive || left.text != b.left_text || right.text != b.right_text)
        continue;
      left.text = b.result;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = b.left;
      try_add(left.prev, b.left);
      try_add(b.left, left.next);
    }
    for (int32_t i = 0; i != -1 && n > 0; i = symbols[i].next) {
      const int32_t id = s.text_token[size_t(symbols[i].text)];
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // Not a token: llama.cpp tries each byte of the (byte-level) text as a one-byte token and
      // drops the ones that are not.
      for (char c : s.texts[size_t(symbols[i].text)]) {
        const int32_t byte_id = s.vocab.find(std::string_view(&c, 1));
        if (byte_id >= 0) out.push_back(byte_id);
      }
    }
  }
}

}  // namespace endless::detail
