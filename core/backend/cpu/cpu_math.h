#pragma once
// Transcendentals for the elementwise kernels, on 4-lane GCC/Clang vector extensions (SSE2 on
// x86-64, NEON on arm64). Written explicitly because GCC does not auto-vectorise the scalar form
// under the default -ftrapping-math: it duplicates the clamped arithmetic into both arms of the
// clamp and then refuses to speculate it. Accuracy: a few float ulps (Cephes polynomials).
#include <cstdint>
#include <cstring>

#include "core/tensor/backend.h"

namespace vmla::cpu {

using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));

inline f4 splat(float v) { return f4{v, v, v, v}; }
inline f4 load4(const float* p) {
  f4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, f4 v) { std::memcpy(p, &v, sizeof v); }
// Lanes [0, n) from p, the rest 0.
inline f4 load_part(const float* p, int64_t n) {
  f4 v = splat(0.0f);
  for (int64_t i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
inline void store_part(float* p, f4 v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}
// Lane-wise max / min; where a lane of `a` is NaN the result lane is `b`.
inline f4 vmax(f4 a, f4 b) { return a > b ? a : b; }
inline f4 vmin(f4 a, f4 b) { return a < b ? a : b; }
inline float hsum(f4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
inline float hmax(f4 v) {
  float a = v[0] > v[1] ? v[0] : v[1], b = v[2] > v[3] ? v[2] : v[3];
  return a > b ? a : b;
}

// exp(x) for x in [-87, 88] (clamped outside: exp(-inf) gives 1.6e-38, not 0); NaN stays NaN.
// V: a float vector of any width, I: the int32 vector of the same width (exp4 below, and wider
// ones where a kernel is compiled for wider registers, cpu_attention.cpp).
template <class V, class I>
inline __attribute__((always_inline)) V expv(V x) {
  const V zero{};
  x = x < -87.0f ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  // Round x*log2(e) to nearest: adding 1.5*2^23 pushes the fraction out of the mantissa.
  const V n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const I e = (__builtin_convertvector(n, I) + 127) << 23;
  return p * (V)e;  // a vector cast reinterprets the bits
}
inline f4 exp4(f4 x) { return expv<f4, i4>(x); }

inline f4 tanh4(f4 x) {
  const f4 a = vmax(x, -x);
  // |x| < 0.625: odd polynomial (no cancellation near 0).
  const f4 s = x * x;
  f4 p = splat(-5.70498872745e-3f);
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const f4 small = p * s * x + x;
  // Otherwise 1 - 2 / (exp(2|x|) + 1) with the sign of x.
  f4 big = 1.0f - 2.0f / (exp4(2.0f * vmin(a, splat(44.0f))) + 1.0f);
  big = x < 0.0f ? -big : big;
  return a >= 0.625f ? big : small;  // NaN takes `small`, which stays NaN
}

// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3): one exp, no
// cancellation near 0 or for large negative x.
inline f4 gelu_tanh4(f4 x) {
  constexpr float k2 = -2.0f * 0.7978845608028654f;
  return x / (1.0f + exp4(k2 * (x + 0.044715f * x * x * x)));
}
inline f4 silu4(f4 x) { return x / (1.0f + exp4(-x)); }
inline f4 relu4(f4 x) { return vmax(x, splat(0.0f)); }

inline float fast_exp(float x) { return exp4(splat(x))[0]; }
inline float fast_tanh(float x) { return tanh4(splat(x))[0]; }

// y[i] = f(y[i]) over n elements, 4 lanes at a time.
template <class F>
inline void map4(float* y, int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4(y + i, f(load4(y + i)));
  if (i < n) store_part(y + i, f(load_part(y + i, n - i)), n - i);
}

// y[i] = act(y[i] + b[i]) for i < n; b may be null.
inline void bias_act_row(float* y, const float* b, int64_t n, Activation act) {
  if (b)
    for (int64_t i = 0; i < n; ++i) y[i] += b[i];
  switch (act) {
    case Activation::None: break;
    case Activation::GeluTanh: map4(y, n, gelu_tanh4); break;
    case Activation::Silu: map4(y, n, silu4); break;
    case Activation::Relu: map4(y, n, relu4); break;
  }
}

// y[i] = act(y[i] + b) for i < n (one bias for the row: conv channels).
inline void scalar_bias_act_row(float* y, float b, int64_t n, Activation act) {
  if (b != 0.0f)
    for (int64_t i = 0; i < n; ++i) y[i] += b;
  bias_act_row(y, nullptr, n, act);
}

}  // namespace vmla::cpu
