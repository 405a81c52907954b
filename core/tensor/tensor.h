#pragma once
// Tensor: a non-owning view of contiguous row-major memory on one device.
// Owners are Buffers (persistent weights, caches) and Arenas (per-pass scratch).
#include <array>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "core/tensor/dtype.h"

namespace vmla {

enum class Device : uint8_t { CPU = 0, CUDA = 1 };

constexpr int kMaxDims = 5;

struct Shape {
  int ndim = 0;
  std::array<int64_t, kMaxDims> d{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int64_t numel() const;
  int64_t operator[](int i) const { return d[size_t(i < 0 ? i + ndim : i)]; }
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[3, 64, 256]"
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Shape shape;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }
  int ndim() const { return shape.ndim; }
  int64_t dim(int i) const { return shape[i]; }
  int64_t cols() const { return shape.ndim ? shape[shape.ndim - 1] : 1; }  // last dim
  int64_t rows() const { return shape.ndim ? numel() / cols() : 1; }       // product of the rest
  bool empty() const { return data == nullptr; }

  template <class T> T* ptr() const { return static_cast<T*>(data); }

  // Same memory, another shape with the same element count.
  Tensor view(Shape s) const;
  // Rows [begin, begin+count) of the tensor seen as [rows(), cols()] (or of dim 0 with `dim0`).
  Tensor rows_slice(int64_t begin, int64_t count) const;
  Tensor dim0_slice(int64_t begin, int64_t count) const;
};

// Errors the engine throws. The message is written for a user and names what was wrong.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error { using Error::Error; };
struct IoError : Error { using Error::Error; };
struct FormatError : Error { using Error::Error; };
struct DeviceError : Error { using Error::Error; };
struct OutOfMemory : DeviceError { using DeviceError::DeviceError; };
struct Cancelled : Error { using Error::Error; };

// Throws ShapeError("<what>: expected [a, b], got [c, d]") unless shapes match.
void expect_shape(const Tensor& t, const Shape& s, const char* what);

}  // namespace vmla
