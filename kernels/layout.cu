#include "kernels/common.cuh"
#include "kernels/layout.cuh"

namespace vmla::kernels {

namespace {

__global__ void patchify_kernel(PatchifyParams p) {
  const int64_t h = p.H / p.ph, w = p.W / p.pw, pp = int64_t(p.ph) * p.pw;
  VMLA_GRID_STRIDE(i, p.F * p.C * p.H * p.W) {
    int64_t r = i;
    const int64_t xx = r % p.W;
    r /= p.W;
    const int64_t yy = r % p.H;
    r /= p.H;
    const int64_t c = r % p.C;
    const int64_t f = r / p.C;
    const int64_t py = yy % p.ph, px = xx % p.pw;
    const int64_t token = (f * h + yy / p.ph) * w + xx / p.pw;
    const int64_t sub = py * p.pw + px;
    const int64_t col = p.inverse ? sub * p.C + c : c * pp + sub;
    const int64_t t = token * p.C * pp + col;
    if (p.inverse)
      store_f(p.x, p.xt, i, load_f(p.tokens, p.tt, t));
    else
      store_f(p.tokens, p.tt, t, load_f(p.x, p.xt, i));
  }
}

__global__ void concat_heads_kernel(ConcatHeadsParams p) {
  const int dh = p.da + p.db;
  const int64_t cols = int64_t(p.heads) * dh;
  VMLA_GRID_STRIDE(i, p.T * cols) {
    const int64_t t = i / cols;
    const int r = int(i - t * cols);
    const int h = r / dh, c = r - h * dh;
    float v;
    if (c < p.da) {
      v = load_f(p.a, p.at, t * int64_t(p.heads) * p.da + int64_t(h) * p.da + c);
    } else {
      const int hb = p.b_heads == 1 ? 0 : h;
      v = load_f(p.b, p.bt, t * int64_t(p.b_heads) * p.db + int64_t(hb) * p.db + (c - p.da));
    }
    store_f(p.out, p.ot, i, v);
  }
}

__global__ void concat_channels_kernel(ConcatChannelsParams p) {
  const int64_t C = p.Ca + p.Cb;
  VMLA_GRID_STRIDE(i, p.N * C * p.HW) {
    const int64_t s = i % p.HW;
    const int64_t r = i / p.HW;
    const int64_t c = r % C, n = r / C;
    const float v = c < p.Ca ? load_f(p.a, p.at, (n * p.Ca + c) * p.HW + s)
                             : load_f(p.b, p.bt, (n * p.Cb + (c - p.Ca)) * p.HW + s);
    store_f(p.out, p.ot, i, v);
  }
}

__global__ void upsample2x_kernel(Upsample2xParams p) {
  const int64_t W2 = 2 * p.W, H2 = 2 * p.H;
  VMLA_GRID_STRIDE(i, p.NC * H2 * W2) {
    const int64_t xx = i % W2;
    const int64_t r = i / W2;
    const int64_t yy = r % H2, nc = r / H2;
    store_f(p.y, p.yt, i, load_f(p.x, p.xt, (nc * p.H + yy / 2) * p.W + xx / 2));
  }
}

__global__ void to_rgb8_kernel(ToRgb8Params p) {
  VMLA_GRID_STRIDE(i, p.F * p.HW * 3) {
    const int64_t c = i % 3;
    const int64_t r = i / 3;
    const int64_t s = r % p.HW, f = r / p.HW;
    float v = load_f(p.x, p.xt, (f * 3 + c) * p.HW + s) * 255.f;
    v = fminf(fmaxf(v, 0.f), 255.f);  // NaN becomes 0 (fmaxf returns the other operand)
    p.rgb[i] = uint8_t(rintf(v));      // half to even, as the CPU reference
  }
}

__global__ void embedding_kernel(EmbeddingParams p) {
  VMLA_GRID_STRIDE(i, int64_t(p.n) * p.D) {
    const int64_t r = i / p.D, d = i - r * p.D;
    store_f(p.out, p.ot, i, load_f(p.table, p.tt, int64_t(p.ids[r]) * p.D + d));
  }
}

}  // namespace

cudaError_t launch_patchify(const PatchifyParams& p, cudaStream_t s) {
  const int64_t n = p.F * p.C * p.H * p.W;
  if (n <= 0) return cudaSuccess;
  patchify_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_concat_heads(const ConcatHeadsParams& p, cudaStream_t s) {
  const int64_t n = p.T * p.heads * (p.da + p.db);
  if (n <= 0) return cudaSuccess;
  concat_heads_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_concat_channels(const ConcatChannelsParams& p, cudaStream_t s) {
  const int64_t n = p.N * (p.Ca + p.Cb) * p.HW;
  if (n <= 0) return cudaSuccess;
  concat_channels_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_upsample2x(const Upsample2xParams& p, cudaStream_t s) {
  const int64_t n = p.NC * p.H * p.W * 4;
  if (n <= 0) return cudaSuccess;
  upsample2x_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_to_rgb8(const ToRgb8Params& p, cudaStream_t s) {
  const int64_t n = p.F * p.HW * 3;
  if (n <= 0) return cudaSuccess;
  to_rgb8_kernel<<<grid_for(n), kThreads, 0, s>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_embedding(const void* table, DType tt, void* out, DType ot, int64_t D, const int32_t* ids,
                             int64_t n, cudaStream_t s) {
  for (int64_t done = 0; done < n; done += kEmbeddingIdsPerLaunch) {
    EmbeddingParams p;
    p.table = table;
    p.tt = tt;
    p.ot = ot;
    p.D = D;
    p.n = int(n - done < kEmbeddingIdsPerLaunch ? n - done : kEmbeddingIdsPerLaunch);
    p.out = static_cast<char*>(out) + size_t(done * D) * dtype_size(ot);
    for (int i = 0; i < p.n; ++i) p.ids[i] = ids[done + i];
    if (int64_t(p.n) * D <= 0) continue;
    embedding_kernel<<<grid_for(int64_t(p.n) * D), kThreads, 0, s>>>(p);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace vmla::kernels
