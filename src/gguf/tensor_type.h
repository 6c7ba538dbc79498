// The tensor element types of the GGUF/ggml format, numbered as ggml numbers them, with their
// block layouts. A type the table does not know is rejected when a file is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace endless {

enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TensorTypeInfo {
  std::string_view name;
  int64_t block_size;  // elements per block
  size_t type_size;    // bytes per block
};

// Layout of a known type; nullopt for an id ggml does not define.
std::optional<TensorTypeInfo> tensor_type_info(uint32_t id);
// Layout of a known type (the type must be known).
const TensorTypeInfo& info(TensorType t);
std::string_view type_name(TensorType t);
// Looks a type up by name, case-insensitively ("q4_k", "F16"); nullopt if unknown.
std::optional<TensorType> tensor_type_from_name(std::string_view name);
// Bytes taken by one row of n elements (n must be a multiple of the block size).
size_t row_size(TensorType t, int64_t n);

}  // namespace endless
