// `endless tokenize -m MODEL`: text (stdin, -p or -f) to token ids, one line, space-separated.
// `endless detokenize -m MODEL`: token ids (stdin or arguments) back to text.
// `endless tokenize --bench N` times encoding and decoding instead (see bench/tokenize.md).
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace endless::cli {
namespace {

std::string read_stream(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string read_input(const std::string& prompt, const std::string& file) {
  if (!prompt.empty()) return prompt;
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail("cannot open ", file);
    return read_stream(in);
  }
  return read_stream(std::cin);
}

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string file;
  bool no_bos = false;
  bool special = false;
  bool pieces = false;
  int bench = 0;
};

// CPU time of this thread: on a shared machine steadier than wall-clock time.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

int run_bench(const Tokenizer& tok, const std::string& text, const TokenizeOptions& o) {
  std::vector<int32_t> ids;
  double encode_s = 1e30, decode_s = 1e30;
  std::string decoded;
  // Best of N: the least disturbed run.
  for (int i = 0; i < o.bench; ++i) {
    const double t0 = thread_seconds();
    ids = tok.encode(text, !o.no_bos, o.special);
    const double t1 = thread_seconds();
    decoded = tok.decode(ids);
    const double t2 = thread_seconds();
    encode_s = std::min(encode_s, t1 - t0);
    decode_s = std::min(decode_s, t2 - t1);
  }
  std::printf("model:   %s (%s, pre %s, %d tokens)\n", o.model.c_str(),
              std::string(tok.model_name()).c_str(), std::string(tok.pre_name()).c_str(),
              tok.n_vocab());
  std::printf("input:   %zu bytes -> %zu tokens (%.2f bytes/token)\n", text.size(), ids.size(),
              ids.empty() ? 0.0 : double(text.size()) / double(ids.size()));
  std::printf("encode:  %.3f s  %.0f tokens/s  %.2f MB/s  (CPU time, best of %d)\n", encode_s,
              double(ids.size()) / encode_s, double(text.size()) / encode_s / 1e6, o.bench);
  std::printf("decode:  %.3f s  %.0f tokens/s\n", decode_s, double(ids.size()) / decode_s);
  std::printf("round trip: %s\n", decoded == text ? "identical" : "differs");
  return 0;
}

int run_tokenize(const TokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(o.model));
  const std::string text = read_input(o.prompt, o.file);
  if (o.bench > 0) return run_bench(tok, text, o);
  const std::vector<int32_t> ids = tok.encode(text, !o.no_bos, o.special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
    if (o.pieces) line += "'" + tok.token_to_piece(ids[i], true) + "'";
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

struct DetokenizeOptions {
  std::string model;
  std::vector<std::string> ids;
  bool special = false;
  bool stream = false;
};

int run_detokenize(const DetokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(o.model));
  std::string words;
  if (!o.ids.empty()) {
    for (const auto& s : o.ids) words += s + " ";
  } else {
    words = read_stream(std::cin);
  }
  for (char& c : words)
    if (c == ',' || c == '[' || c == ']') c = ' ';
  std::istringstream in(words);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < INT32_MIN || id > INT32_MAX)
      fail("'", word, "' is not a token id");
    ids.push_back(int32_t(id));
  }
  std::string text;
  if (o.stream) {
    StreamingDetokenizer stream(tok);
    for (int32_t id : ids) text += stream.push(id);
    text += stream.finish();
  } else {
    text = tok.decode(ids, false, o.special);
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

Registration tokenize_reg(
    "tokenize", "Turn text (stdin, -p or -f) into token ids with a model's tokenizer",
    [](CLI::App& sub) {
      auto o = std::make_shared<TokenizeOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model (or vocabulary) file")
          ->required()
          ->check(existing_file());
      sub.add_option("-p,--prompt", o->prompt, "Text to tokenize instead of stdin");
      sub.add_option("-f,--file", o->file, "File to tokenize instead of stdin")
          ->check(existing_file());
      sub.add_flag("--no-bos", o->no_bos, "Add no BOS/EOS (or CLS/SEP) tokens");
      sub.add_flag("--special", o->special, "Recognize control tokens written in the text");
      sub.add_flag("--pieces", o->pieces, "Print each id with its text");
      sub.add_option("--bench", o->bench, "Time N encode/decode runs instead of printing ids")
          ->check(CLI::Range(1, 1000));
      return [o] { return run_tokenize(*o); };
    });

Registration detokenize_reg(
    "detokenize", "Turn token ids (arguments or stdin) back into text",
    [](CLI::App& sub) {
      auto o = std::make_shared<DetokenizeOptions>();
      sub.add_option("-m,--model", o->model, "GGUF model (or vocabulary) file")
          ->required()
          ->check(existing_file());
      sub.add_option("ids", o->ids, "Token ids (default: read from stdin)");
      sub.add_flag("--special", o->special, "Print control tokens such as <s> as text");
      sub.add_flag("--stream", o->stream,
                   "Decode token by token as during generation (UTF-8 safe)");
      return [o] { return run_detokenize(*o); };
    });

}  // namespace
}  // namespace endless::cli
