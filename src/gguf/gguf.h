// Reading GGUF files (versions 2 and 3). The file is memory-mapped; tensor data and strings are
// views into the mapping, never copied. Every count, length, offset and shape is checked against
// the file before it is used, so a truncated or hostile file is rejected with an Error that names
// the problem instead of crashing, hanging or allocating without bound.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/tensor_type.h"
#include "util/mapped_file.h"

namespace endless::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

std::string_view value_type_name(ValueType t);
// Size in bytes of a fixed-size scalar type; 0 for STRING and ARRAY.
size_t scalar_size(ValueType t);

// A metadata value. Scalars keep their bits; strings and arrays of fixed-size scalars point into
// the file; arrays of strings and of arrays are unpacked one level per nesting.
struct Value {
  ValueType type = ValueType::UINT8;
  uint64_t bits = 0;            // scalar payload, little-endian, zero-extended
  std::string_view str;         // STRING
  ValueType elem = ValueType::UINT8;  // ARRAY: element type
  uint64_t count = 0;           // ARRAY: number of elements
  const uint8_t* raw = nullptr;           // ARRAY of fixed-size scalars: packed elements
  std::vector<std::string_view> strings;  // ARRAY of STRING
  std::vector<Value> items;               // ARRAY of ARRAY

  bool is_integer() const;
  bool is_float() const { return type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }
  // Conversions; each throws an Error naming the actual type when it does not fit.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;  // integers convert too
  bool as_bool() const;
  std::string_view as_string() const;
  // Element i of an array of fixed-size scalars, as a scalar Value.
  Value element(uint64_t i) const;
  // A human-readable rendering (arrays abbreviated), for `endless info`.
  std::string to_string(size_t max_items = 8) const;
};

struct TensorInfo {
  std::string_view name;
  TensorType type = TensorType::F32;
  std::vector<int64_t> shape;  // ne[0] is the fastest-varying (row) dimension, as in ggml
  uint64_t offset = 0;         // from the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t n_elements() const;
  int64_t rows() const { return n_elements() / (shape.empty() ? 1 : shape[0]); }
};

class File {
 public:
  // Maps (or with Residency::read reads) and parses a file. Throws Error naming the path and the
  // problem.
  static File open(const std::string& path, Residency residency = Residency::mapped);
  // Pins a mapped file in RAM (see MappedFile::lock_in_memory); nothing to do for one in memory.
  void lock_in_memory() const;
  // Bytes of tensor data that will not be read again for a while leave memory (MappedFile::drop);
  // nothing for a parsed in-memory image.
  void drop(const uint8_t* p, size_t n);
  // Parses an in-memory image (copied); used by tests and fuzzing.
  static File parse(std::vector<uint8_t> bytes, std::string name = "<memory>");

  uint32_t version() const { return version_; }
  size_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }

  const std::vector<std::pair<std::string_view, Value>>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;
  // Typed lookups: nullopt when absent, Error when present with an incompatible type.
  std::optional<std::string_view> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  const Value* get_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(std::string_view name) const;

 private:
  File() = default;
  void parse_all();

  std::shared_ptr<MappedFile> mapping_;
  // In-memory files are copied into a 64-byte aligned block so tensor data is as aligned as it
  // would be in an mmap'd file (the SIMD kernels rely on general.alignment holding in memory).
  std::shared_ptr<uint8_t> owned_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string_view, Value>> kv_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Writing GGUF version 3 files. Metadata keeps insertion order; tensors are laid out in the
// order added, each aligned to `general.alignment` (32 unless set).
class Writer {
 public:
  void set_u8(const std::string& key, uint8_t v);
  void set_i8(const std::string& key, int8_t v);
  void set_u16(const std::string& key, uint16_t v);
  void set_i16(const std::string& key, int16_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_i64(const std::string& key, int64_t v);
  void set_f32(const std::string& key, float v);
  void set_f64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // Any value, already encoded (type tag excluded): for nested arrays and exotic types.
  void set_raw(const std::string& key, ValueType type, std::vector<uint8_t> encoded);

  // shape[0] is the row length; data holds row_size(type, shape[0]) * rows bytes.
  void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                  const void* data, size_t nbytes);

  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws Error on I/O failure

  // Encoding helpers for set_raw.
  static void put_string(std::vector<uint8_t>& out, std::string_view s);
  template <typename T>
  static void put(std::vector<uint8_t>& out, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }

 private:
  struct Kv {
    std::string key;
    ValueType type;
    std::vector<uint8_t> encoded;
  };
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  void set(const std::string& key, ValueType type, std::vector<uint8_t> encoded);
  std::vector<Kv> kv_;
  std::vector<Tensor> tensors_;
  uint64_t alignment_ = 32;
};

}  // namespace endless::gguf
