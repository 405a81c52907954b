#include "core/tensor/tensor.h"

#include <cmath>
#include <sstream>

namespace vmla {

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > size_t(kMaxDims)) throw ShapeError("tensor has more than 5 dimensions");
  for (int64_t v : dims) d[size_t(ndim++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= d[size_t(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[size_t(i)] != o.d[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < ndim; ++i) s << (i ? ", " : "") << d[size_t(i)];
  s << ']';
  return s.str();
}

Tensor Tensor::view(Shape s) const {
  if (s.numel() != numel())
    throw ShapeError("view " + shape.str() + " as " + s.str() + ": element counts differ");
  Tensor t = *this;
  t.shape = s;
  return t;
}

Tensor Tensor::rows_slice(int64_t begin, int64_t count) const {
  if (begin < 0 || count < 0 || begin + count > rows())
    throw ShapeError("rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") of " +
                     shape.str() + " out of range");
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(begin * cols()) * dtype_size(dtype);
  t.shape = Shape{count, cols()};
  return t;
}

Tensor Tensor::dim0_slice(int64_t begin, int64_t count) const {
  if (ndim() == 0 || begin < 0 || count < 0 || begin + count > dim(0))
    throw ShapeError("slice [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") of " +
                     shape.str() + " out of range");
  int64_t inner = dim(0) ? numel() / dim(0) : 0;
  Tensor t = *this;
  t.data = static_cast<char*>(data) + size_t(begin * inner) * dtype_size(dtype);
  t.shape.d[0] = count;
  return t;
}

void expect_shape(const Tensor& t, const Shape& s, const char* what) {
  if (!(t.shape == s)) throw ShapeError(std::string(what) + ": expected " + s.str() + ", got " + t.shape.str());
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mant = x & 0x007fffffu;
  int32_t exp = int32_t((x >> 23) & 0xff);
  if (exp == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
  exp = exp - 127 + 15;
  if (exp >= 0x1f) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x00800000u;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return uint16_t(half);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      float f = std::ldexp(float(mant), -24);
      std::memcpy(&x, &f, 4);
      x |= sign;
    }
  } else if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

}  // namespace vmla
