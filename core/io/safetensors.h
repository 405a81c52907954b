#pragma once
// safetensors reader (memory-mapped, validated) and writer (temp file + rename).
//
// File layout: u64 little-endian N | N bytes of JSON header | data section. The header maps tensor
// names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data section)
// plus an optional "__metadata__" object of string values. open() checks everything a malformed or
// truncated file can get wrong before any tensor is touched, and throws FormatError / IoError with
// the file, the tensor and the numbers; after open() succeeds every data() range lies in the file.
//
// Tensor data is not guaranteed to be aligned for its dtype (the format has no per-tensor alignment);
// read_f32 copies safely, direct users of data() must memcpy or check alignment.
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/io/name_map.h"
#include "core/tensor/tensor.h"

namespace vmla::io {

// Suffix of the per-group scales of an int8 tensor.
inline constexpr const char* kQuantScaleSuffix = "_scale";

struct TensorInfo {
  std::string name;  // as stored in the file
  DType dtype = DType::F32;
  Shape shape;
  size_t offset = 0;  // from the start of the data section
  size_t nbytes = 0;
};

class SafeTensors {
 public:
  static SafeTensors open(const std::string& path);  // throws IoError / FormatError

  SafeTensors(SafeTensors&& o) noexcept;
  SafeTensors& operator=(SafeTensors&& o) noexcept;
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;
  ~SafeTensors();

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::optional<std::string> meta(const std::string& key) const;

  // Lookups accept the names stored in the file and, after apply_name_map, the mapped names (which
  // win where a mapped name equals another tensor's stored name).
  bool has(const std::string& name) const;
  // FormatError "model file <path> has no tensor '<name>'" (+ " (did you mean '<close>'?)").
  const TensorInfo& info(const std::string& name) const;
  const void* data(const std::string& name) const;  // pointer into the mapping, info(name).nbytes bytes
  // Sorted. The stored names, or after apply_name_map the mapped (canonical) names.
  std::vector<std::string> names() const;
  size_t file_size() const { return size_; }
  size_t tensor_count() const { return tensors_.size(); }

  // The tensor converted to float32 (from F32, F16, BF16, I32 or U8). When `expected` has ndim > 0
  // the shape must match: FormatError "<path>: tensor '<name>' has shape [a, b], expected [c, d]".
  // An I8 tensor is dequantized with its companion `<name>_scale` (docs/MODEL.md, int8 weights):
  // value = q * scale[row, column / G]; a missing or misshapen scale is a FormatError.
  std::vector<float> read_f32(const std::string& name, const Shape& expected = Shape()) const;
  // True for `<name>_scale` when `<name>` is an I8 tensor: part of that tensor, not a parameter.
  bool is_quant_scale(const std::string& name) const;

  // Makes every tensor also answer to map.map(stored name). Replaces an earlier map (always applied to
  // the stored names). FormatError when two tensors would get the same name.
  void apply_name_map(const NameMap& map);

 private:
  SafeTensors() = default;
  const TensorInfo* find(const std::string& name) const;
  void dequantize_i8(const std::string& name, const TensorInfo& t, const unsigned char* src,
                     std::vector<float>& out) const;
  void release() noexcept;

  std::string path_;
  const unsigned char* base_ = nullptr;  // the whole file, mapped read-only
  size_t size_ = 0;
  size_t data_start_ = 0;  // 8 + header length
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;          // in data-offset order
  std::map<std::string, size_t> by_name_;    // stored name -> index
  std::map<std::string, size_t> by_mapped_;  // mapped name -> index (empty without a name map)
};

// Symmetric int8 with one scale per `group` consecutive values of a row (the inverse of read_f32 on
// an I8 tensor): scale = max|w| / 127 rounded to F16, q = w / scale rounded to nearest even and
// clamped to [-127, 127] (0 where the scale is 0). w is [rows, cols] with cols % group == 0; q gets
// rows * cols values, scale_f16 rows * cols / group.
void quantize_int8_groups(const float* w, int64_t rows, int64_t cols, int64_t group, int8_t* q, uint16_t* scale_f16);
// The tensors `videomla convert --dtype int8` and tools/export.py store as int8: the DiT blocks'
// linear weights (2-D, `blocks.*.weight`, columns a multiple of kInt8Group).
inline constexpr int64_t kInt8Group = 32;
bool int8_candidate(const std::string& name, const Shape& shape);

struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;  // numel * dtype_size bytes
};

// Writes `path` atomically: to <path>.tmp (fsynced), then rename. On any failure the temp file is
// removed and IoError names the path and the errno text; a previous file at `path` is untouched.
// Invalid input (duplicate or empty names, negative dims, null data) throws FormatError before any
// file is created. Header JSON is space-padded to a multiple of 8; tensors are stored in the order
// given; `metadata` goes under "__metadata__".
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace vmla::io
