// Loading the vocabulary from GGUF metadata, special-token splitting, decoding and streaming.
// The behaviour follows llama.cpp's llama-vocab.cpp as of February 2025 (commit c392e509).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>

#include "gguf/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/ugm.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace endless {
namespace detail {

Vocab::Vocab() = default;
Vocab::~Vocab() = default;

int32_t Vocab::byte_token(uint8_t byte) const {
  static constexpr char kHex[] = "0123456789ABCDEF";
  const char name[6] = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
  int32_t id = find(std::string_view(name, 6));
  if (id >= 0) return id;
  // Vocabularies without byte fallback (llama2.c's character-level ones) may hold the byte as a
  // one-character token; failing that the byte is unknown (llama.cpp would throw here).
  id = find(std::string_view(reinterpret_cast<const char*>(&byte), 1));
  return id >= 0 ? id : unk;
}

}  // namespace detail

namespace {

using detail::TokenInfo;
using detail::Vocab;
using detail::VocabKind;
using detail::PreTokenizerKind;

const char kEscapedSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// isspace() in the C locale, which llama.cpp uses to strip around special tokens.
bool is_c_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// ---- loading ----

// tokenizer.ggml.token_type values.
uint32_t attr_from_type(int64_t type) {
  switch (type) {
    case 1: return detail::kAttrNormal;
    case 2: return detail::kAttrUnknown;
    case 3: return detail::kAttrControl;
    case 4: return detail::kAttrUserDefined;
    case 5: return detail::kAttrUnused;
    case 6: return detail::kAttrByte;
    default: return detail::kAttrUndefined;
  }
}

// Reads an optional special-token id; ids outside the vocabulary (llama2.c conversions store
// 0xFFFFFFFF for "none") leave the default in place, as llama.cpp does.
void read_special_id(const gguf::File& f, const char* key, size_t n_tokens, int32_t& id) {
  const gguf::Value* v = f.find(key);
  if (v == nullptr || !v->is_integer()) return;
  int64_t value;
  try {
    value = v->as_int();
  } catch (const Error&) {
    return;  // a uint64 too large to be an id
  }
  if (value >= 0 && uint64_t(value) < n_tokens) id = int32_t(value);
}

bool read_bool(const gguf::File& f, const char* key, bool fallback) {
  const gguf::Value* v = f.find(key);
  if (v == nullptr) return fallback;
  if (v->type != gguf::ValueType::BOOL)
    fail(f.path(), ": metadata '", key, "' should be a bool but is a ",
         gguf::value_type_name(v->type));
  return v->as_bool();
}

// Pre-tokenizer settings per tokenizer.ggml.pre value: the regex list and flag overrides.
struct PreSettings {
  PreTokenizerKind kind;
  bool clean_spaces = true;
  bool ignore_merges = false;
  bool add_bos = false;
  bool no_bos = false;  // chatglm: the model has no BOS
};

PreSettings bpe_pre_settings(std::string_view pre) {
  using K = PreTokenizerKind;
  const auto is = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), pre) != names.end();
  };
  if (pre == "default") return {K::Default};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3"})) return {K::Llama3, true, true, true};
  if (pre == "deepseek-llm") return {K::DeepseekLlm, false};
  if (pre == "deepseek-coder") return {K::DeepseekCoder, false};
  if (pre == "deepseek-v3") return {K::Deepseek3Llm, false};
  if (pre == "falcon") return {K::Falcon};
  if (pre == "mpt") return {K::Mpt};
  if (pre == "starcoder") return {K::Starcoder};
  if (is({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
          "jina-v2-de", "jina-v2-code", "roberta-bpe"}))
    return {K::Gpt2};
  if (pre == "refact") return {K::Refact};
  if (pre == "command-r") return {K::CommandR, false};
  if (is({"qwen2", "deepseek-r1-qwen", "megrez"})) return {K::Qwen2, pre != "megrez"};
  if (pre == "stablelm2") return {K::Stablelm2};
  if (pre == "olmo") return {K::Olmo};
  if (pre == "dbrx") return {K::Dbrx};
  if (pre == "smaug-bpe") return {K::Smaug};
  if (pre == "poro-chat") return {K::Poro, false};
  if (is({"chatglm-bpe", "glm4"})) return {K::Chatglm4, true, false, false, true};
  if (pre == "viking") return {K::Viking, false};
  if (pre == "jais") return {K::Jais};
  if (pre == "tekken") return {K::Tekken, false, true, true};
  if (pre == "smollm") return {K::Smollm, false};
  if (pre == "codeshell") return {K::Codeshell};
  if (pre == "bloom") return {K::Bloom};
  if (pre == "gpt3-finnish") return {K::Gpt3Finnish};
  if (pre == "exaone") return {K::Exaone};
  if (pre == "chameleon") return {K::Chameleon, false, false, true};
  if (pre == "minerva-7b") return {K::Minerva};
  // Pre-tokenizers llama.cpp learned after February 2025; their files did not exist then.
  if (is({"gpt-4o", "llama4"})) return {K::Gpt4o, false};
  if (pre == "superbpe") return {K::SuperBpe, false};
  if (pre == "trillion") return {K::Trillion, false};
  if (is({"bailingmoe", "llada-moe"})) return {K::BailingMoe, false};
  if (pre == "seed-coder") return {K::SeedCoder, false};
  if (pre == "hunyuan") return {K::Qwen2, false};
  if (pre == "grok-2") return {K::Qwen2, false};
  fail("unknown pre-tokenizer type '", pre, "' (tokenizer.ggml.pre)");
}

