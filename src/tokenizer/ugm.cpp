// Unigram ("t5" vocabularies), following llama.cpp's llm_tokenizer_ugm: SentencePiece's
// normalization (precompiled charsmap, space escaping) and a Viterbi search over token scores.
#include "tokenizer/ugm.h"

#include <algorithm>
#include <cfloat>
#include <cstring>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace endless::detail {

namespace {

// A byte trie over token texts.
class Trie {
 public:
  Trie() : nodes_(1) {}
  void insert(std::string_view key, int32_t value) {
    int32_t node = 0;
    for (char c : key) {
      int32_t child = find_child(node, uint8_t(c));
      if (child < 0) {
        child = int32_t(nodes_.size());
        nodes_[size_t(node)].children.push_back({uint8_t(c), child});
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[size_t(node)].value = value;
  }
  void finish() {
    for (Node& n : nodes_) std::sort(n.children.begin(), n.children.end());
    sorted_ = true;
  }
  // The child of `node` along byte c, or -1.
  int32_t step(int32_t node, uint8_t c) const {
    const auto& kids = nodes_[size_t(node)].children;
    if (sorted_) {
      auto it = std::lower_bound(kids.begin(), kids.end(), std::pair<uint8_t, int32_t>{c, -1});
      return (it != kids.end() && it->first == c) ? it->second : -1;
    }
    return find_child(node, c);
  }
  int32_t value(int32_t node) const { return nodes_[size_t(node)].value; }
  // Length of the longest key that prefixes s (0 if none).
  size_t longest_prefix(std::string_view s) const {
    int32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      node = step(node, uint8_t(s[i]));
      if (node < 0) break;
      if (value(node) >= 0) best = i + 1;
    }
    return best;
  }

 private:
  struct Node {
    int32_t value = -1;
    std::vector<std::pair<uint8_t, int32_t>> children;
  };
  int32_t find_child(int32_t node, uint8_t c) const {
    for (const auto& [byte, child] : nodes_[size_t(node)].children)
      if (byte == c) return child;
    return -1;
  }
  std::vector<Node> nodes_;
  bool sorted_ = false;
};

}  // namespace

struct UgmModel::State {
  const Vocab& vocab;
  Trie tokens;
  Trie user_defined;
  // The precompiled charsmap: a XOR-compressed compact double array (XCDA) over input bytes
  // whose leaves index NUL-terminated replacement strings.
  std::vector<uint32_t> xcda;
  std::string replacements;
  double unknown_score = 0;

  explicit State(const Vocab& v) : vocab(v) {}

  uint32_t node(size_t index) const {
    if (index >= xcda.size()) fail("corrupt precompiled charsmap: node ", index, " out of range");
    return xcda[index];
  }
  uint32_t base(size_t index) const {
    const uint32_t packed = node(index);
    return (packed >> 10) << ((packed & (1u << 9)) >> 6);
  }
  uint32_t lcheck(size_t index) const { return node(index) & ((1u << 31) | 0xFF); }
  bool leaf(size_t index) const { return (node(index) >> 8) & 1; }
  uint32_t leaf_value(size_t index) const { return node(index) & ((1u << 31) - 1); }

  // The normalized form of the input's next characters, and how many input bytes it replaces.
  std::string_view normalize_prefix(std::string_view input, size_t offset, size_t& consumed) const {
    const std::string_view rest = input.substr(offset);
    // User-defined tokens pass through unchanged.
    if (const size_t n = user_defined.longest_prefix(rest); n > 0) {
      consumed = n;
      return rest.substr(0, n);
    }
    size_t longest = 0, replacement = 0;
    if (!xcda.empty()) {
      uint32_t index = base(0);
      for (size_t i = 0; i < rest.size(); ++i) {
        const uint8_t c = uint8_t(rest[i]);
        if (c == 0) break;
        index ^= c;
        if (lcheck(index) != c) break;
        const bool is_leaf = leaf(index);
        index ^= base(index);
        if (is_leaf) {
          longest = i + 1;
          replacement = leaf_value(index);
        }
      }
    }
    if (longest > 0) {
      if (replacement >= replacements.size())
        fail("corrupt precompiled charsmap: replacement ", replacement, " out of range");
      const size_t end = replacements.find('\0', replacement);
      if (end == std::string::npos) fail("corrupt precompiled charsmap: unterminated string");
      consumed = longest;
      return std::string_view(replacements).substr(replacement, end - replacement);
    }
    size_t pos = 0;
    uint32_t cpt;
    if (unicode::decode_lenient(rest, pos, cpt)) {
      consumed = pos;
      return rest.substr(0, pos);
    }
    consumed = 1;
    return "\xEF\xBF\xBD";  // U+FFFD for a byte that starts no character
  }

