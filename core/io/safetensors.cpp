#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

namespace vmla::io {
namespace {

using json = nlohmann::json;

// The header of a 14B Wan checkpoint is about 100 KB; anything near this limit is not a header.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;
static_assert(sizeof(size_t) == 8, "offsets are 64-bit");

struct DTypeName {
  std::string_view name;
  DType dtype;
};
constexpr DTypeName kDTypes[] = {
    {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I32", DType::I32}, {"U8", DType::U8}, {"I8", DType::I8},
};
static_assert(std::size(kDTypes) == 6, "every DType has a safetensors name");
constexpr bool dtype_names_match() {
  for (const DTypeName& d : kDTypes)
    if (d.name != dtype_name(d.dtype)) return false;
  return true;
}
static_assert(dtype_names_match(), "safetensors dtype names are DType names");
constexpr std::string_view kSupported = "F32, F16, BF16, I32, U8, I8";

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

std::string q(const std::string& s) { return "'" + s + "'"; }

// A JSON value for an error message, cut short when long.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// "an array", "a number", ... for messages.
std::string kind(const json& j) {
  std::string t = j.type_name();
  return (t == "array" || t == "object" ? "an " : t == "null" ? "" : "a ") + t;
}

std::string range_str(uint64_t b, uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + ")"; }

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Parses one tensor entry of the header; every message names the file and the tensor.
TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e) {
  const std::string where = path + ": tensor " + q(name);
  if (!e.is_object())
    throw FormatError(where + ": header entry is " + kind(e) +
                      ", expected an object with \"dtype\", \"shape\" and \"data_offsets\"");
  TensorInfo t;
  t.name = name;

  auto field = [&](const char* key) -> const json& {
    auto it = e.find(key);
    if (it == e.end()) throw FormatError(where + " has no \"" + key + "\" in the header (corrupt header)");
    return *it;
  };

  const json& dt = field("dtype");
  if (!dt.is_string()) throw FormatError(where + ": \"dtype\" is " + kind(dt) + ", expected a string such as \"F32\"");
  const std::string& dts = dt.get_ref<const std::string&>();
  auto dit = std::find_if(std::begin(kDTypes), std::end(kDTypes), [&](const DTypeName& d) { return d.name == dts; });
  if (dit == std::end(kDTypes))
    throw FormatError(where + " has unsupported dtype " + (dts.size() <= 16 ? dts : dts.substr(0, 16) + "...") +
                      " (supported: " + std::string(kSupported) + ")");
  t.dtype = dit->dtype;

  const json& sh = field("shape");
  if (!sh.is_array()) throw FormatError(where + ": \"shape\" is " + kind(sh) + ", expected an array of integers");
  if (sh.size() > size_t(kMaxDims))
    throw FormatError(where + " has " + std::to_string(sh.size()) + " dimensions; at most " + std::to_string(kMaxDims) +
                      " are supported");
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : sh) {
    int64_t v = 0;
    if (d.is_number_unsigned()) {
      uint64_t u = d.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max()))
        throw FormatError(where + ": shape entry " + std::to_string(u) + " is too large");
      v = int64_t(u);
    } else if (d.is_number_integer()) {
      v = d.get<int64_t>();
      if (v < 0)
        throw FormatError(where + " has a negative dimension " + std::to_string(v) + " in its shape " + brief(sh));
    } else {
      throw FormatError(where + ": shape entry " + brief(d) + " is not a non-negative integer (shape " + brief(sh) +
                        ")");
    }
    t.shape.d[size_t(t.shape.ndim++)] = v;
    overflow |= __builtin_mul_overflow(numel, uint64_t(v), &numel);
  }
  uint64_t nbytes = 0;
  if (overflow || numel > uint64_t(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes))
    throw FormatError(where + ": shape " + t.shape.str() + " has more elements than fit in 64 bits (corrupt header)");

  const json& off = field("data_offsets");
  if (!off.is_array() || off.size() != 2)
    throw FormatError(where + ": \"data_offsets\" is " + brief(off) + ", expected [begin, end]");
  uint64_t be[2];
  for (int i = 0; i < 2; ++i) {
    const json& v = off[size_t(i)];
    if (!v.is_number_unsigned())  // non-negative integer literals parse as unsigned
      throw FormatError(where + ": \"data_offsets\" " + brief(off) + " are not two non-negative integers");
    be[i] = v.get<uint64_t>();
  }
  if (be[1] < be[0])
    throw FormatError(where + ": data_offsets [" + std::to_string(be[0]) + ", " + std::to_string(be[1]) +
                      "] end before they begin (corrupt header)");
  if (be[1] - be[0] != nbytes)
    throw FormatError(where + ": shape " + t.shape.str() + " of " + std::string(dtype_name(t.dtype)) + " needs " +
                      std::to_string(nbytes) + " bytes, but data_offsets " + range_str(be[0], be[1]) + " hold " +
                      std::to_string(be[1] - be[0]));
  t.offset = size_t(be[0]);
  t.nbytes = size_t(nbytes);
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- read