// ---- special-token splitting ----

struct Fragment {
  int32_t token;  // >= 0: a special token; -1: raw text [offset, offset + length)
  size_t offset;
  size_t length;
};

// Splits text around special tokens, longest token text first (llama.cpp's
// tokenizer_st_partition). Control and unknown tokens count only with parse_special;
// user-defined tokens always do.
std::vector<Fragment> partition(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : vocab.special_tokens) {
    const TokenInfo& tok = vocab.tokens[size_t(id)];
    if (!parse_special && (tok.attr & (detail::kAttrControl | detail::kAttrUnknown))) continue;
    const std::string_view needle = tok.text;
    next.clear();
    bool changed = false;
    for (const Fragment& frag : fragments) {
      if (frag.token >= 0) {
        next.push_back(frag);
        continue;
      }
      size_t base = frag.offset;
      size_t length = frag.length;
      while (true) {
        const size_t match = text.substr(0, base + length).find(needle, base);
        if (match == std::string_view::npos) {
          if (length > 0) next.push_back({-1, base, length});
          break;
        }
        changed = true;
        size_t left = match - base;
        if (tok.attr & detail::kAttrLstrip)
          while (left > 0 && is_c_space(text[base + left - 1])) --left;
        if (left > 0) next.push_back({-1, base, left});
        next.push_back({id, 0, 0});
        size_t right_offset = match + needle.size();
        size_t right_length = base + length - right_offset;
        if (tok.attr & detail::kAttrRstrip)
          while (right_length > 0 && is_c_space(text[right_offset])) ++right_offset, --right_length;
        base = right_offset;
        length = right_length;
        if (length == 0) break;
      }
    }
    if (changed) fragments.swap(next);
  }
  return fragments;
}

// ---- pieces ----

// llama.cpp's llama_decode_text: byte-level BPE characters back to bytes; characters outside
// the byte map are spelled out in a visible marker rather than dropped.
std::string decode_byte_level(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const uint32_t cpt : unicode::codepoints(text)) {
    const int byte = unicode::chars_to_byte(cpt);
    if (byte >= 0) {
      out.push_back(char(byte));
      continue;
    }
    std::string utf8;
    unicode::append_utf8(utf8, cpt);
    out += "[UNK_BYTE_0x";
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : utf8) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
    out.append(text);
    out += "]";
  }
  return out;
}

// The byte a <0xNN> token stands for (hex digits parsed leniently, like strtol).
char byte_of_token(std::string_view text) {
  unsigned value = 0;
  for (size_t i = 3; i < text.size() && i < 5; ++i) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else break;
    value = value * 16 + unsigned(digit);
  }
  return char(value);
}

