// Temporary: the gpt2, bert and t5 tokenizers are being written; until then they refuse to load.
#include "tokenizer/bpe.h"
#include "tokenizer/ugm.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace endless::detail {
struct BpeModel::State {};
BpeModel::BpeModel(const Vocab&, const std::vector<std::string_view>&, PreTokenizerKind, bool) {
  fail("gpt2 tokenizers are not supported yet");
}
BpeModel::~BpeModel() = default;
void BpeModel::encode(std::string_view, std::vector<int32_t>&) const {}
struct UgmModel::State {};
UgmModel::UgmModel(const Vocab&, std::string) { fail("t5 tokenizers are not supported yet"); }
UgmModel::~UgmModel() = default;
void UgmModel::encode(std::string_view, std::vector<int32_t>&) const {}
void wpm_encode(const Vocab&, std::string_view, std::vector<int32_t>&) {
  fail("bert tokenizers are not supported yet");
}
}  // namespace endless::detail
