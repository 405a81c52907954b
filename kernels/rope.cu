#include "kernels/common.cuh"
#include "kernels/rope.cuh"

namespace vmla::kernels {

namespace {

__global__ void rope_kernel(RopeParams p) {
  const int64_t per_row = int64_t(p.heads) * p.npairs;
  VMLA_GRID_STRIDE(i, p.T * per_row) {
    const int64_t t = i / per_row;
    const int r = int(i - t * per_row);
    const int h = r / p.npairs, pr = r - h * p.npairs;
    const int axis = p.axes[pr];
    const float angle = float(p.pos[t * 3 + axis]) * load_f(p.freqs, p.ft, pr);
    float sn, cs;
    sincosf(angle, &sn, &cs);
    const int64_t c = t * int64_t(p.heads) * p.head_stride + int64_t(h) * p.head_stride + p.offset + 2 * pr;
    const float x0 = load_f(p.x, p.xt, c), x1 = load_f(p.x, p.xt, c + 1);
    store_f(p.x, p.xt, c, x0 * cs - x1 * sn);
    store_f(p.x, p.xt, c + 1, x0 * sn + x1 * cs);
  }
}

}  // namespace

cudaError_t launch_rope(const RopeParams& p, cudaStream_t s) {
  const int64_t n = p.T * p.heads * p.npairs;
  if (n <= 0) return cudaSuccess;
  rope_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