// A token's bytes with special tokens rendered (llama.cpp's cached token_to_piece(special=true)).
std::string render_piece(const Vocab& vocab, const TokenInfo& tok) {
  const uint32_t special = detail::kAttrUnknown | detail::kAttrControl | detail::kAttrUserDefined;
  if (tok.attr & special) return tok.text;
  if (vocab.kind == VocabKind::Bpe) {
    if (tok.attr & detail::kAttrNormal) return decode_byte_level(tok.text);
    return {};  // byte, unused and undefined tokens have no text in byte-level BPE
  }
  if (tok.attr & detail::kAttrNormal) return replace_all(tok.text, kEscapedSpace, " ");
  if (tok.attr & detail::kAttrByte) return std::string(1, byte_of_token(tok.text));
  return {};
}

// llama.cpp's clean_up_tokenization_spaces, three passes over the bytes.
void clean_spaces(std::string& text) {
  const auto pass = [&](auto&& keep) {
    if (text.empty()) return;
    std::string out;
    out.reserve(text.size());
    out.push_back(text[0]);
    for (size_t i = 1; i < text.size(); ++i) keep(out, i);
    text.swap(out);
  };
  // " ?", " !", " .", " ,": drop the space
  pass([&](std::string& out, size_t i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) out.pop_back();
    out.push_back(x);
  });
  // " ' ": drop both spaces around a lone apostrophe
  if (!text.empty()) {
    std::string out;
    out.push_back(text[0]);
    for (size_t i = 1; i < text.size(); ++i) {
      const char x = text[i];
      if (x == '\'' && i + 1 < text.size() && text[i - 1] == ' ' && text[i + 1] == ' ') {
        out.pop_back();
        // llama.cpp skips the following space and leaves a NUL where it stood, which the next
        // comparison with the previous character then sees.
        text[++i] = '\0';
      }
      out.push_back(x);
    }
    text.swap(out);
  }
  // " 's", " 'm", " 're", " 've": drop the space
  pass([&](std::string& out, size_t i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && x == '\'' && i + 1 < text.size()) {
      const char x1 = text[i + 1];
      if (x1 == 's' || x1 == 'm') {
        out.pop_back();
      } else if (i + 2 < text.size()) {
        const char x2 = text[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) out.pop_back();
      }
    }
    out.push_back(x);
  });
}

