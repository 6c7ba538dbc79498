// Token kinds as GGUF's `tokenizer.ggml.token_type` array numbers them (llama.cpp's
// llama_token_type), shared by the converters that write vocabularies.
#pragma once

#include <cstdint>

namespace endless::convert {

enum TokenKind : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// SentencePiece writes a space inside a piece as U+2581 LOWER ONE EIGHTH BLOCK.
inline constexpr const char* kSpaceMarker = "\xe2\x96\x81";

}  // namespace endless::convert