SafeTensors::SafeTensors(SafeTensors&& o) noexcept { *this = std::move(o); }

SafeTensors& SafeTensors::operator=(SafeTensors&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    data_start_ = std::exchange(o.data_start_, 0);
    metadata_ = std::move(o.metadata_);
    tensors_ = std::move(o.tensors_);
    by_name_ = std::move(o.by_name_);
    by_mapped_ = std::move(o.by_mapped_);
  }
  return *this;
}

SafeTensors::~SafeTensors() { release(); }

void SafeTensors::release() noexcept {
  if (base_) ::munmap(const_cast<unsigned char*>(base_), size_);
  base_ = nullptr;
  size_ = 0;
}

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.path_ = path;

  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is rejected below as not a regular file.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) throw IoError("cannot open model file " + path + ": " + errno_text(errno));
  struct stat sb {};
  if (::fstat(fd.get(), &sb) != 0) throw IoError("cannot read model file " + path + ": " + errno_text(errno));
  if (S_ISDIR(sb.st_mode)) throw IoError("cannot open model file " + path + ": it is a directory");
  if (!S_ISREG(sb.st_mode)) throw IoError("cannot open model file " + path + ": not a regular file");
  const size_t size = size_t(sb.st_size);
  if (size < 8)
    throw FormatError(path + ": file is " + std::to_string(size) +
                      " bytes, too short for a safetensors file (the header length alone is 8 bytes)");

  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (m == MAP_FAILED) throw IoError("cannot map model file " + path + " into memory: " + errno_text(errno));
  st.base_ = static_cast<const unsigned char*>(m);
  st.size_ = size;

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | st.base_[i];
  if (n > kMaxHeaderBytes)
    throw FormatError(path + ": header length " + std::to_string(n) +
                      " is absurd (limit 100 MB): not a safetensors file, or a corrupt one");
  if (n > size - 8)
    throw FormatError(path + ": header length " + std::to_string(n) + " exceeds file size " + std::to_string(size) +
                      " (file truncated, or not a safetensors file)");
  st.data_start_ = 8 + size_t(n);
  const size_t data_size = size - st.data_start_;

  const char* hb = reinterpret_cast<const char*>(st.base_ + 8);
  std::string duplicate;
  std::set<std::string> seen;
  json header;
  try {
    header = json::parse(hb, hb + n, [&](int depth, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::key && depth == 1 && duplicate.empty() &&
          !seen.insert(parsed.get<std::string>()).second)
        duplicate = parsed.get<std::string>();
      return true;
    });
  } catch (const json::exception& e) {
    // nlohmann quotes the offending bytes; keep the message printable.
    std::string what = e.what();
    for (char& c : what)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    throw FormatError(path + ": header is not valid JSON (not a safetensors file, or a corrupt one): " + what);
  }
  if (!header.is_object())
    throw FormatError(path + ": header is a JSON " + std::string(header.type_name()) +
                      ", expected an object mapping tensor names to entries");
  if (!duplicate.empty()) throw FormatError(path + ": tensor " + q(duplicate) + " appears twice in the header");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object())
        throw FormatError(path + ": __metadata__ is " + kind(value) + ", expected an object of strings");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw FormatError(path + ": __metadata__ value for " + q(mk) + " is " + kind(mv) + ", expected a string");
        st.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    st.tensors_.push_back(parse_entry(path, key, value));
  }

  // The data section must be exactly the tensors, back to back, in offset order (as the reference
  // implementation requires): a gap or overlap means a corrupt header, a short end a truncated file.
  std::sort(st.tensors_.begin(), st.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  size_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : st.tensors_) {
    const uint64_t end = uint64_t(t.offset) + t.nbytes;  // = data_offsets[1], cannot overflow
    if (t.offset < expected)
      throw FormatError(path + ": tensors " + q(prev->name) + " (bytes " + range_str(prev->offset, expected) +
                        ") and " + q(t.name) + " (bytes " + range_str(t.offset, end) + ") overlap (corrupt header)");
    if (t.offset > expected)
      throw FormatError(path + ": tensor " + q(t.name) + " starts at data byte " + std::to_string(t.offset) +
                        " but the previous tensor ends at " + std::to_string(expected) + " (gap of " +
                        std::to_string(t.offset - expected) + " bytes; corrupt header)");
    if (end > data_size)
      throw FormatError("model file " + path + " truncated at tensor " + q(t.name) + ": expected bytes " +
                        range_str(t.offset, end) + ", file data section has " + std::to_string(data_size) +
                        " bytes (the file is incomplete: download or copy it again)");
    expected = size_t(end);
    prev = &t;
  }
  if (expected != data_size)
    throw FormatError(path + ": " + std::to_string(data_size - expected) +
                      " bytes after the last tensor (tensors end at data byte " + std::to_string(expected) +
                      ", file data section has " + std::to_string(data_size) + "): corrupt file or appended data");

  for (size_t i = 0; i < st.tensors_.size(); ++i) st.by_name_.emplace(st.tensors_[i].name, i);
  return st;
}