std::shared_ptr<Vocab> load(const gguf::File& f) {
  auto vocab = std::make_shared<Vocab>();
  Vocab& v = *vocab;
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) fail(f.path(), ": no tokenizer (tokenizer.ggml.model is missing)");
  v.model = std::string(*model);
  const auto pre = f.get_string("tokenizer.ggml.pre");
  v.pre = pre ? std::string(*pre) : std::string("default");

  // Per-kind defaults, before metadata overrides them.
  if (v.model == "llama") {
    v.kind = VocabKind::Spm;
    v.bos = 1, v.eos = 2, v.unk = 0;
    v.add_space_prefix = true;
    v.add_bos = true;
  } else if (v.model == "bert") {
    v.kind = VocabKind::Wpm;
    v.bos = 101, v.unk = 100, v.sep = 102, v.pad = 0, v.mask = 103;
    v.add_bos = true;
    v.clean_spaces = true;
  } else if (v.model == "gpt2") {
    v.kind = VocabKind::Bpe;
    v.bos = 11, v.eos = 11;
    v.clean_spaces = true;
  } else if (v.model == "t5") {
    v.kind = VocabKind::Ugm;
    v.eos = 1, v.unk = 2, v.pad = 0;
    v.add_eos = true;
  } else if (v.model == "no_vocab" || v.model == "none") {
    fail(f.path(), ": the model has no vocabulary (tokenizer.ggml.model = '", v.model, "')");
  } else {
    fail(f.path(), ": unsupported tokenizer model '", v.model,
         "' (supported: llama, gpt2, bert, t5)");
  }

  PreSettings pre_settings{PreTokenizerKind::Default};
  if (v.kind == VocabKind::Bpe) {
    pre_settings = bpe_pre_settings(v.pre);
    v.clean_spaces = pre_settings.clean_spaces;
    if (pre_settings.add_bos) v.add_bos = true;
    if (pre_settings.no_bos) v.bos = -1;
  }
  v.add_space_prefix = read_bool(f, "tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  v.remove_extra_whitespaces =
      read_bool(f, "tokenizer.ggml.remove_extra_whitespaces", v.remove_extra_whitespaces);

  // Tokens, scores, types.
  const gguf::Value* tokens = f.get_array("tokenizer.ggml.tokens");
  if (tokens == nullptr) fail(f.path(), ": no vocabulary (tokenizer.ggml.tokens is missing)");
  if (tokens->elem != gguf::ValueType::STRING)
    fail(f.path(), ": tokenizer.ggml.tokens should hold strings, not ",
         gguf::value_type_name(tokens->elem));
  const size_t n = tokens->strings.size();
  if (n == 0) fail(f.path(), ": the vocabulary is empty");
  if (n > size_t(INT32_MAX)) fail(f.path(), ": the vocabulary is too large (", n, " tokens)");

  const gguf::Value* scores = f.get_array("tokenizer.ggml.scores");
  if (scores != nullptr) {
    if (scores->elem != gguf::ValueType::FLOAT32 && scores->elem != gguf::ValueType::INT32)
      fail(f.path(), ": tokenizer.ggml.scores should hold float32, not ",
           gguf::value_type_name(scores->elem));
    if (scores->count < n)
      fail(f.path(), ": tokenizer.ggml.scores has ", scores->count, " entries for ", n,
           " tokens");
  }
  const gguf::Value* types = f.get_array("tokenizer.ggml.token_type");
  if (types != nullptr) {
    if (types->elem != gguf::ValueType::INT32)
      fail(f.path(), ": tokenizer.ggml.token_type should hold int32, not ",
           gguf::value_type_name(types->elem));
    if (types->count < n)
      fail(f.path(), ": tokenizer.ggml.token_type has ", types->count, " entries for ", n,
           " tokens");
  }

  v.tokens.resize(n);
  v.token_index.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TokenInfo& tok = v.tokens[i];
    tok.text = std::string(tokens->strings[i]);
    if (tok.text.empty()) tok.text = cat("[EMPTY_", i, "]");  // llama.cpp's stand-in
    v.max_token_len = std::max(v.max_token_len, tok.text.size());
    if (const int32_t earlier = v.token_index.insert(v.tokens, int32_t(i)); earlier >= 0)
      fail(f.path(), ": duplicate token in the vocabulary: '", tok.text, "' has ids ", earlier,
           " and ", i);
    if (scores != nullptr) tok.score = float(scores->element(i).as_float());
    if (types != nullptr) tok.attr = attr_from_type(types->element(i).as_int());
  }

  // Special token ids; later keys win (the deprecated FIM names come last, as in llama.cpp).
  static const std::pair<const char*, int32_t Vocab::*> kSpecialKeys[] = {
      {"tokenizer.ggml.bos_token_id", &Vocab::bos},
      {"tokenizer.ggml.eos_token_id", &Vocab::eos},
      {"tokenizer.ggml.eot_token_id", &Vocab::eot},
      {"tokenizer.ggml.eom_token_id", &Vocab::eom},
      {"tokenizer.ggml.unknown_token_id", &Vocab::unk},
      {"tokenizer.ggml.seperator_token_id", &Vocab::sep},
      {"tokenizer.ggml.padding_token_id", &Vocab::pad},
      {"tokenizer.ggml.mask_token_id", &Vocab::mask},
      {"tokenizer.ggml.fim_pre_token_id", &Vocab::fim_pre},
      {"tokenizer.ggml.fim_suf_token_id", &Vocab::fim_suf},
      {"tokenizer.ggml.fim_mid_token_id", &Vocab::fim_mid},
      {"tokenizer.ggml.fim_pad_token_id", &Vocab::fim_pad},
      {"tokenizer.ggml.fim_rep_token_id", &Vocab::fim_rep},
      {"tokenizer.ggml.fim_sep_token_id", &Vocab::fim_sep},
      {"tokenizer.ggml.prefix_token_id", &Vocab::fim_pre},
      {"tokenizer.ggml.suffix_token_id", &Vocab::fim_suf},
      {"tokenizer.ggml.middle_token_id", &Vocab::fim_mid},
  };
  // Defaults that do not fit this vocabulary mean "none".
  for (const auto& [key, member] : kSpecialKeys)
    if (v.*member >= int32_t(n)) v.*member = -1;
  for (const auto& [key, member] : kSpecialKeys) read_special_id(f, key, n, v.*member);
  // BERT's sequence start is its CLS token.
  if (v.kind == VocabKind::Wpm) read_special_id(f, "tokenizer.ggml.cls_token_id", n, v.bos);

  v.add_bos = read_bool(f, "tokenizer.ggml.add_bos_token", v.add_bos);
  v.add_eos = read_bool(f, "tokenizer.ggml.add_eos_token", v.add_eos);
  if (v.add_bos && v.bos < 0)
    fail(f.path(), ": tokenizer.ggml.add_bos_token is true, but there is no BOS token");
  if (v.add_eos && v.eos < 0)
    fail(f.path(), ": tokenizer.ggml.add_eos_token is true, but there is no EOS token");
  if (v.kind == VocabKind::Wpm && (v.bos < 0 || v.sep < 0))
    fail(f.path(), ": a bert vocabulary needs CLS and SEP tokens");

  // Tokens recognized by their text, as llama.cpp does for files that do not name them; such a
  // token becomes a control token.
  const auto detect = [&](int32_t& id, std::initializer_list<std::string_view> names) {
    if (id >= 0) return;
    for (size_t i = 0; i < n && id < 0; ++i)
      for (std::string_view name : names)
        if (v.tokens[i].text == name) {
          id = int32_t(i);
          v.tokens[i].attr |= detail::kAttrControl;
          break;
        }
  };
  detect(v.eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
                 "_<EOT>", "<｜end▁of▁sentence｜>"});
  detect(v.eom, {"<|eom_id|>"});
  detect(v.fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"});
  detect(v.fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"});
  detect(v.fim_mid, {"<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"});
  detect(v.fim_pad, {"<|fim_pad|>", "<fim-pad>", "<PAD>"});
  detect(v.fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"});
  detect(v.fim_sep, {"<|file_sep|>"});

  // End of generation: EOS, EOT, EOM, FIM pad/repo/file separators and the usual end texts.
  v.eog.assign(n, 0);
  for (int32_t id : {v.fim_pad, v.fim_rep, v.fim_sep, v.eos, v.eot, v.eom})
    if (id >= 0) v.eog[size_t(id)] = 1;
  static const std::string_view kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>",
                                               "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
                                               "<EOT>", "_<EOT>"};
  for (size_t i = 0; i < n; ++i)
    for (std::string_view text : kEogTexts)
      if (v.tokens[i].text == text) {
        v.eog[i] = 1;
        v.tokens[i].attr |= detail::kAttrControl;
      }

  // Special tokens, longest text first: the order in which they are cut out of text.
  for (size_t i = 0; i < n; ++i)
    if (v.tokens[i].attr &
        (detail::kAttrControl | detail::kAttrUserDefined | detail::kAttrUnknown))
      v.special_tokens.push_back(int32_t(i));
  std::stable_sort(v.special_tokens.begin(), v.special_tokens.end(), [&](int32_t a, int32_t b) {
    return v.tokens[size_t(a)].text.size() > v.tokens[size_t(b)].text.size();
  });

  // Per-model whitespace stripping around special tokens (llama.cpp keys these on names).
  std::string name(f.get_string("general.name").value_or(""));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return char(std::tolower(static_cast<unsigned char>(c))); });
  const auto set_attr = [&](std::string_view text, uint32_t attr, bool on) {
    const int32_t id = v.find(text);
    if (id < 0) return;
    uint32_t& a = v.tokens[size_t(id)].attr;
    a = on ? (a | attr) : (a & ~attr);
  };
  if (v.pre == "jina-v2-de" || v.pre == "jina-v2-es" || v.pre == "jina-v2-code") {
    set_attr("<mask>", detail::kAttrLstrip, true);
  } else if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : v.special_tokens) v.tokens[size_t(id)].attr |= detail::kAttrRstrip;
    set_attr("</s>", detail::kAttrRstrip, true);
    for (std::string_view text : {"<unk>", "<s>", "<|endoftext|>"})
      set_attr(text, detail::kAttrRstrip, false);
  }

  // The per-kind machinery.
  if (v.kind == VocabKind::Bpe) {
    const gguf::Value* merges = f.get_array("tokenizer.ggml.merges");
    if (merges == nullptr) fail(f.path(), ": a gpt2 vocabulary needs tokenizer.ggml.merges");
    if (merges->elem != gguf::ValueType::STRING)
      fail(f.path(), ": tokenizer.ggml.merges should hold strings, not ",
           gguf::value_type_name(merges->elem));
    v.bpe = std::make_unique<detail::BpeModel>(v, merges->strings, pre_settings.kind,
                                               pre_settings.ignore_merges);
  } else if (v.kind == VocabKind::Ugm) {
    std::string charsmap;
    if (const gguf::Value* cm = f.get_array("tokenizer.ggml.precompiled_charsmap")) {
      if (cm->elem != gguf::ValueType::UINT8 && cm->elem != gguf::ValueType::INT8)
        fail(f.path(), ": tokenizer.ggml.precompiled_charsmap should hold bytes, not ",
             gguf::value_type_name(cm->elem));
      charsmap.assign(reinterpret_cast<const char*>(cm->raw), cm->count);
    }
    v.ugm = std::make_unique<detail::UgmModel>(v, std::move(charsmap));
  }

  if (v.kind == VocabKind::Spm) {
    v.merge_barrier.fill(1);
    for (const TokenInfo& tok : v.tokens)
      if (tok.text.size() > 1)
        for (unsigned char c : tok.text)
          if (c < 0x80) v.merge_barrier[c] = 0;
  }

  v.pieces.resize(n);
  for (size_t i = 0; i < n; ++i) v.pieces[i] = render_piece(v, v.tokens[i]);
  return vocab;
}

}  // namespace

