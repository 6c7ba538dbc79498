#include "gguf/gguf.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <fstream>
#include <limits>

#include "util/error.h"

namespace endless::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;
constexpr int kMaxNesting = 8;
constexpr uint64_t kMaxAlignment = 1u << 20;

// A bounds-checked little-endian cursor over the file image.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail(path_, ": ", what, " claims a length of ", len, " bytes but only ", remaining(),
           " bytes remain in the file (truncated or corrupt)");
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

  const uint8_t* take(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail(path_, ": file ends inside ", what, " (truncated: needs ", n, " bytes at offset ", pos_,
           ", has ", remaining(), ")");
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::FLOAT64); }

Value read_value(Reader& r, ValueType type, int depth, const std::string& path,
                 std::string_view key) {
  Value v;
  v.type = type;
  switch (type) {
    case ValueType::STRING:
      v.str = r.read_string("a string value");
      return v;
    case ValueType::ARRAY: {
      if (depth >= kMaxNesting)
        fail(path, ": metadata '", key, "' nests arrays deeper than ", kMaxNesting, " levels");
      const uint32_t et = r.read<uint32_t>("an array element type");
      if (!valid_value_type(et))
        fail(path, ": metadata '", key, "' is an array of unknown value type ", et);
      v.elem = static_cast<ValueType>(et);
      v.count = r.read<uint64_t>("an array length");
      if (v.elem == ValueType::STRING) {
        // Each string takes at least its 8-byte length: bound the count before reserving.
        if (v.count > r.remaining() / 8)
          fail(path, ": metadata '", key, "' claims ", v.count,
               " strings, more than the rest of the file can hold");
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(r.read_string("an array string"));
      } else if (v.elem == ValueType::ARRAY) {
        if (v.count > r.remaining() / 12)
          fail(path, ": metadata '", key, "' claims ", v.count,
               " nested arrays, more than the rest of the file can hold");
        v.items.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i)
          v.items.push_back(read_value(r, ValueType::ARRAY, depth + 1, path, key));
      } else {
        const size_t es = scalar_size(v.elem);
        if (v.count > r.remaining() / es)
          fail(path, ": metadata '", key, "' claims ", v.count, " elements of ",
               value_type_name(v.elem), ", more than the rest of the file holds (truncated?)");
        v.raw = r.take(v.count * es, "an array");
      }
      return v;
    }
    default: {
      const size_t n = scalar_size(type);
      const uint8_t* p = r.take(n, "a metadata value");
      std::memcpy(&v.bits, p, n);
      if (type == ValueType::BOOL && v.bits > 1)
        fail(path, ": metadata '", key, "' is a bool with invalid value ", v.bits);
      return v;
    }
  }
}

}  // namespace

std::string_view value_type_name(ValueType t) {
  static constexpr std::string_view names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                               "int32", "float32", "bool",  "string", "array",
                                               "uint64", "int64", "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "invalid";
}

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    default: return 0;
  }
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::UINT16: case ValueType::INT16:
    case ValueType::UINT32: case ValueType::INT32: case ValueType::UINT64: case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

int64_t Value::as_int() const {
  switch (type) {
    case ValueType::UINT8: return static_cast<uint8_t>(bits);
    case ValueType::INT8: return static_cast<int8_t>(bits);
    case ValueType::UINT16: return static_cast<uint16_t>(bits);
    case ValueType::INT16: return static_cast<int16_t>(bits);
    case ValueType::UINT32: return static_cast<uint32_t>(bits);
    case ValueType::INT32: return static_cast<int32_t>(bits);
    case ValueType::INT64: return static_cast<int64_t>(bits);
    case ValueType::UINT64:
      if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("uint64 value ", bits, " is too large");
      return static_cast<int64_t>(bits);
    default:
      fail("expected an integer, found ", value_type_name(type));
  }
}

uint64_t Value::as_uint() const {
  if (type == ValueType::UINT64) return bits;
  const int64_t v = as_int();
  if (v < 0) fail("expected a non-negative integer, found ", v);
  return static_cast<uint64_t>(v);
}

