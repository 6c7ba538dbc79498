// Regex pre-tokenization with PCRE2 (UTF + UCP, JIT-compiled).
//
// llama.cpp runs these patterns through its own matcher over a rewritten text: non-ASCII
// whitespace becomes '\v', and for patterns using \p{..} every non-ASCII character becomes a
// placeholder for its category. To split exactly as it does while matching the real text with
// PCRE2, we
//   * spell \s as the White_Space set it uses (PCRE2's own \s omits U+0085), and \S as its
//     complement;
//   * let the 3-byte whitespace characters match only \s: they are replaced by a private-use
//     stand-in that no pattern range contains (llama.cpp's '\v' is in none either);
//   * reproduce its ASCII view of \p{S}, which leaves out '~';
//   * read \p{Lu}, \p{Ll}, ... as \p{L} (its placeholders do not tell letters apart) and \d as
//     [0-9];
//   * let '$' match only at the very end (ECMAScript semantics).
#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace endless::detail {

namespace {

// Pieces of llama.cpp's patterns that several pre-tokenizers share.
const char* const kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const char* const kContractions = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";

std::string llama3_like(const char* digits) {
  return std::string(kContractions) + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|)" + digits +
         R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

}  // namespace

std::vector<std::string> pretokenizer_patterns(PreTokenizerKind kind) {
  using K = PreTokenizerKind;
  switch (kind) {
    case K::Llama3: case K::Dbrx: case K::Smaug: case K::Chatglm4:
      return {llama3_like(R"(\p{N}{1,3})")};
    case K::Stablelm2: case K::Qwen2:
      return {llama3_like(R"(\p{N})")};
    case K::DeepseekLlm:
      return {
          R"([\r\n])",
          R"(\s?[)"
          R"(A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
          R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-)"
          R"(\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-)"
          R"(\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-)"
          R"(\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-)"
          R"(\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D})"
          R"(\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-)"
          R"(\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-)"
          R"(\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126})"
          R"(\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149})"
          R"(\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2})"
          R"(\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-)"
          R"(\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-)"
          R"(\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2})"
          R"(\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943})"
          R"(]+)",
          R"(\s?[!-/:-~！-／：-～‘-‟　-。]+)",
          R"(\s+$)",
          R"([一-龥ࠀ-一가-퟿]+)",
          R"(\p{N}+)",
      };
    case K::DeepseekCoder:
      return {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", R"([一-龥ࠀ-一가-퟿]+)", R"(\p{N})"};
    case K::Deepseek3Llm:
      return {
          R"(\p{N}{1,3})",
          R"([一-龥぀-ゟ゠-ヿ]+)",
          R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      };
    case K::Falcon:
      return {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, R"([0-9][0-9][0-9])"};
    case K::Starcoder: case K::Refact: case K::CommandR: case K::Smollm: case K::Codeshell:
    case K::Exaone: case K::Minerva:
      return {R"(\p{N})", kGpt2};
    case K::Gpt2: case K::Mpt: case K::Olmo: case K::Jais: case K::Trillion:
      return {kGpt2};
    case K::Poro: case K::Bloom: case K::Gpt3Finnish:
      return {R"( ?[^(\s|.,!?…。，、।۔،)]+)"};
    case K::Viking:
      return {R"( ?[^(\s|.,!?…。，、।۔،)]+)", R"(\p{N})"};
    case K::Tekken:
      return {
          R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      };
    case K::Chameleon:
      return {
          R"(<sentinel:[0-9]+>)",
          R"((IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z)",
          R"(([\t\n]|    |  ))",
          R"(\p{N})",
          R"([\p{P}!-/:-@\[-`{-~])",
          kGpt2,
      };
    case K::Gpt4o: {
      const std::string c = std::string(kContractions) + "?";
      return {R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)" + c +
              R"(|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)" + c +
              R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
    }
    case K::SuperBpe:
      return {R"(\p{N}+)", R"((?=(\d{3})+(?!\d)))"};
    case K::BailingMoe:
      return {
          R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)",
      };
    case K::SeedCoder:
      return {std::string(kContractions) +
              R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)"};
    case K::Default:
      break;
  }
  return {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", R"([0-9][0-9][0-9])"};
}