// ---- encoding ----

void detail::Vocab::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  switch (kind) {
    case VocabKind::Spm: spm_encode(*this, text, out); break;
    case VocabKind::Bpe: bpe->encode(text, out); break;
    case VocabKind::Wpm: wpm_encode(*this, text, out); break;
    case VocabKind::Ugm: ugm->encode(text, out); break;
  }
}

Tokenizer Tokenizer::from_gguf(const gguf::File& f) { return Tokenizer(load(f)); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Vocab& v = *vocab_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const std::vector<Fragment> fragments = partition(v, text, parse_special);
  const bool bos = add_special && (v.add_bos || v.kind == VocabKind::Wpm);
  const bool eos = add_special && v.add_eos && v.kind != VocabKind::Wpm;
  if (bos) out.push_back(v.bos);
  // SentencePiece puts a space before the text, and again after each special token.
  bool after_special = true;
  std::string buffer;
  for (const Fragment& frag : fragments) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(frag.offset, frag.length);
    if (v.kind == VocabKind::Spm) {
      buffer.clear();
      if (v.add_space_prefix && after_special) buffer.push_back(' ');
      buffer.append(raw);
      v.encode_fragment(replace_all(buffer, " ", kEscapedSpace), out);
    } else {
      v.encode_fragment(raw, out);
    }
    after_special = false;
  }
  if (add_special && v.kind == VocabKind::Wpm) out.push_back(v.sep);
  if (eos) out.push_back(v.eos);
  return out;
}

