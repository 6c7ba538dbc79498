// SentencePiece-style BPE ("llama" vocabularies), following llama.cpp's llm_tokenizer_spm.
#include <algorithm>
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace endless::detail {
namespace {

struct Symbol {
  uint32_t offset;  // into the text
  uint32_t size;    // bytes; 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;  // bytes of the merged text, to detect entries made stale by other merges
};

// Highest score first; between equal scores the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) {
  if (text.empty()) return;
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  // One symbol per UTF-8 character as announced by its lead byte (not validated, as in
  // llama.cpp: broken sequences end up as byte tokens).
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(unicode::sequence_length(uint8_t(text[pos])), text.size() - pos);
    symbols.push_back({uint32_t(pos), uint32_t(n), -1, -1});
    pos += n;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    const int32_t id = vocab.find(text.substr(symbols[left].offset, size));
    if (id < 0) return;
    queue.push({vocab.tokens[size_t(id)].score, left, right, size});
  };
  // Every surviving piece is either a merged token or a single character; a character that is
  // no token is spelled with byte tokens.
  const auto emit = [&](const Symbol& s) {
    const std::string_view piece = text.substr(s.offset, s.size);
    const int32_t id = vocab.find(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char c : piece) {
        const int32_t id = vocab.byte_token(uint8_t(c));
        if (id >= 0) out.push_back(id);  // a vocabulary without <unk> drops the byte
      }
    }
  };
  // Merges the symbols [begin, end) as llama.cpp merges a whole text: the highest-scoring
  // adjacent pair that forms a token first, the leftmost among equals.
  const auto merge = [&](int32_t begin, int32_t end) {
    if (begin >= end) return;
    for (int32_t i = begin; i < end; ++i) {
      symbols[i].prev = i - 1 >= begin ? i - 1 : -1;
      symbols[i].next = i + 1 < end ? i + 1 : -1;
    }
    for (int32_t i = begin + 1; i < end; ++i) try_add(i - 1, i);
    while (!queue.empty()) {
      const Bigram bigram = queue.top();
      queue.pop();
      Symbol& left = symbols[bigram.left];
      Symbol& right = symbols[bigram.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = bigram.left;
      try_add(left.prev, bigram.left);
      try_add(bigram.left, left.next);
    }
    for (int32_t i = begin; i != -1; i = symbols[i].next) emit(symbols[i]);
  };

  int32_t begin = 0;
  const int32_t count = int32_t(symbols.size());
  for (int32_t i = 0; i < count; ++i) {
    const Symbol& s = symbols[i];
    const uint8_t c = uint8_t(text[s.offset]);
    if (s.size == 1 && c < 0x80 && vocab.merge_barrier[c]) {
      merge(begin, i);
      emit(s);
      begin = i + 1;
    }
  }
  merge(begin, count);
}

}  // namespace endless::detail