std::optional<std::string> SafeTensors::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) return std::nullopt;
  return it->second;
}

const TensorInfo* SafeTensors::find(const std::string& name) const {
  if (auto it = by_mapped_.find(name); it != by_mapped_.end()) return &tensors_[it->second];
  if (auto it = by_name_.find(name); it != by_name_.end()) return &tensors_[it->second];
  return nullptr;
}

bool SafeTensors::has(const std::string& name) const { return find(name) != nullptr; }

const TensorInfo& SafeTensors::info(const std::string& name) const {
  if (const TensorInfo* t = find(name)) return *t;
  // A hint for the likely causes: a wrapper prefix (model.x asked as x) or a near miss (a typo).
  std::string suffix_hint, near_hint;
  size_t best = std::max<size_t>(2, name.size() / 5) + 1;
  auto consider = [&](const std::string& cand) {
    if (cand.size() > name.size() && cand.compare(cand.size() - name.size(), name.size(), name) == 0 &&
        cand[cand.size() - name.size() - 1] == '.') {
      if (suffix_hint.empty()) suffix_hint = cand;
      return;
    }
    if (name.size() > 256 || cand.size() > name.size() + best || name.size() > cand.size() + best) return;
    if (size_t d = edit_distance(name, cand); d < best) {
      best = d;
      near_hint = cand;
    }
  };
  for (const auto& kv : by_mapped_) consider(kv.first);
  for (const auto& kv : by_name_) consider(kv.first);
  const std::string& hint = suffix_hint.empty() ? near_hint : suffix_hint;
  std::string msg = "model file " + path_ + " has no tensor " + q(name);
  if (!hint.empty()) msg += " (did you mean " + q(hint) + "?)";
  throw FormatError(msg);
}

const void* SafeTensors::data(const std::string& name) const { return base_ + data_start_ + info(name).offset; }