// ---- decoding ----

namespace {
const Vocab& checked(const std::shared_ptr<const Vocab>& v, int32_t id) {
  if (id < 0 || size_t(id) >= v->tokens.size())
    fail("token id ", id, " is out of range (the vocabulary has ", v->tokens.size(), " tokens)");
  return *v;
}
}  // namespace

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const Vocab& v = checked(vocab_, id);
  if (!render_special && v.has_attr(id, detail::kAttrUnknown | detail::kAttrControl)) return {};
  return v.pieces[size_t(id)];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool remove_special,
                              bool render_special) const {
  const Vocab& v = *vocab_;
  bool remove_space = v.add_space_prefix;
  if (remove_special && v.add_bos && !ids.empty() && ids.front() == v.bos) {
    remove_space = false;
    ids = ids.subspan(1);
  }
  if (remove_special && v.add_eos && !ids.empty() && ids.back() == v.eos)
    ids = ids.subspan(0, ids.size() - 1);
  std::string out;
  for (const int32_t id : ids) {
    checked(vocab_, id);
    const bool strip = remove_space;
    remove_space = false;
    if (!render_special && v.has_attr(id, detail::kAttrUnknown | detail::kAttrControl)) continue;
    const std::string& piece = v.pieces[size_t(id)];
    out.append(piece, strip && !piece.empty() && piece[0] == ' ' ? 1 : 0);
  }
  if (v.clean_spaces) clean_spaces(out);
  return out;
}

