#include "kernels/common.cuh"
#include "kernels/rope.cuh"

namespace vmla::kernels {

namespace {

// One thread per (row, pair): the angle is the same for every head, so its sincos is computed once
// and applied to the pair in each head (the heads' pairs are head_stride apart).
__global__ void rope_kernel(RopeParams p) {
  const void* src = p.src ? p.src : p.x;
  VMLA_GRID_STRIDE(i, p.T * p.npairs) {
    const int64_t t = i / p.npairs;
    const int pr = int(i - t * p.npairs);
    const float angle = float(p.pos[t * 3 + p.axes[pr]]) * load_f(p.freqs, p.ft, pr);
    float sn, cs;
    sincosf(angle, &sn, &cs);
    const int64_t row = int64_t(p.heads) * p.head_stride;
    int64_t c = t * row + p.offset + 2 * pr;
    int64_t cx = t * (p.src && p.src_ld ? p.src_ld : row) + p.offset + 2 * pr;  // the same pair in src
    for (int h = 0; h < p.heads; ++h, c += p.head_stride, cx += p.head_stride) {
      const float x0 = load_f(src, p.xt, cx), x1 = load_f(src, p.xt, cx + 1);
      store_f(p.x, p.xt, c, x0 * cs - x1 * sn);
      store_f(p.x, p.xt, c + 1, x0 * sn + x1 * cs);
    }
  }
}

}  // namespace

cudaError_t launch_rope(const RopeParams& p, cudaStream_t s) {
  const int64_t n = p.T * p.npairs;
  if (n <= 0) return cudaSuccess;
  rope_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
