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

// ---- RMSNorm, then rotary embedding ----------------------------------------------------------------
//
// Each row's angles depend only on its position, so the cos/sin of its npairs pairs are computed once
// per row into shared memory and applied to the pair in every head. The normalised value stays in
// fp32 through the rotation and is rounded once.

__device__ __forceinline__ void row_angles(const NormRopeParams& p, int64_t row, float2* tab, int first, int step) {
  const int32_t* pr = p.pos + row * 3;
  for (int j = first; j < p.npairs; j += step) {
    float sn, cs;
    sincosf(float(pr[p.axes[j]]) * load_f(p.freqs, p.ft, j), &sn, &cs);
    tab[j] = make_float2(cs, sn);
  }
}

// (a, b) rotated by the angle whose (cos, sin) is t.
__device__ __forceinline__ float2 rotate(float a, float b, float2 t) {
  return make_float2(a * t.x - b * t.y, a * t.y + b * t.x);
}

// Fast path, as norm_rows_kernel: one warp per row held in registers as float4 chunks. A chunk's
// columns 4c..4c+3 hold two whole pairs (head_dim even), each rotated if its index in its head is
// below npairs. Same conditions as rows_fast_path, plus an even head_dim.
__global__ void __launch_bounds__(kNormThreads) norm_rope_rows_kernel(NormRopeParams p) {
  __shared__ float2 tabs[kRowsPerBlock][kNormRopeMaxPairs];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + warp;
  if (row >= p.rows) return;
  float2* tab = tabs[warp];
  row_angles(p, row, tab, lane, 32);
  const int n4 = int(p.D / 4);
  const int64_t base = row * p.D, xbase = row * (p.ldx ? p.ldx : p.D);
  float4 v[kRowChunks];
  float s2 = 0.f;
#pragma unroll
  for (int i = 0; i < kRowChunks; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < n4 ? load4(p.x, p.xt, xbase + 4 * c) : make_float4(0.f, 0.f, 0.f, 0.f);
    s2 += (v[i].x * v[i].x + v[i].y * v[i].y) + (v[i].z * v[i].z + v[i].w * v[i].w);
  }
  const float inv = rsqrtf(warp_sum(s2) / float(p.D) + p.eps);
  __syncwarp();  // the angle table is complete
  // e: column 4c's place in its head, advanced by 128 columns (one chunk per lane) each step.
  const int step = 128 % p.head_dim;
  int e = (4 * lane) % p.head_dim;
#pragma unroll
  for (int i = 0; i < kRowChunks; ++i, e = e + step >= p.head_dim ? e + step - p.head_dim : e + step) {
    const int c = lane + 32 * i;
    if (c >= n4) continue;
    float4 y = make_float4(v[i].x * inv, v[i].y * inv, v[i].z * inv, v[i].w * inv);
    if (p.w) {
      const float4 w = load4(p.w, p.wt, 4 * c);
      y = make_float4(y.x * w.x, y.y * w.y, y.z * w.z, y.w * w.w);
    }
    // The pairs' indices in their heads (the second starts the next head where head_dim % 4 == 2).
    const int j0 = e / 2, j1 = (e + 2 < p.head_dim ? e + 2 : e + 2 - p.head_dim) / 2;
    if (j0 < p.npairs) {
      const float2 r = rotate(y.x, y.y, tab[j0]);
      y.x = r.x;
      y.y = r.y;
    }
    if (j1 < p.npairs) {
      const float2 r = rotate(y.z, y.w, tab[j1]);
      y.z = r.x;
      y.w = r.y;
    }
    store4(p.y, p.yt, base + 4 * c, y);
  }
}

// Any layout: one block per row; the sum of squares over the block, then one thread per (head, pair
// of columns), the last column of an odd head_dim on its own.
__global__ void __launch_bounds__(kNormThreads) norm_rope_kernel(NormRopeParams p) {
  __shared__ float red[kNormThreads / 32];
  __shared__ float2 tab[kNormRopeMaxPairs];
  const int64_t row = blockIdx.x;
  const int64_t base = row * p.D, xbase = row * (p.ldx ? p.ldx : p.D);
  row_angles(p, row, tab, threadIdx.x, blockDim.x);
  float s2 = 0.f;
  for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) {
    const float v = load_f(p.x, p.xt, xbase + d);
    s2 += v * v;
  }
  const float inv = rsqrtf(block_sum(s2, red) / float(p.D) + p.eps);  // block_sum also orders tab
  const int hp = (p.head_dim + 1) / 2;  // column pairs per head
  const int64_t n = p.D / p.head_dim * hp;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int64_t h = i / hp;
    const int j = int(i - h * hp);
    const int64_t d = h * p.head_dim + 2 * j;
    const bool two = 2 * j + 1 < p.head_dim;
    float a = load_f(p.x, p.xt, xbase + d) * inv, b = two ? load_f(p.x, p.xt, xbase + d + 1) * inv : 0.f;
    if (p.w) {
      a *= load_f(p.w, p.wt, d);
      if (two) b *= load_f(p.w, p.wt, d + 1);
    }
    if (j < p.npairs) {
      const float2 r = rotate(a, b, tab[j]);
      a = r.x;
      b = r.y;
    }
    store_f(p.y, p.yt, base + d, a);
    if (two) store_f(p.y, p.yt, base + d + 1, b);
  }
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

cudaError_t launch_norm_rope(const NormRopeParams& p, cudaStream_t s) {
  if (p.rows <= 0 || p.D <= 0) return cudaSuccess;
  if (p.rows > 0x7fffffff || p.head_dim <= 0 || p.D % p.head_dim != 0 || p.npairs < 0 ||
      p.npairs > kNormRopeMaxPairs || 2 * p.npairs > p.head_dim)
    return cudaErrorInvalidValue;
  const bool fast = p.D % 4 == 0 && p.ldx % 4 == 0 && p.D <= 4 * 32 * kRowChunks && p.head_dim % 2 == 0 &&
                    vec4_ok(p.x, p.xt) && vec4_ok(p.y, p.yt) && (!p.w || vec4_ok(p.w, p.wt));
  if (fast) {
    const int64_t blocks = (p.rows + kRowsPerBlock - 1) / kRowsPerBlock;
    norm_rope_rows_kernel<<<unsigned(blocks), kNormThreads, 0, s>>>(p);
  } else {
    norm_rope_kernel<<<unsigned(p.rows), kNormThreads, 0, s>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace vmla::kernels
