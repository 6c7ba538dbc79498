// `endless info -m MODEL`: what a GGUF file holds.
#include <cstdio>
#include <map>

#include "cli.h"
#include "gguf/gguf.h"
#include "model/config.h"
#include "util/error.h"

namespace endless::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool all_metadata = false;
};

int run_info(const InfoOptions& o) {
  const gguf::File f = gguf::File::open(o.model);
  std::printf("file:         %s\n", o.model.c_str());
  std::printf("size:         %.2f MiB (%zu bytes)\n", f.file_size() / 1048576.0, f.file_size());
  std::printf("gguf version: %u\n", f.version());
  int64_t params = 0;
  std::map<std::string_view, std::pair<int, int64_t>> by_type;
  for (const auto& t : f.tensors()) {
    params += t.n_elements();
    auto& e = by_type[type_name(t.type)];
    e.first += 1;
    e.second += static_cast<int64_t>(t.nbytes);
  }
  try {
    const ModelConfig c = ModelConfig::from_gguf(f);
    std::printf("architecture: %s%s%s\n", c.arch.c_str(), c.name.empty() ? "" : "  name: ",
                c.name.c_str());
    std::printf("hparams:      dim %d, layers %d, heads %d, kv heads %d, head dim %d, ffn %d\n",
                c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ff);
    std::printf("              context %lld, rms eps %g, rope base %g, rope dims %d%s%s\n",
                static_cast<long long>(c.ctx_train), c.rms_eps, c.rope.freq_base, c.rope.n_rot,
                c.rope.freq_scale != 1 ? cat(", linear scale ", 1 / c.rope.freq_scale).c_str() : "",
                c.qkv_bias ? ", q/k/v biases" : "");
  } catch (const Error& e) {
    std::printf("architecture: not runnable by endless (%s)\n", e.what());
  }
  if (auto model = f.get_string("tokenizer.ggml.model")) {
    const auto* tokens = f.get_array("tokenizer.ggml.tokens");
    std::printf("tokenizer:    %s%s%s, %llu tokens\n", std::string(*model).c_str(),
                f.get_string("tokenizer.ggml.pre") ? " / pre " : "",
                std::string(f.get_string("tokenizer.ggml.pre").value_or("")).c_str(),
                static_cast<unsigned long long>(tokens ? tokens->count : 0));
  }
  std::printf("tensors:      %zu (%.3f M parameters)\n", f.tensors().size(), params / 1e6);
  for (const auto& [name, e] : by_type)
    std::printf("  %-8s %5d tensors, %.2f MiB\n", std::string(name).c_str(), e.first,
                e.second / 1048576.0);
  std::printf("metadata:\n");
  for (const auto& [key, value] : f.metadata()) {
    if (!o.all_metadata && key.starts_with("tokenizer.") && value.type == gguf::ValueType::ARRAY)
      std::printf("  %-40s %s\n", std::string(key).c_str(),
                  value.to_string(o.all_metadata ? 64 : 4).c_str());
    else
      std::printf("  %-40s %s\n", std::string(key).c_str(), value.to_string().c_str());
  }
  return 0;
}

Registration reg("info", "Show a GGUF model's architecture, hyper-parameters, tensors and tokenizer",
                 [](CLI::App& sub) {
                   auto o = std::make_shared<InfoOptions>();
                   sub.add_option("-m,--model", o->model, "GGUF model file")
                       ->required()
                       ->check(existing_file());
                   sub.add_flag("--all", o->all_metadata, "Show more of each metadata array");
                   return [o] { return run_info(*o); };
                 });

}  // namespace
}  // namespace endless::cli
