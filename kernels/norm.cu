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
  const int64_t base = row * p.D;
  float mean = 0.f;
  if (!p.rms) {
    float s = 0.f;
    for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) s += load_f(p.x, p.xt, base + d);
    mean = block_sum(s, red) / float(p.D);
  }
  float s2 = 0.f;
  for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) {
    float v = load_f(p.x, p.xt, base + d) - mean;
    s2 += v * v;
  }
  const float inv = rsqrtf(block_sum(s2, red) / float(p.D) + p.eps);
  const int64_t mrow = (row / p.rows_per_frame) * p.mod_cols;
  for (int64_t d = threadIdx.x; d < p.D; d += blockDim.x) {
    float v = (load_f(p.x, p.xt, base + d) - mean) * inv;
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

}  // namespace

cudaError_t launch_norm(const NormParams& p, cudaStream_t s) {
  if (p.rows <= 0 || p.D <= 0) return cudaSuccess;
  if (p.rows > 0x7fffffff) return cudaErrorInvalidValue;
  norm_kernel<<<unsigned(p.rows), kNormThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
