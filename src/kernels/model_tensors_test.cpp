// Checks against tensors written by llama.cpp's llama-quantize: the synth models in ../shared were
// quantized (--pure) from the same random weights as the F32 file, so quantizing the F32 tensors
// ourselves must reproduce the quantized files byte for byte, and every dot product path must agree
// on real data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "util/fp16.h"
#include "test_support.h"

namespace endless::kernels {
namespace {

const char* kF32 = "models/synth/synth-llama-256.f32.gguf";

struct QuantFile {
  const char* path;
  TensorType type;
};
const QuantFile kQuantFiles[] = {
    {"models/synth/synth-llama-256.q8_0.gguf", TensorType::Q8_0},
    {"models/synth/synth-llama-256.q4_0.gguf", TensorType::Q4_0},
    {"models/synth/synth-llama-256.q4_k.gguf", TensorType::Q4_K},
    {"models/synth/synth-llama-256.q6_k.gguf", TensorType::Q6_K},
    {"models/synth/synth-qwen2-256.q8_0.gguf", TensorType::Q8_0},
    {"models/synth/synth-qwen2-256.q4_0.gguf", TensorType::Q4_0},
    {"models/synth/synth-qwen2-256.q4_k.gguf", TensorType::Q4_K},
    {"models/synth/synth-qwen2-256.q6_k.gguf", TensorType::Q6_K},
};

std::string f32_counterpart(const std::string& path) {
  return path.substr(0, path.find(".q")) + ".f32.gguf";
}

TEST(ModelTensors, OurQuantizersReproduceLlamaQuantize) {
  ENDLESS_REQUIRE_SHARED(kF32);
  for (const auto& qf : kQuantFiles) {
    if (!std::filesystem::exists(testing::shared_file(qf.path))) continue;
    const auto quant = gguf::File::open(testing::shared_file(qf.path).string());
    const auto f32 = gguf::File::open(testing::shared_file(f32_counterpart(qf.path)).string());
    int compared = 0;
    for (const auto& t : quant.tensors()) {
      if (t.type != qf.type) continue;
      const gguf::TensorInfo* src = f32.tensor(t.name);
      ASSERT_NE(src, nullptr) << t.name;
      ASSERT_EQ(src->type, TensorType::F32) << t.name;
      ASSERT_EQ(src->n_elements(), t.n_elements()) << t.name;
      std::vector<uint8_t> ours(t.nbytes);
      const int64_t row = t.shape[0];
      const size_t row_bytes = row_size(t.type, row);
      for (int64_t r = 0; r < t.rows(); ++r)
        quantize_weights_row(t.type, reinterpret_cast<const float*>(src->data) + r * row,
                             ours.data() + r * row_bytes, row);
      size_t first_diff = 0;
      while (first_diff < t.nbytes && ours[first_diff] == t.data[first_diff]) ++first_diff;
      EXPECT_EQ(first_diff, t.nbytes) << qf.path << " " << t.name << ": first differing byte "
                                      << first_diff << " of " << t.nbytes;
      ++compared;
    }
    EXPECT_GT(compared, 0) << qf.path << " has no " << type_name(qf.type) << " tensors";
  }
}

// stories260K's F16 and BF16 files were converted from its F32 file by llama-quantize: our
// conversions must reproduce them bit for bit.
TEST(ModelTensors, HalfConversionsReproduceLlamaQuantize) {
  const char* f32_path = "models/stories260K.gguf";
  ENDLESS_REQUIRE_SHARED(f32_path);
  const auto f32 = gguf::File::open(testing::shared_file(f32_path).string());
  for (const auto& [path, type] : {std::pair{"models/stories260K.f16.gguf", TensorType::F16},
                                   std::pair{"models/stories260K.bf16.gguf", TensorType::BF16}}) {
    if (!std::filesystem::exists(testing::shared_file(path))) continue;
    const auto half = gguf::File::open(testing::shared_file(path).string());
    int compared = 0;
    for (const auto& t : half.tensors()) {
      if (t.type != type) continue;
      const gguf::TensorInfo* src = f32.tensor(t.name);
      ASSERT_NE(src, nullptr) << t.name;
      ASSERT_EQ(src->type, TensorType::F32) << t.name;
      std::vector<uint8_t> ours(t.nbytes);
      quantize_weights_row(type, reinterpret_cast<const float*>(src->data), ours.data(),
                           t.n_elements());
      EXPECT_EQ(0, std::memcmp(ours.data(), t.data, t.nbytes)) << path << " " << t.name;
      // And back: dequantize_row gives the exact widening.
      std::vector<float> back(static_cast<size_t>(t.n_elements()));
      dequantize_row(type, t.data, back.data(), t.n_elements());
      for (int64_t i = 0; i < t.n_elements(); ++i) {
        const uint16_t h = reinterpret_cast<const uint16_t*>(t.data)[i];
        ASSERT_EQ(back[i], type == TensorType::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h));
      }
      ++compared;
    }
    EXPECT_GT(compared, 0) << path;
  }
}

// On every quantized tensor: dequantize matches the F32 original to the format's precision, and
// fast vec_dot, reference vec_dot and the dequantized float dot agree.
TEST(ModelTensors, DotProductsAgreeOnRealTensors) {
  ENDLESS_REQUIRE_SHARED(kF32);
  for (const auto& qf : kQuantFiles) {
    if (!std::filesystem::exists(testing::shared_file(qf.path))) continue;
    const auto quant = gguf::File::open(testing::shared_file(qf.path).string());
    const auto f32 = gguf::File::open(testing::shared_file(f32_counterpart(qf.path)).string());
    const gguf::TensorInfo* act_src = f32.tensor("token_embd.weight");
    ASSERT_NE(act_src, nullptr);
    for (const auto& t : quant.tensors()) {
      if (t.type != qf.type) continue;
      const int64_t n = t.shape[0];
      const size_t w_row = row_size(t.type, n);
      // Activations: some F32 row of the same length, e.g. an embedding row.
      std::vector<float> x(static_cast<size_t>(n));
      const auto* src_rows = reinterpret_cast<const float*>(f32.tensor(t.name)->data);
      for (int64_t i = 0; i < n; ++i) x[i] = src_rows[(n + i) % f32.tensor(t.name)->n_elements()];
      const TensorType at = vec_dot_type(t.type);
      std::vector<uint8_t> act(row_size(at, n));
      quantize_row(at, x.data(), act.data(), n);
      std::vector<float> xd(static_cast<size_t>(n)), wd(static_cast<size_t>(n));
      dequantize_row(at, act.data(), xd.data(), n);
      for (int64_t r = 0; r < std::min<int64_t>(t.rows(), 16); ++r) {
        const uint8_t* wr = t.data + r * w_row;
        dequantize_row(t.type, wr, wd.data(), n);
        double expect = 0, magnitude = 0, err = 0, scale = 0;
        for (int64_t i = 0; i < n; ++i) {
          expect += static_cast<double>(wd[i]) * xd[i];
          magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
          err = std::max<double>(err, std::fabs(wd[i] - src_rows[r * n + i]));
          scale = std::max<double>(scale, std::fabs(src_rows[r * n + i]));
        }
        EXPECT_LE(err, scale * (qf.type == TensorType::Q4_0 || qf.type == TensorType::Q4_K ? 0.2 : 0.05))
            << t.name << " row " << r;
        const float ref_dot = ref::vec_dot(t.type, n, wr, act.data());
        const float fast_dot = vec_dot(t.type, n, wr, act.data());
        EXPECT_NEAR(ref_dot, expect, 1e-5 * magnitude + 1e-6) << t.name << " row " << r;
        EXPECT_NEAR(fast_dot, ref_dot, 1e-5 * magnitude + 1e-6) << t.name << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace endless::kernels