double Value::as_float() const {
  if (type == ValueType::FLOAT32) {
    float f;
    uint32_t b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (type == ValueType::FLOAT64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  if (is_integer()) return static_cast<double>(as_int());
  fail("expected a number, found ", value_type_name(type));
}

bool Value::as_bool() const {
  if (type == ValueType::BOOL) return bits != 0;
  fail("expected a bool, found ", value_type_name(type));
}

std::string_view Value::as_string() const {
  if (type == ValueType::STRING) return str;
  fail("expected a string, found ", value_type_name(type));
}

Value Value::element(uint64_t i) const {
  if (type != ValueType::ARRAY || raw == nullptr)
    fail("expected an array of numbers, found ", value_type_name(type));
  if (i >= count) fail("array index ", i, " out of range (", count, " elements)");
  Value v;
  v.type = elem;
  const size_t es = scalar_size(elem);
  std::memcpy(&v.bits, raw + i * es, es);
  return v;
}

std::string Value::to_string(size_t max_items) const {
  switch (type) {
    case ValueType::STRING: {
      std::string s(str.substr(0, 120));
      for (auto& c : s)
        if (c == '\n') c = ' ';
      return "\"" + s + (str.size() > 120 ? "...\"" : "\"");
    }
    case ValueType::BOOL: return bits ? "true" : "false";
    case ValueType::FLOAT32: case ValueType::FLOAT64: return cat(as_float());
    case ValueType::UINT64: return cat(bits);
    case ValueType::ARRAY: {
      std::string out = cat("[", value_type_name(elem), " x ", count, "] ");
      for (uint64_t i = 0; i < count && i < max_items; ++i) {
        if (i) out += ", ";
        if (elem == ValueType::STRING) {
          Value s;
          s.type = ValueType::STRING;
          s.str = strings[i];
          out += s.to_string();
        } else if (elem == ValueType::ARRAY) {
          out += items[i].to_string(max_items);
        } else {
          out += element(i).to_string();
        }
      }
      if (count > max_items) out += ", ...";
      return out;
    }
    default: return cat(as_int());
  }
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

File File::open(const std::string& path, Residency residency) {
  File f;
  f.mapping_ = std::make_shared<MappedFile>(path, residency);
  f.base_ = f.mapping_->data();
  f.size_ = f.mapping_->size();
  f.path_ = path;
  f.parse_all();
  return f;
}

File File::parse(std::vector<uint8_t> bytes, std::string name) {
  File f;
  const size_t n = bytes.size();
  const size_t rounded = (n + 63) / 64 * 64;
  auto* block = static_cast<uint8_t*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded));
  if (block == nullptr) throw std::bad_alloc();
  f.owned_ = std::shared_ptr<uint8_t>(block, [](uint8_t* p) { std::free(p); });
  if (n != 0) std::memcpy(block, bytes.data(), n);
  f.base_ = block;
  f.size_ = n;
  f.path_ = std::move(name);
  f.parse_all();
  return f;
}

void File::drop(const uint8_t* p, size_t n) {
  if (mapping_) mapping_->drop(p, n);
}

void File::lock_in_memory() const {
  if (mapping_) mapping_->lock_in_memory();
}

void File::parse_all() {
  Reader r(base_, size_, path_);
  if (size_ < 4) fail(path_, ": not a GGUF file (only ", size_, " bytes)");
  const uint32_t magic = r.read<uint32_t>("the magic");
  if (magic != kMagic) fail(path_, ": not a GGUF file (bad magic)");
  version_ = r.read<uint32_t>("the version");
  if (version_ == 1) fail(path_, ": GGUF version 1 is not supported (convert it to version 3)");
  if (version_ != 2 && version_ != 3)
    fail(path_, ": unsupported GGUF version ", version_, " (endless reads versions 2 and 3)");
  const uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  const uint64_t n_kv = r.read<uint64_t>("the metadata count");
  // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > r.remaining() / 13)
    fail(path_, ": metadata count ", n_kv, " is more than the file can hold (corrupt header)");
  if (n_tensors > r.remaining() / 24)
    fail(path_, ": tensor count ", n_tensors, " is more than the file can hold (corrupt header)");

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string_view key = r.read_string("a metadata key");
    const uint32_t type = r.read<uint32_t>("a metadata value type");
    if (!valid_value_type(type))
      fail(path_, ": metadata '", key, "' has unknown value type ", type);
    Value v = read_value(r, static_cast<ValueType>(type), 0, path_, key);
    if (!kv_index_.emplace(key, kv_.size()).second)
      fail(path_, ": duplicate metadata key '", key, "'");
    kv_.emplace_back(key, std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    if (!a->is_integer()) fail(path_, ": general.alignment must be an integer");
    const int64_t al = a->as_int();
    if (al <= 0 || al > static_cast<int64_t>(kMaxAlignment) || (al & (al - 1)) != 0)
      fail(path_, ": general.alignment ", al, " is not a power of two up to ", kMaxAlignment);
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = r.read_string("a tensor name");
    const uint32_t n_dims = r.read<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail(path_, ": tensor '", t.name, "' has ", n_dims, " dimensions (1 to ", kMaxDims,
           " allowed)");
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>("a tensor dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(path_, ": tensor '", t.name, "' has invalid dimension ", d, " = ", ne);
      if (static_cast<uint64_t>(n) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne)
        fail(path_, ": tensor '", t.name, "' has a shape whose element count overflows");
      n *= static_cast<int64_t>(ne);
      t.shape.push_back(static_cast<int64_t>(ne));
    }
    const uint32_t type = r.read<uint32_t>("a tensor type");
    const auto ti = tensor_type_info(type);
    if (!ti) fail(path_, ": tensor '", t.name, "' has unknown tensor type ", type);
    t.type = static_cast<TensorType>(type);
    if (t.shape[0] % ti->block_size != 0)
      fail(path_, ": tensor '", t.name, "' of type ", ti->name, " has row length ", t.shape[0],
           ", not a multiple of its block size ", ti->block_size);
    const uint64_t blocks = static_cast<uint64_t>(n / ti->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / ti->type_size)
      fail(path_, ": tensor '", t.name, "' is too large");
    t.nbytes = blocks * ti->type_size;
    t.offset = r.read<uint64_t>("a tensor offset");
    if (t.offset % alignment_ != 0)
      fail(path_, ": tensor '", t.name, "' offset ", t.offset, " is not a multiple of the alignment ",
           alignment_);
    if (!tensor_index_.emplace(t.name, tensors_.size()).second)
      fail(path_, ": duplicate tensor name '", t.name, "'");
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_)
    fail(path_, ": file ends before the tensor data begins (truncated)");
  const uint64_t data_size = size_ - std::min<uint64_t>(data_start, size_);
  for (auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(path_, ": tensor '", t.name, "' data (", t.nbytes, " bytes at offset ", t.offset,
           ") runs past the end of the file (truncated or corrupt)");
    t.data = base_ + data_start + t.offset;
  }
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
template <typename F>
auto typed(const File& f, const Value* v, std::string_view key, F&& conv)
    -> std::optional<decltype(conv(*v))> {
  if (v == nullptr) return std::nullopt;
  try {
    return conv(*v);
  } catch (const Error& e) {
    fail(f.path(), ": metadata '", key, "': ", e.what());
  }
}
}  // namespace

std::optional<std::string_view> File::get_string(std::string_view key) const {
  return typed(*this, find(key), key, [](const Value& v) { return v.as_string(); });
}
std::optional<int64_t> File::get_int(std::string_view key) const {
  return typed(*this, find(key), key, [](const Value& v) { return v.as_int(); });
}
std::optional<double> File::get_float(std::string_view key) const {
  return typed(*this, find(key), key, [](const Value& v) { return v.as_float(); });
}
std::optional<bool> File::get_bool(std::string_view key) const {
  return typed(*this, find(key), key, [](const Value& v) { return v.as_bool(); });
}
const Value* File::get_array(std::string_view key) const {
  const Value* v = find(key);
  if (v != nullptr && v->type != ValueType::ARRAY)
    fail(path_, ": metadata '", key, "' should be an array but is a ", value_type_name(v->type));
  return v;
}

const TensorInfo* File::tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- Writer ----

void Writer::put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void Writer::set(const std::string& key, ValueType type, std::vector<uint8_t> encoded) {
  if (key == "general.alignment") {
    uint32_t a = 0;
    std::memcpy(&a, encoded.data(), std::min<size_t>(4, encoded.size()));
    alignment_ = a;
  }
  for (auto& kv : kv_)
    if (kv.key == key) {
      kv.type = type;
      kv.encoded = std::move(encoded);
      return;
    }
  kv_.push_back({key, type, std::move(encoded)});
}

#define ENDLESS_SCALAR_SETTER(fn, T, VT)             \
  void Writer::fn(const std::string& key, T v) {     \
    std::vector<uint8_t> e;                          \
    put<T>(e, v);                                    \
    set(key, ValueType::VT, std::move(e));           \
  }
ENDLESS_SCALAR_SETTER(set_u8, uint8_t, UINT8)
ENDLESS_SCALAR_SETTER(set_i8, int8_t, INT8)
ENDLESS_SCALAR_SETTER(set_u16, uint16_t, UINT16)
ENDLESS_SCALAR_SETTER(set_i16, int16_t, INT16)
ENDLESS_SCALAR_SETTER(set_u32, uint32_t, UINT32)
ENDLESS_SCALAR_SETTER(set_i32, int32_t, INT32)
ENDLESS_SCALAR_SETTER(set_u64, uint64_t, UINT64)
ENDLESS_SCALAR_SETTER(set_i64, int64_t, INT64)
ENDLESS_SCALAR_SETTER(set_f32, float, FLOAT32)
ENDLESS_SCALAR_SETTER(set_f64, double, FLOAT64)
#undef ENDLESS_SCALAR_SETTER

void Writer::set_bool(const std::string& key, bool v) {
  set(key, ValueType::BOOL, {static_cast<uint8_t>(v ? 1 : 0)});
}

void Writer::set_string(const std::string& key, const std::string& v) {
  std::vector<uint8_t> e;
  put_string(e, v);
  set(key, ValueType::STRING, std::move(e));
}

void Writer::set_strings(const std::string& key, const std::vector<std::string>& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(e, v.size());
  for (const auto& s : v) put_string(e, s);
  set(key, ValueType::ARRAY, std::move(e));
}

void Writer::set_f32s(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, static_cast<uint32_t>(ValueType::FLOAT32));
  put<uint64_t>(e, v.size());
  for (float x : v) put<float>(e, x);
  set(key, ValueType::ARRAY, std::move(e));
}

