#include "kernels/common.cuh"
#include "kernels/elementwise.cuh"

namespace vmla::kernels {

namespace {

__global__ void convert_kernel(ConvertParams p) {
  VMLA_GRID_STRIDE(i, p.n) store_f(p.dst, p.dst_t, i, load_f(p.src, p.src_t, i));
}

__global__ void fill_kernel(FillParams p) {
  VMLA_GRID_STRIDE(i, p.n) store_f(p.dst, p.t, i, p.value);
}

__global__ void axpby_kernel(AxpbyParams p) {
  VMLA_GRID_STRIDE(i, p.n) {
    float v = p.alpha * load_f(p.x, p.xt, i);
    if (p.y) v += p.beta * load_f(p.y, p.yt, i);
    store_f(p.out, p.ot, i, v);
  }
}

__global__ void unary_kernel(UnaryParams p) {
  VMLA_GRID_STRIDE(i, p.n) {
    float v = load_f(p.x, p.xt, i);
    v = p.op == kUnaryTanhClamp ? p.c * tanhf(v / p.c) : apply_act(v, p.op);
    store_f(p.out, p.ot, i, v);
  }
}

__global__ void modulation_kernel(ModulationParams p) {
  VMLA_GRID_STRIDE(i, p.F * p.KD) {
    int64_t f = i / p.KD, j = i - f * p.KD;
    int64_t sc = p.src_cols == p.KD ? j : j % p.src_cols;
    store_f(p.out, p.ot, i, load_f(p.table, p.tt, j) + load_f(p.src, p.st, f * p.src_cols + sc));
  }
}

__global__ void bias_act_kernel(BiasActParams p) {
  VMLA_GRID_STRIDE(i, p.n) {
    float v = load_f(p.src, p.srct, i);
    if (p.bias) v += load_f(p.bias, p.bt, (i / p.inner) % p.nb);
    store_f(p.y, p.yt, i, apply_act(v, p.act));
  }
}

__global__ void gated_residual_kernel(GatedResidualParams p) {
  VMLA_GRID_STRIDE(i, p.T * p.D) {
    float y = load_f(p.y, p.yt, i);
    if (p.gate_idx >= 0) {
      int64_t t = i / p.D, d = i - t * p.D;
      y *= load_f(p.mod, p.mt, (t / p.rows_per_frame) * p.mod_cols + int64_t(p.gate_idx) * p.D + d);
    }
    store_f(p.x, p.xt, i, load_f(p.x, p.xt, i) + y);
  }
}

}  // namespace

cudaError_t launch_convert(const ConvertParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  convert_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_fill(const FillParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  fill_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_axpby(const AxpbyParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  axpby_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_unary(const UnaryParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  unary_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_add_modulation(const ModulationParams& p, cudaStream_t s) {
  if (p.F * p.KD <= 0) return cudaSuccess;
  modulation_kernel<<<grid_for(p.F * p.KD), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_bias_act(const BiasActParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  bias_act_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_gated_residual(const GatedResidualParams& p, cudaStream_t s) {
  if (p.T * p.D <= 0) return cudaSuccess;
  gated_residual_kernel<<<grid_for(p.T * p.D), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