std::vector<std::string> SafeTensors::names() const {
  const auto& index = by_mapped_.empty() ? by_name_ : by_mapped_;
  std::vector<std::string> out;
  out.reserve(index.size());
  for (const auto& kv : index) out.push_back(kv.first);
  return out;
}

std::vector<float> SafeTensors::read_f32(const std::string& name, const Shape& expected) const {
  const TensorInfo& t = info(name);
  if (expected.ndim > 0 && !(expected == t.shape))
    throw FormatError(path_ + ": tensor " + q(name) + " has shape " + t.shape.str() + ", expected " + expected.str());
  const unsigned char* src = base_ + data_start_ + t.offset;
  const size_t n = t.nbytes / dtype_size(t.dtype);
  std::vector<float> out(n);
  // memcpy per element: tensor data need not be aligned for its dtype.
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(out.data(), src, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      break;
    case DType::I32:
      for (size_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, src + 4 * i, 4);
        out[i] = float(v);
      }
      break;
    case DType::U8:
      for (size_t i = 0; i < n; ++i) out[i] = float(src[i]);
      break;
    case DType::I8:
      dequantize_i8(name, t, src, out);
      break;
  }
  return out;
}

bool SafeTensors::is_quant_scale(const std::string& name) const {
  const std::string_view suffix = kQuantScaleSuffix;
  if (name.size() <= suffix.size() || !name.ends_with(suffix)) return false;
  const TensorInfo* base = find(name.substr(0, name.size() - suffix.size()));
  return base && base->dtype == DType::I8;
}

// int8 weights: value = q * scale[row, group], groups of G consecutive values inside a row (the
// first dimension indexes rows), scale [rows, row_size / G] in F32, F16 or BF16.
void SafeTensors::dequantize_i8(const std::string& name, const TensorInfo& t, const unsigned char* src,
                                std::vector<float>& out) const {
  const std::string sname = name + kQuantScaleSuffix;
  const TensorInfo* si = find(sname);
  if (!si)
    throw FormatError(path_ + ": tensor " + q(name) + " is I8 but the file has no " + q(sname) +
                      " (int8 weights need their per-group scales)");
  if (!is_float(si->dtype))
    throw FormatError(path_ + ": scale tensor " + q(sname) + " is " + std::string(dtype_name(si->dtype)) +
                      ", expected F32, F16 or BF16");
  const int64_t rows = t.shape.ndim > 0 ? t.shape[0] : 1;
  const int64_t row_size = rows > 0 ? int64_t(out.size()) / rows : 0;
  const int64_t groups = si->shape.ndim == 2 ? si->shape[1] : 0;
  if (si->shape.ndim != 2 || si->shape[0] != rows || groups <= 0 || row_size % groups != 0)
    throw FormatError(path_ + ": scale tensor " + q(sname) + " has shape " + si->shape.str() + ", expected [" +
                      std::to_string(rows) + ", G] with G dividing " + std::to_string(row_size) + " (the values per row of " +
                      q(name) + " " + t.shape.str() + ")");
  const std::vector<float> scale = read_f32(sname);
  const int64_t group = row_size / groups;
  for (size_t i = 0; i < out.size(); ++i) {
    const int8_t v = static_cast<int8_t>(src[i]);
    out[i] = float(v) * scale[i / size_t(group)];
  }
}

void quantize_int8_groups(const float* w, int64_t rows, int64_t cols, int64_t group, int8_t* q, uint16_t* scale_f16) {
  const int64_t groups = cols / group;
  for (int64_t g = 0; g < rows * groups; ++g) {
    const float* x = w + g * group;
    float amax = 0.f;
    for (int64_t j = 0; j < group; ++j) amax = std::max(amax, std::fabs(x[j]));
    scale_f16[g] = f32_to_f16(amax / 127.0f);
    const float s = f16_to_f32(scale_f16[g]);
    for (int64_t j = 0; j < group; ++j)
      q[g * group + j] = s > 0.f ? int8_t(std::clamp(std::nearbyint(x[j] / s), -127.0f, 127.0f)) : int8_t(0);
  }
}

