#include "gguf/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "util/error.h"

namespace endless::gguf {
namespace {

std::vector<uint8_t> sample_file() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("flag", true);
  w.set_strings("tokenizer.ggml.tokens", {"a", "bb", ""});
  w.set_i32s("ints", {1, -2, 3});
  // A nested array: [[1,2],[3]] of uint8.
  std::vector<uint8_t> nested;
  Writer::put<uint32_t>(nested, static_cast<uint32_t>(ValueType::ARRAY));
  Writer::put<uint64_t>(nested, 2);
  for (std::vector<uint8_t> row : {std::vector<uint8_t>{1, 2}, std::vector<uint8_t>{3}}) {
    Writer::put<uint32_t>(nested, static_cast<uint32_t>(ValueType::UINT8));
    Writer::put<uint64_t>(nested, row.size());
    nested.insert(nested.end(), row.begin(), row.end());
  }
  w.set_raw("nested", ValueType::ARRAY, nested);
  std::vector<float> t(4 * 3);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i);
  w.add_tensor("t", TensorType::F32, {4, 3}, t.data(), t.size() * 4);
  std::vector<uint8_t> q(2 * 34, 7);
  w.add_tensor("q", TensorType::Q8_0, {64}, q.data(), q.size());
  return w.to_bytes();
}

TEST(Gguf, RoundTripsMetadataAndTensors) {
  const File f = File::parse(sample_file());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(*f.get_float("llama.rope.freq_base"), 10000.0f);
  EXPECT_EQ(f.get_bool("flag"), true);
  EXPECT_FALSE(f.get_int("missing").has_value());
  const Value* toks = f.get_array("tokenizer.ggml.tokens");
  ASSERT_NE(toks, nullptr);
  ASSERT_EQ(toks->strings.size(), 3u);
  EXPECT_EQ(toks->strings[1], "bb");
  EXPECT_EQ(f.get_array("ints")->element(1).as_int(), -2);
  const Value* nested = f.get_array("nested");
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].element(1).as_int(), 2);
  EXPECT_EQ(nested->items[1].count, 1u);

  const TensorInfo* t = f.tensor("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(t->nbytes, 48u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 32, 0u);
  float v;
  std::memcpy(&v, t->data + 5 * 4, 4);
  EXPECT_EQ(v, 5.0f);
  const TensorInfo* q = f.tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, TensorType::Q8_0);
  EXPECT_EQ(q->nbytes, 68u);
  EXPECT_EQ(q->data[0], 7);
}

TEST(Gguf, TypeMismatchNamesTheKey) {
  const File f = File::parse(sample_file());
  try {
    f.get_int("general.architecture");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos);
  }
}

void expect_rejected(std::vector<uint8_t> bytes, const std::string& fragment) {
  try {
    File::parse(std::move(bytes));
    FAIL() << "expected rejection mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Gguf, RejectsBadMagicAndVersion) {
  auto b = sample_file();
  b[0] = 'X';
  expect_rejected(b, "bad magic");
  b = sample_file();
  b[4] = 9;
  expect_rejected(b, "version");
  expect_rejected({}, "not a GGUF");
}

TEST(Gguf, RejectsEveryTruncation) {
  const auto full = sample_file();
  // Only the alignment padding after the last tensor may be cut without harm.
  const File whole = File::parse(full);
  const TensorInfo* last = whole.tensor("q");
  const size_t data_end = full.size() - 96 + last->nbytes;
  for (size_t n = 0; n < data_end; ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_THROW(File::parse(cut), Error) << "prefix of " << n << " bytes";
  }
}

TEST(Gguf, RejectsAbsurdCounts) {
  auto b = sample_file();
  const uint64_t huge = 1ull << 60;
  std::memcpy(b.data() + 16, &huge, 8);  // metadata count
  expect_rejected(b, "metadata count");
  b = sample_file();
  std::memcpy(b.data() + 8, &huge, 8);  // tensor count
  expect_rejected(b, "tensor count");
}

TEST(Gguf, RejectsUnknownTensorTypeAndDuplicates) {
  Writer w;
  std::vector<float> t(4);
  w.add_tensor("a", TensorType::F32, {4}, t.data(), 16);
  auto b = w.to_bytes();
  // The tensor type follows name (8+1), n_dims (4), dims (8) after the 24-byte header.
  const size_t type_at = 24 + 8 + 1 + 4 + 8;
  uint32_t bad = 77;
  std::memcpy(b.data() + type_at, &bad, 4);
  expect_rejected(b, "unknown tensor type 77");

  Writer w2;
  w2.set_u32("k", 1);
  auto b2 = w2.to_bytes();
  // Append a second copy of the same key by hand.
  std::vector<uint8_t> dup(b2.begin(), b2.begin() + 24);
  uint64_t two = 2;
  std::memcpy(dup.data() + 16, &two, 8);
  for (int i = 0; i < 2; ++i) {
    Writer::put_string(dup, "k");
    Writer::put<uint32_t>(dup, static_cast<uint32_t>(ValueType::UINT32));
    Writer::put<uint32_t>(dup, 1);
  }
  expect_rejected(dup, "duplicate metadata key");
}

TEST(Gguf, RejectsOverflowingShapes) {
  Writer w;
  std::vector<float> t(4);
  w.add_tensor("a", TensorType::F32, {4, 1}, t.data(), 16);
  auto b = w.to_bytes();
  const size_t dims_at = 24 + 8 + 1 + 4;
  const uint64_t big = 1ull << 40;
  std::memcpy(b.data() + dims_at, &big, 8);
  std::memcpy(b.data() + dims_at + 8, &big, 8);
  expect_rejected(b, "overflows");
  b = w.to_bytes();
  std::memcpy(b.data() + dims_at, &big, 8);
  expect_rejected(b, "past the end");
}

}  // namespace
}  // namespace endless::gguf
