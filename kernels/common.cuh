#pragma once
// Shared by every kernel family: dtype-dispatched loads and stores (fp32 arithmetic everywhere),
// launch-size helpers. Device code only; the launchers' .cuh files stay plain C++ for the backend.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

// Runtime dispatch on the element type: one instantiation per kernel instead of one per dtype
// combination (compile time on small machines); the branch is uniform across a warp.
__device__ __forceinline__ float load_f(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::I32: return float(static_cast<const int32_t*>(p)[i]);
    case DType::U8: return float(static_cast<const uint8_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store_f(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::BF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    case DType::F16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = int32_t(rintf(v)); break;
    case DType::U8: static_cast<uint8_t*>(p)[i] = uint8_t(fminf(fmaxf(rintf(v), 0.f), 255.f)); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}

// Four consecutive elements at index i (a multiple of 4) of an F32 or BF16 array: one 16-byte
// (F32) or 8-byte (BF16) access. Callers check vec4_ok() for the pointer first.
__device__ __forceinline__ float4 load4(const void* p, DType t, int64_t i) {
  if (t == DType::BF16) {
    const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(p) + i);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
  }
  return *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
}

__device__ __forceinline__ void store4(void* p, DType t, int64_t i, float4 v) {
  if (t == DType::BF16) {
    const __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *reinterpret_cast<const uint32_t*>(&a);
    u.y = *reinterpret_cast<const uint32_t*>(&b);
    *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(p) + i) = u;
  } else {
    *reinterpret_cast<float4*>(static_cast<float*>(p) + i) = v;
  }
}

// Whether load4/store4 may touch p: F32 or BF16, aligned to four elements.
inline bool vec4_ok(const void* p, DType t) {
  if (t != DType::F32 && t != DType::BF16) return false;
  return (reinterpret_cast<uintptr_t>(p) & (4 * (t == DType::F32 ? 4u : 2u) - 1)) == 0;
}

// Activation codes mirror vmla::Activation (0 none, 1 gelu_tanh, 2 silu, 3 relu).
__device__ __forceinline__ float apply_act(float x, int act) {
  switch (act) {
    case 1: {
      const float k0 = 0.7978845608028654f, k1 = 0.044715f;
      return 0.5f * x * (1.f + tanhf(k0 * (x + k1 * x * x * x)));
    }
    case 2: return x / (1.f + expf(-x));
    case 3: return fmaxf(x, 0.f);
    default: return x;
  }
}

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  // Grid-stride loops cover the rest; 2^20 blocks keep every SM busy.
  return unsigned(b < 1 ? 1 : (b > (int64_t(1) << 20) ? (int64_t(1) << 20) : b));
}

#define VMLA_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

}  // namespace vmla::kernels