bool int8_candidate(const std::string& name, const Shape& shape) {
  return name.starts_with("blocks.") && name.ends_with(".weight") && shape.ndim == 2 && shape[1] % kInt8Group == 0;
}

void SafeTensors::apply_name_map(const NameMap& map) {
  std::map<std::string, size_t> mapped;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    auto [it, inserted] = mapped.emplace(map.map(tensors_[i].name), i);
    if (!inserted)
      throw FormatError(path_ + ": the name map (" + map.convention() + ") gives tensors " +
                        q(tensors_[it->second].name) + " and " + q(tensors_[i].name) + " the same name " +
                        q(it->first));
  }
  by_mapped_ = std::move(mapped);
}

// --------------------------------------------------------------------------------------------- write

void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  if (path.empty()) throw IoError("cannot write model file: the path is empty");

  // Validate and build the header before any file exists.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::vector<size_t> nbytes(tensors.size());
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorData& t = tensors[i];
    const std::string where = "cannot write model file " + path + ": tensor " + q(t.name);
    if (t.name.empty()) throw FormatError("cannot write model file " + path + ": a tensor has an empty name");
    if (t.name == "__metadata__") throw FormatError(where + ": the name is reserved");
    if (!names.insert(t.name).second) throw FormatError(where + " is given twice");
    if (t.shape.ndim < 0 || t.shape.ndim > kMaxDims) throw FormatError(where + " has an invalid number of dimensions");
    uint64_t numel = 1;
    bool overflow = false;
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int d = 0; d < t.shape.ndim; ++d) {
      int64_t v = t.shape.d[size_t(d)];
      if (v < 0) throw FormatError(where + " has a negative dimension in shape " + t.shape.str());
      overflow |= __builtin_mul_overflow(numel, uint64_t(v), &numel);
      shape.push_back(v);
    }
    uint64_t nb = 0;
    if (overflow || __builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nb) ||
        __builtin_add_overflow(offset, nb, &offset))
      throw FormatError(where + ": shape " + t.shape.str() + " is too large");
    if (nb > 0 && t.data == nullptr) throw FormatError(where + " has no data");
    nbytes[i] = size_t(nb);
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = std::move(shape);
    e["data_offsets"] = {offset - nb, offset};
    header[t.name] = std::move(e);
  }
  std::string js;
  try {
    js = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw FormatError("cannot write model file " + path + ": tensor names and metadata must be valid UTF-8 (" +
                      e.what() + ")");
  }
  js.append((8 - js.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& what, int err) -> IoError {
    return IoError("cannot write model file " + path + ": " + what + " " + tmp + ": " + errno_text(err));
  };

  // Removes the temp file unless committed.
  struct TempGuard {
    const std::string& tmp;
    int fd = -1;
    bool armed = true;
    ~TempGuard() {
      if (fd >= 0) ::close(fd);
      if (armed) ::unlink(tmp.c_str());
    }
  } guard{tmp};

  guard.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (guard.fd < 0) {
    int e = errno;
    guard.armed = false;  // nothing was created (and an existing foreign file is not ours to delete)
    throw fail("cannot create", e);
  }

  auto write_all = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(guard.fd, c, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw fail("write to", errno);
      }
      if (w == 0) throw fail("write to", EIO);
      c += w;
      n -= size_t(w);
    }
  };

  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(js.size()) >> (8 * i));
  write_all(len, 8);
  write_all(js.data(), js.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (nbytes[i]) write_all(tensors[i].data, nbytes[i]);

  if (::fsync(guard.fd) != 0) throw fail("fsync of", errno);
  int fd = std::exchange(guard.fd, -1);
  if (::close(fd) != 0) throw fail("close of", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    throw IoError("cannot write model file " + path + ": rename of " + tmp + " failed: " + errno_text(e));
  }
  guard.armed = false;

  // Make the rename itself durable; failure here loses nothing already visible, so it is ignored.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace vmla::io