  std::string normalize(std::string_view input) const {
    const std::string_view space = vocab.escape_whitespaces ? "\xE2\x96\x81" : " ";
    const bool prepend = !vocab.treat_whitespace_as_suffix && vocab.add_space_prefix;
    const bool append = vocab.treat_whitespace_as_suffix && vocab.add_space_prefix;
    const bool merge = vocab.remove_extra_whitespaces;
    std::string out;
    out.reserve(input.size() * 3);
    bool space_prepended = false, in_word = false;
    for (size_t offset = 0; offset < input.size();) {
      size_t consumed = 0;
      const std::string_view piece = normalize_prefix(input, offset, consumed);
      for (const char c : piece) {
        if (c != ' ') {
          if (!in_word) {
            in_word = true;
            if ((prepend && !space_prepended) || merge) {
              out.append(space);
              space_prepended = true;
            }
          }
          out.push_back(c);
        } else {
          in_word = false;
          if (!merge) out.append(space);
        }
      }
      offset += consumed;
    }
    if (append) out.append(space);
    return out;
  }
};

UgmModel::UgmModel(const Vocab& vocab, std::string charsmap)
    : state_(std::make_unique<State>(vocab)) {
  State& s = *state_;
  if (!charsmap.empty()) {
    uint32_t blob = 0;
    if (charsmap.size() < 4) fail("precompiled charsmap too small (", charsmap.size(), " bytes)");
    std::memcpy(&blob, charsmap.data(), 4);
    if (uint64_t(blob) + 4 >= charsmap.size())
      fail("precompiled charsmap: XCDA size ", blob, " exceeds the ", charsmap.size(),
           "-byte map");
    s.xcda.resize(blob / 4);
    std::memcpy(s.xcda.data(), charsmap.data() + 4, s.xcda.size() * 4);
    s.replacements = charsmap.substr(4 + size_t(blob));
  }
  float min_score = FLT_MAX;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const TokenInfo& tok = vocab.tokens[id];
    if (tok.attr & kAttrNormal) min_score = std::min(min_score, tok.score);
    if (tok.attr & (kAttrNormal | kAttrUserDefined | kAttrUnused))
      s.tokens.insert(tok.text, int32_t(id));
    if (tok.attr & kAttrUserDefined) s.user_defined.insert(tok.text, int32_t(id));
  }
  s.tokens.finish();
  s.user_defined.finish();
  s.unknown_score = double(min_score) - 10.0;
}

UgmModel::~UgmModel() = default;

void UgmModel::encode(std::string_view text, std::vector<int32_t>& out) const {
  const State& s = *state_;
  const Vocab& vocab = s.vocab;
  const std::string normalized = s.normalize(text);
  const size_t n = normalized.size();
  if (n == 0) return;

  // best[i]: the best segmentation of the first i bytes, by its last token.
  struct Best {
    int32_t token;
    size_t start;
    double score;
  };
  std::vector<Best> best(n + 1, {vocab.unk, 0, -DBL_MAX});
  best[0] = {vocab.unk, 0, 0.0};
  for (size_t start = 0; start < n;) {
    const size_t char_len = std::min(unicode::sequence_length(uint8_t(normalized[start])), n - start);
    const Best current = best[start];
    bool whole_char_token = false;
    int32_t node = 0;
    for (size_t end = start; end < n;) {
      node = s.tokens.step(node, uint8_t(normalized[end]));
      ++end;
      if (node < 0) break;
      const int32_t id = s.tokens.value(node);
      if (id < 0) continue;
      if (end - start == char_len) whole_char_token = true;
      // User-defined tokens score 0 so they win over the (negative) log probabilities.
      const double score = current.score +
                           (vocab.tokens[size_t(id)].attr & kAttrUserDefined
                                ? 0.0
                                : double(vocab.tokens[size_t(id)].score));
      if (score > best[end].score) best[end] = {id, start, score};
    }
    if (!whole_char_token) {
      const double score = current.score + s.unknown_score;
      Best& slot = best[start + char_len];
      if (score > slot.score) slot = {vocab.unk, start, score};
    }
    start += char_len;
  }

  // Walk back from the end; runs of unknown tokens collapse into one.
  const size_t first = out.size();
  bool prev_unknown = false;
  for (size_t end = n;;) {
    const Best& b = best[end];
    const bool unknown = b.token == vocab.unk;
    if (!(prev_unknown && unknown) && b.token >= 0) out.push_back(b.token);
    if (b.start == 0) break;
    prev_unknown = unknown;
    end = b.start;
  }
  std::reverse(out.begin() + std::ptrdiff_t(first), out.end());
}

}  // namespace endless::detail