namespace {

// Stand-ins in the text we match (same UTF-8 length as what they replace, so offsets carry
// over): surrogates (which PCRE2 rejects) and the 3-byte whitespace characters.
constexpr uint32_t kSurrogateStandIn = 0xE000;
constexpr uint32_t kWhitespaceStandIn = 0xE001;

// The White_Space set as the body of a character class, plus the whitespace stand-in.
const char* const kSpaceClassBody =
    R"(\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F})"
    R"(\x{3000}\x{E001})";

// Rewrites one of llama.cpp's patterns for PCRE2 (see the file comment).
std::string translate(std::string_view pattern) {
  std::string out;
  size_t i = 0;
  const auto category = [&](size_t at, size_t& len) -> std::string {
    // \p{X} or \p{Xy}; returns the PCRE2 spelling, len = characters consumed.
    const size_t close = pattern.find('}', at);
    if (close == std::string_view::npos) fail("bad pre-tokenizer pattern: ", pattern);
    len = close - at + 1;
    std::string name(pattern.substr(at + 3, close - at - 3));
    if (name.size() == 2 && name[0] == 'L') name = "L";
    return "\\p{" + name + "}";
  };
  while (i < pattern.size()) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 's') {
        out += "[";
        out += kSpaceClassBody;
        out += "]";
      } else if (e == 'S') {
        out += "[^";
        out += kSpaceClassBody;
        out += "]";
      } else if (e == 'd') {
        out += "[0-9]";
      } else if (e == 'p') {
        size_t len;
        const std::string cat = category(i, len);
        out += cat == "\\p{S}" ? "(?:(?!~)\\p{S})" : cat;
        i += len;
        continue;
      } else {
        out.append(pattern.substr(i, 2));
      }
      i += 2;
      continue;
    }
    if (c != '[') {
      out.push_back(c);
      ++i;
      continue;
    }
    // A character class: copy it, rewriting escapes; note whether it holds \p{S} or '~'.
    size_t j = i + 1;
    const bool negated = j < pattern.size() && pattern[j] == '^';
    if (negated) ++j;
    std::string body;
    bool has_symbol = false, has_tilde = false;
    bool first = true;
    while (j < pattern.size() && (pattern[j] != ']' || first)) {
      first = false;
      if (pattern[j] == '\\' && j + 1 < pattern.size()) {
        const char e = pattern[j + 1];
        if (e == 's') {
          body += kSpaceClassBody;
        } else if (e == 'd') {
          body += "0-9";
        } else if (e == 'S') {
          fail("unsupported \\S inside a class in pre-tokenizer pattern: ", pattern);
        } else if (e == 'p') {
          size_t len;
          const std::string cat = category(j, len);
          has_symbol |= cat == "\\p{S}";
          body += cat;
          j += len;
          continue;
        } else {
          body.append(pattern.substr(j, 2));
        }
        j += 2;
        continue;
      }
      has_tilde |= pattern[j] == '~';
      body.push_back(pattern[j]);
      ++j;
    }
    if (j >= pattern.size()) fail("unterminated class in pre-tokenizer pattern: ", pattern);
    const std::string cls = std::string(negated ? "[^" : "[") + body + "]";
    if (has_symbol && !has_tilde)
      out += negated ? "(?:~|" + cls + ")" : "(?:(?!~)" + cls + ")";
    else
      out += cls;
    i = j + 1;
  }
  return out;
}

// Per-thread PCRE2 resources: a JIT stack large enough for long words.
struct ThreadResources {
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* context = nullptr;
  ThreadResources() {
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadResources() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
  }
};

ThreadResources& thread_resources() {
  thread_local ThreadResources resources;
  return resources;
}

