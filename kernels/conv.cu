#include "kernels/common.cuh"
#include "kernels/conv.cuh"

namespace vmla::kernels {

namespace {

__global__ void im2col_kernel(Im2colParams p) {
  const int64_t P = p.Ho * p.Wo, KK = int64_t(p.kh) * p.kw;
  VMLA_GRID_STRIDE(i, p.N * p.Cin * KK * P) {
    const int64_t s = i % P;
    int64_t r = i / P;
    const int64_t k = r % KK;
    r /= KK;
    const int64_t ci = r % p.Cin, n = r / p.Cin;
    const int64_t ky = k / p.kw, kx = k % p.kw;
    const int64_t oy = s / p.Wo, ox = s % p.Wo;
    const int64_t iy = oy * p.stride - p.pad + ky, ix = ox * p.stride - p.pad + kx;
    float v = 0.f;
    if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = load_f(p.x, p.xt, ((n * p.Cin + ci) * p.H + iy) * p.W + ix);
    store_f(p.col, p.ct, i, v);
  }
}

}  // namespace

cudaError_t launch_im2col(const Im2colParams& p, cudaStream_t s) {
  const int64_t n = p.N * p.Cin * p.kh * p.kw * p.Ho * p.Wo;
  if (n <= 0) return cudaSuccess;
  im2col_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
