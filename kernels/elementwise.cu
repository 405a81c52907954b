#include "kernels/common.cuh"
#include "kernels/elementwise.cuh"

namespace vmla::kernels {

namespace {

__global__ void convert_kernel(ConvertParams p) {
  VMLA_GRID_STRIDE(i, p.n) store_f(p.dst, p.dst_t, i, load_f(p.src, p.src_t, i));
}

__global__ void convert_rows_kernel(ConvertRowsParams p) {
  VMLA_GRID_STRIDE(i, p.rows * p.cols) {
    const int64_t r = i / p.cols, c = i - r * p.cols;
    store_f(p.dst, p.dst_t, r * p.dst_ld + c, load_f(p.src, p.src_t, r * p.src_ld + c));
  }
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

// Four elements a thread (8- or 16-byte accesses) for F32/BF16 tensors aligned to four elements.
__global__ void axpby4_kernel(AxpbyParams p) {
  VMLA_GRID_STRIDE(i, p.n / 4) {
    const float4 x = load4(p.x, p.xt, 4 * i);
    float4 v = make_float4(p.alpha * x.x, p.alpha * x.y, p.alpha * x.z, p.alpha * x.w);
    if (p.y) {
      const float4 y = load4(p.y, p.yt, 4 * i);
      v = make_float4(v.x + p.beta * y.x, v.y + p.beta * y.y, v.z + p.beta * y.z, v.w + p.beta * y.w);
    }
    store4(p.out, p.ot, 4 * i, v);
  }
}

__global__ void gated_residual4_kernel(GatedResidualParams p) {
  VMLA_GRID_STRIDE(i, p.T * p.D / 4) {
    const int64_t e = 4 * i;
    float4 y = load4(p.y, p.yt, e);
    if (p.gate_idx >= 0) {
      const int64_t t = e / p.D, d = e - t * p.D;
      const float4 g = load4(p.mod, p.mt, (t / p.rows_per_frame) * p.mod_cols + int64_t(p.gate_idx) * p.D + d);
      y = make_float4(y.x * g.x, y.y * g.y, y.z * g.z, y.w * g.w);
    }
    const float4 x = load4(p.x, p.xt, e);
    store4(p.x, p.xt, e, make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w));
  }
}

}  // namespace

cudaError_t launch_convert(const ConvertParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  convert_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_convert_rows(const ConvertRowsParams& p, cudaStream_t s) {
  const int64_t n = p.rows * p.cols;
  if (n <= 0) return cudaSuccess;
  convert_rows_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_fill(const FillParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  fill_kernel<<<grid_for(p.n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_axpby(const AxpbyParams& p, cudaStream_t s) {
  if (p.n <= 0) return cudaSuccess;
  if (p.n % 4 == 0 && vec4_ok(p.x, p.xt) && vec4_ok(p.out, p.ot) && (!p.y || vec4_ok(p.y, p.yt))) {
    axpby4_kernel<<<grid_for(p.n / 4), kThreads, 0, s>>>(p);
    return cudaGetLastError();
  }
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
  if (p.D % 4 == 0 && vec4_ok(p.x, p.xt) && vec4_ok(p.y, p.yt) &&
      (p.gate_idx < 0 || (vec4_ok(p.mod, p.mt) && p.mod_cols % 4 == 0))) {
    gated_residual4_kernel<<<grid_for(p.T * p.D / 4), kThreads, 0, s>>>(p);
    return cudaGetLastError();
  }
  gated_residual_kernel<<<grid_for(p.T * p.D), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
