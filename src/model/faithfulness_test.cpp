// Faithfulness to llama.cpp: for every model in ../shared/reference/llamacpp-greedy.txt, the
// first logits of the first three steps and the greedy continuation of "Once upon a time" must
// match what libllama computed (prompt ids are taken from the reference; the tokenizer has its
// own tests).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "model/forward.h"
#include "test_support.h"

namespace endless {
namespace {

struct Reference {
  std::string model;
  std::vector<int32_t> prompt;
  std::vector<std::vector<float>> first8;  // per step
  std::vector<int32_t> argmax;
  std::vector<int32_t> greedy;
};

std::vector<Reference> read_references() {
  std::ifstream in(endless::testing::shared_file("reference/llamacpp-greedy.txt"));
  std::vector<Reference> refs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("== ")) {
      refs.emplace_back().model = line.substr(3);
      continue;
    }
    if (refs.empty()) continue;
    Reference& r = refs.back();
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (key == "prompt_ids:") {
      for (int32_t v; s >> v;) r.prompt.push_back(v);
    } else if (key.starts_with("logits_step")) {
      std::vector<float> v;
      std::string tok;
      while (s >> tok) {
        if (tok.starts_with("argmax=")) r.argmax.push_back(std::stoi(tok.substr(7)));
        else if (!tok.starts_with("max=")) v.push_back(std::stof(tok));
      }
      r.first8.push_back(v);
    } else if (key == "greedy_ids:") {
      for (int32_t v; s >> v;) r.greedy.push_back(v);
    }
  }
  return refs;
}

std::string model_path(const std::string& name) {
  for (const char* dir : {"models/", "models/synth/"}) {
    const auto p = endless::testing::shared_file(std::string(dir) + name);
    if (std::filesystem::exists(p)) return p.string();
  }
  return {};
}

// Float weights, and Q4_0 weights (multiplied as llama.cpp multiplies them after repacking:
// kernels::by_block), give llama.cpp's logits to within printing precision; other quantized
// types round differently in a few places and are held to a looser tolerance.
bool is_exact_type(const std::string& name) {
  return name.find(".q") == std::string::npos || name.ends_with(".q4_0.gguf");
}

class Faithfulness : public ::testing::TestWithParam<int> {};

TEST(FaithfulnessData, ReferenceListsModels) {
  ENDLESS_REQUIRE_SHARED("reference/llamacpp-greedy.txt");
  EXPECT_GE(read_references().size(), 10u);
}

TEST_P(Faithfulness, MatchesLlamaCpp) {
  ENDLESS_REQUIRE_SHARED("reference/llamacpp-greedy.txt");
  const auto refs = read_references();
  if (GetParam() >= static_cast<int>(refs.size())) GTEST_SKIP() << "no reference #" << GetParam();
  const Reference& ref = refs[GetParam()];
  const std::string path = model_path(ref.model);
  if (path.empty()) GTEST_SKIP() << ref.model << " is absent from ../shared/models";
  SCOPED_TRACE(ref.model);
  const bool exact = is_exact_type(ref.model);
  const bool q4_0 = ref.model.ends_with(".q4_0.gguf");
  const float tol = q4_0 ? 1e-5f : exact ? 1e-3f : 2e-2f;

  auto model = Model::load(path);
  Engine engine(model, 2);
  MemoryConfig mem;
  mem.n_ctx = 256;
  auto seq = engine.new_sequence(mem);
  const int64_t V = model->config().n_vocab;
  std::vector<float> logits = engine.eval(*seq, ref.prompt, false);
  std::vector<int32_t> greedy;
  for (size_t step = 0; step < ref.greedy.size(); ++step) {
    int32_t best = 0;
    for (int64_t i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
    if (step < ref.first8.size()) {
      for (size_t i = 0; i < ref.first8[step].size(); ++i)
        EXPECT_NEAR(logits[i], ref.first8[step][i], tol) << "step " << step << " logit " << i;
      EXPECT_EQ(best, ref.argmax[step]) << "step " << step;
    }
    greedy.push_back(best);
    // Follow the reference's tokens so one early difference does not cascade into all the rest.
    const int32_t next = ref.greedy[step];
    logits = engine.eval(*seq, std::span(&next, 1), false);
  }
  const size_t must_match = exact ? ref.greedy.size() : 8;
  size_t same = 0;
  while (same < greedy.size() && greedy[same] == ref.greedy[same]) ++same;
  EXPECT_GE(same, must_match) << "first difference at greedy step " << same;
}

INSTANTIATE_TEST_SUITE_P(Reference, Faithfulness, ::testing::Range(0, 16));

}  // namespace
}  // namespace endless