void Writer::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> e;
  put<uint32_t>(e, static_cast<uint32_t>(ValueType::INT32));
  put<uint64_t>(e, v.size());
  for (int32_t x : v) put<int32_t>(e, x);
  set(key, ValueType::ARRAY, std::move(e));
}

void Writer::set_raw(const std::string& key, ValueType type, std::vector<uint8_t> encoded) {
  set(key, type, std::move(encoded));
}

void Writer::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> shape,
                        const void* data, size_t nbytes) {
  if (shape.empty() || shape.size() > kMaxDims) fail("tensor '", name, "': 1 to 4 dimensions");
  const auto& ti = info(type);
  if (shape[0] % ti.block_size != 0)
    fail("tensor '", name, "': row length ", shape[0], " is not a multiple of ", ti.block_size);
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t expect = row_size(type, n);
  if (nbytes != expect)
    fail("tensor '", name, "': ", nbytes, " bytes given, ", expect, " expected");
  for (const auto& t : tensors_)
    if (t.name == name) fail("duplicate tensor name '", name, "'");
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, type, std::move(shape), std::vector<uint8_t>(p, p + nbytes)});
}

std::vector<uint8_t> Writer::to_bytes() const {
  const uint64_t align = alignment_ ? alignment_ : 32;
  std::vector<uint8_t> out;
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& kv : kv_) {
    put_string(out, kv.key);
    put<uint32_t>(out, static_cast<uint32_t>(kv.type));
    out.insert(out.end(), kv.encoded.begin(), kv.encoded.end());
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset += (t.data.size() + align - 1) / align * align;
  }
  out.resize((out.size() + align - 1) / align * align, 0);
  for (const auto& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize((out.size() + align - 1) / align * align, 0);
  }
  return out;
}

void Writer::write(const std::string& path) const {
  const auto bytes = to_bytes();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail("cannot create '", path, "'");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) fail("cannot write '", path, "'");
}

}  // namespace endless::gguf