int32_t Tokenizer::n_vocab() const { return int32_t(vocab_->tokens.size()); }
int32_t Tokenizer::bos_id() const { return vocab_->bos; }
int32_t Tokenizer::eos_id() const { return vocab_->eos; }
int32_t Tokenizer::eot_id() const { return vocab_->eot; }
int32_t Tokenizer::unk_id() const { return vocab_->unk; }
int32_t Tokenizer::sep_id() const { return vocab_->sep; }
int32_t Tokenizer::pad_id() const { return vocab_->pad; }
bool Tokenizer::add_bos() const { return vocab_->add_bos; }
bool Tokenizer::add_eos() const { return vocab_->add_eos; }
bool Tokenizer::add_space_prefix() const { return vocab_->add_space_prefix; }
bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && size_t(id) < vocab_->eog.size() && vocab_->eog[size_t(id)] != 0;
}
bool Tokenizer::is_control(int32_t id) const {
  return checked(vocab_, id).has_attr(id, detail::kAttrUnknown | detail::kAttrControl);
}
const std::string& Tokenizer::token_text(int32_t id) const {
  return checked(vocab_, id).tokens[size_t(id)].text;
}
float Tokenizer::token_score(int32_t id) const {
  return checked(vocab_, id).tokens[size_t(id)].score;
}
std::string_view Tokenizer::model_name() const { return vocab_->model; }
std::string_view Tokenizer::pre_name() const { return vocab_->pre; }

// ---- streaming ----

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tok) : tok_(&tok) {}

namespace {
const char kReplacementUtf8[] = "\xEF\xBF\xBD";

// Moves the complete characters of `pending` to the result, invalid bytes as U+FFFD; a valid
// but incomplete tail stays in `pending` unless `flush`.
std::string drain_utf8(std::string& pending, bool flush) {
  std::string out;
  size_t pos = 0;
  while (pos < pending.size()) {
    const unicode::Utf8Check c = unicode::check_utf8(pending, pos);
    if (c.kind == unicode::Utf8Check::Valid) {
      out.append(pending, pos, c.length);
    } else if (c.kind == unicode::Utf8Check::Truncated && !flush) {
      break;
    } else {
      out += kReplacementUtf8;
    }
    pos += c.length;
  }
  pending.erase(0, pos);
  return out;
}
}  // namespace

std::string StreamingDetokenizer::push(int32_t id) {
  std::string piece = tok_->token_to_piece(id);
  if (at_start_) {
    // The space SentencePiece put before the text is not part of it; a BOS before the first
    // text token does not change that.
    if (id == tok_->bos_id()) return {};
    at_start_ = false;
    if (tok_->add_space_prefix() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  }
  pending_ += piece;
  return drain_utf8(pending_, false);
}

std::string StreamingDetokenizer::finish() {
  std::string out = drain_utf8(pending_, true);
  at_start_ = true;
  return out;
}

}  // namespace endless
