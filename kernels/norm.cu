#include "kernels/common.cuh"
#include "kernels/norm.cuh"

namespace vmla::kernels {

namespace {

constexpr int kNormThreads = 256;

// Sum over the block; every thread gets the result.
__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // red may still be read from the previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < int(blockDim.x / 32); ++i) t += red[i];
  return t;
}

__global__ void __launch_bounds__(kNormThreads) norm_kernel(NormParams p) {
  __shared__ float red[kNormThreads / 32];
  const int64_t row = blockIdx.x;
  const int64_t base = row * p.D, xbase = row * (p.ldx ? p.ldx : p.D);
  float mean = 0.f;
  if (!p.rms) {
    float s = 0.f;
    for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) s += load_f(p.x, p.xt, xbase + d);
    mean = block_sum(s, red) / float(p.D);
  }
  float s2 = 0.f;
  for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) {
    float v = load_f(p.x, p.xt, xbase + d) - mean;
    s2 += v * v;
  }
  const float inv = rsqrtf(block_sum(s2, red) / float(p.D) + p.eps);
  const int64_t mrow = (row / p.rows_per_frame) * p.mod_cols;
  for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) {
    float v = (load_f(p.x, p.xt, xbase + d) - mean) * inv;
    if (p.mod) {
      const float shift = load_f(p.mod, p.mt, mrow + int64_t(p.shift_idx) * p.D + d);
      const float scale = load_f(p.mod, p.mt, mrow + int64_t(p.scale_idx) * p.D + d);
      v = v * (1.f + scale) + shift;
    } else {
      if (p.w) v *= load_f(p.w, p.wt, d);
      if (p.b) v += load_f(p.b, p.bt, d);
    }
    store_f(p.y, p.yt, base + d, v);
  }
}

// Fast path: one warp per row, the row held in registers as float4 chunks (one read of x),
// statistics by warp shuffles, 8- or 16-byte accesses. D (and the row stride of x) a multiple of 4
// and at most 4 * 32 * kRowChunks; every tensor F32 or BF16.
constexpr int kRowChunks = 16;
constexpr int kRowsPerBlock = kNormThreads / 32;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void __launch_bounds__(kNormThreads) norm_rows_kernel(NormParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + warp;
  if (row >= p.rows) return;
  const int n4 = int(p.D / 4);
  const int64_t base = row * p.D, xbase = row * (p.ldx ? p.ldx : p.D);
  float4 v[kRowChunks];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kRowChunks; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < n4 ? load4(p.x, p.xt, xbase + 4 * c) : make_float4(0.f, 0.f, 0.f, 0.f);
    s += (v[i].x + v[i].y) + (v[i].z + v[i].w);
  }
  const float mean = p.rms ? 0.f : warp_sum(s) / float(p.D);
  float s2 = 0.f;
#pragma unroll
  for (int i = 0; i < kRowChunks; ++i) {
    if (lane + 32 * i < n4) {
      const float a = v[i].x - mean, b = v[i].y - mean, c = v[i].z - mean, d = v[i].w - mean;
      s2 += (a * a + b * b) + (c * c + d * d);
    }
  }
  const float inv = rsqrtf(warp_sum(s2) / float(p.D) + p.eps);
  const int64_t mrow = (row / p.rows_per_frame) * p.mod_cols;
#pragma unroll
  for (int i = 0; i < kRowChunks; ++i) {
    const int c = lane + 32 * i;
    if (c >= n4) continue;
    float4 y = make_float4((v[i].x - mean) * inv, (v[i].y - mean) * inv, (v[i].z - mean) * inv, (v[i].w - mean) * inv);
    if (p.mod) {
      const float4 sh = load4(p.mod, p.mt, mrow + int64_t(p.shift_idx) * p.D + 4 * c);
      const float4 sc = load4(p.mod, p.mt, mrow + int64_t(p.scale_idx) * p.D + 4 * c);
      y = make_float4(y.x * (1.f + sc.x) + sh.x, y.y * (1.f + sc.y) + sh.y, y.z * (1.f + sc.z) + sh.z,
                      y.w * (1.f + sc.w) + sh.w);
    } else {
      if (p.w) {
        const float4 w = load4(p.w, p.wt, 4 * c);
        y = make_float4(y.x * w.x, y.y * w.y, y.z * w.z, y.w * w.w);
      }
      if (p.b) {
        const float4 b = load4(p.b, p.bt, 4 * c);
        y = make_float4(y.x + b.x, y.y + b.y, y.z + b.z, y.w + b.w);
      }
    }
    store4(p.y, p.yt, base + 4 * c, y);
  }
}

bool rows_fast_path(const NormParams& p) {
  return p.D % 4 == 0 && p.ldx % 4 == 0 && p.D <= 4 * 32 * kRowChunks && vec4_ok(p.x, p.xt) && vec4_ok(p.y, p.yt) &&
         (!p.w || vec4_ok(p.w, p.wt)) && (!p.b || vec4_ok(p.b, p.bt)) &&
         (!p.mod || (vec4_ok(p.mod, p.mt) && p.mod_cols % 4 == 0));
}

}  // namespace

cudaError_t launch_norm(const NormParams& p, cudaStream_t s) {
  if (p.rows <= 0 || p.D <= 0) return cudaSuccess;
  if (p.rows > 0x7fffffff) return cudaErrorInvalidValue;
  if (rows_fast_path(p)) {
    const int64_t blocks = (p.rows + kRowsPerBlock - 1) / kRowsPerBlock;
    norm_rows_kernel<<<unsigned(blocks), kNormThreads, 0, s>>>(p);
  } else {
    norm_kernel<<<unsigned(p.rows), kNormThreads, 0, s>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace vmla::kernels