// Bytes 0xE1..0xE3 start every 3-byte White_Space character.
bool is_three_byte_space(std::string_view s, size_t pos, uint32_t& cpt) {
  size_t p = pos;
  if (!unicode::decode_lenient(s, p, cpt) || p - pos != 3) return false;
  return unicode::is_whitespace(cpt);
}

}  // namespace

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
  for (const std::string& pattern : patterns) {
    const std::string translated = translate(pattern);
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()),
                                   translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error,
                                   &error_offset, nullptr);
    if (compiled->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail("cannot compile pre-tokenizer pattern '", pattern, "' at offset ", error_offset, ": ",
           reinterpret_cast<const char*>(message));
    }
    // Without JIT support pcre2_match() interprets the pattern: slower, same results.
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);
    regexes_.push_back(std::move(compiled));
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::string& normalized,
                         std::vector<Word>& words) const {
  // The text llama.cpp tokenizes: its code points re-encoded, invalid bytes as U+FFFD.
  normalized.clear();
  normalized.reserve(text.size());
  size_t valid_prefix = 0;
  while (valid_prefix < text.size() && static_cast<unsigned char>(text[valid_prefix]) < 0x80)
    ++valid_prefix;
  normalized.append(text.substr(0, valid_prefix));
  for (size_t pos = valid_prefix; pos < text.size();) {
    uint32_t cpt;
    if (unicode::decode_lenient(text, pos, cpt)) {
      unicode::append_utf8(normalized, cpt <= 0x10FFFF ? cpt : unicode::kReplacement);
    } else {
      unicode::append_utf8(normalized, unicode::kReplacement);
      ++pos;
    }
  }

  // The text PCRE2 matches: same length, with the stand-ins.
  std::string match = normalized;
  for (size_t pos = valid_prefix; pos < match.size();) {
    const uint8_t b = static_cast<uint8_t>(match[pos]);
    if (b < 0x80) {
      ++pos;
      continue;
    }
    const size_t n = unicode::sequence_length(b);
    uint32_t cpt;
    if (n == 3 && is_three_byte_space(match, pos, cpt)) {
      std::string standin;
      unicode::append_utf8(standin, kWhitespaceStandIn);
      match.replace(pos, 3, standin);
    } else if (n == 3 && b == 0xED && static_cast<uint8_t>(match[pos + 1]) >= 0xA0) {
      std::string standin;
      unicode::append_utf8(standin, kSurrogateStandIn);
      match.replace(pos, 3, standin);
    }
    pos += n;
  }

  // Each pattern splits every piece the previous ones produced: matches and the gaps between
  // them become pieces; an empty match only marks a boundary.
  std::vector<Word> pieces{{0, match.size()}};
  std::vector<Word> next;
  ThreadResources& res = thread_resources();
  for (const auto& regex : regexes_) {
    next.clear();
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(regex->code, nullptr);
    if (md == nullptr) fail("out of memory in the pre-tokenizer");
    for (const Word& piece : pieces) {
      const auto subject = reinterpret_cast<PCRE2_SPTR>(match.data() + piece.offset);
      size_t start = 0;      // where the next search begins
      size_t emitted = 0;    // end of the last piece handed on
      uint32_t options = 0;  // after an empty match: retry non-empty at the same place
      while (start <= piece.length) {
        int rc = pcre2_match(regex->code, subject, piece.length, start,
                             options | PCRE2_NO_UTF_CHECK, md, res.context);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // an enormous word: let the interpreter try
          rc = pcre2_match(regex->code, subject, piece.length, start,
                           options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH && options != 0) {
          // No non-empty match right here: move one character on and search normally.
          options = 0;
          ++start;
          while (start < piece.length && (match[piece.offset + start] & 0xC0) == 0x80) ++start;
          continue;
        }
        if (rc < 0) break;  // no (further) match; resource limits also end the search here
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (ms > emitted) next.push_back({piece.offset + emitted, ms - emitted});
        if (me > ms) next.push_back({piece.offset + ms, me - ms});
        emitted = me;
        start = me;
        options = me == ms ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        if (me == ms && me == piece.length) break;
      }
      if (emitted < piece.length) next.push_back({piece.offset + emitted, piece.length - emitted});
    }
    pcre2_match_data_free(md);
    pieces.swap(next);
  }
  words = std::move(pieces);
}

}  // namespace endless::detail
