#include <cfloat>

#include "kernels/attention.cuh"
#include "kernels/common.cuh"
#include "kernels/flash_attention.cuh"
#include "kernels/flash_attention_sm90.cuh"

namespace vmla::kernels {

namespace {

// Tile shape. A warp owns kRowsPerWarp query rows; in the score phase lane j owns key j of the tile,
// in the P*V phase lane l owns output columns l, l+32, ... (kCols of them).
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 8;
constexpr int kBlockQ = kWarps * kRowsPerWarp;
constexpr int kBlockK = 32;
constexpr int kAttnThreads = kWarps * 32;
static_assert(kBlockK == 32, "one key per lane in the score phase");

struct Tile {
  int dk4;  // dk rounded up to 4 (float4 loads; the padding is zero)
  int dks;  // row stride of Q and K in shared memory: dk4, or dk4 + 4 so that 8 lanes reading
            // float4 rows hit distinct banks (stride = 4 mod 8)
};

__host__ __device__ inline Tile make_tile(int dk) {
  Tile t;
  t.dk4 = (dk + 3) / 4 * 4;
  t.dks = (t.dk4 % 8 == 0) ? t.dk4 + 4 : t.dk4;
  return t;
}

inline size_t smem_bytes(int dk, int dv) {
  Tile t = make_tile(dk);
  return sizeof(float) * (size_t(kBlockQ) * t.dks + size_t(kBlockK) * t.dks + size_t(kBlockK) * dv);
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int kCols>
__global__ void __launch_bounds__(kAttnThreads) attention_kernel(AttentionParams p, float qscale) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const Tile tl = make_tile(p.dk);
  float* Qs = smem;
  float* Ks = Qs + kBlockQ * tl.dks;
  float* Vs = Ks + kBlockK * tl.dks;

  const int h = blockIdx.y;
  const int hk = h / (p.heads / p.kv_heads);
  const int64_t q0 = int64_t(blockIdx.x) * kBlockQ;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t q_stride = int64_t(p.heads) * p.dk;
  const int64_t k_stride = int64_t(p.kv_heads) * p.dk;
  const int64_t v_stride = int64_t(p.kv_heads) * p.dv;

  // Q is pre-multiplied by scale * log2(e): the softmax runs in base 2.
  for (int idx = tid; idx < kBlockQ * tl.dks; idx += kAttnThreads) {
    const int r = idx / tl.dks, c = idx - r * tl.dks;
    float v = 0.f;
    if (c < p.dk && q0 + r < p.Tq) v = load_f(p.q, p.qt, (q0 + r) * q_stride + int64_t(h) * p.dk + c) * qscale;
    Qs[idx] = v;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kCols];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int i = 0; i < kCols; ++i) acc[r][i] = 0.f;
  }

  for (int64_t k0 = 0; k0 < p.Tk; k0 += kBlockK) {
    __syncthreads();  // the previous tile is consumed
    for (int idx = tid; idx < kBlockK * tl.dks; idx += kAttnThreads) {
      const int r = idx / tl.dks, c = idx - r * tl.dks;
      float v = 0.f;
      if (c < p.dk && k0 + r < p.Tk) v = load_f(p.k, p.kt, (k0 + r) * k_stride + int64_t(hk) * p.dk + c);
      Ks[idx] = v;
    }
    for (int idx = tid; idx < kBlockK * p.dv; idx += kAttnThreads) {
      const int r = idx / p.dv, c = idx - r * p.dv;
      float v = 0.f;
      if (k0 + r < p.Tk) v = load_f(p.v, p.vt, (k0 + r) * v_stride + int64_t(hk) * p.dv + c);
      Vs[idx] = v;
    }
    __syncthreads();

    float s[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) s[r] = 0.f;
    const float4* krow = reinterpret_cast<const float4*>(Ks + lane * tl.dks);
    const float4* qbase = reinterpret_cast<const float4*>(Qs + warp * kRowsPerWarp * tl.dks);
    for (int d4 = 0; d4 < tl.dk4 / 4; ++d4) {
      const float4 kv = krow[d4];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float4 qv = qbase[r * (tl.dks / 4) + d4];
        s[r] = fmaf(qv.x, kv.x, fmaf(qv.y, kv.y, fmaf(qv.z, kv.z, fmaf(qv.w, kv.w, s[r]))));
      }
    }

    const bool valid = k0 + lane < p.Tk;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float sv = valid ? s[r] : -INFINITY;
      const float mnew = fmaxf(m[r], warp_max(sv));  // finite: every tile has a valid key
      const float pr = exp2f(sv - mnew);
      const float alpha = exp2f(m[r] - mnew);
      l[r] = l[r] * alpha + warp_sum(pr);
      m[r] = mnew;
#pragma unroll
      for (int i = 0; i < kCols; ++i) acc[r][i] *= alpha;
      s[r] = pr;
    }

    const int nk = int(p.Tk - k0 < kBlockK ? p.Tk - k0 : kBlockK);
    for (int j = 0; j < nk; ++j) {
      float pj[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) pj[r] = __shfl_sync(0xffffffffu, s[r], j);
#pragma unroll
      for (int i = 0; i < kCols; ++i) {
        const int c = lane + 32 * i;
        const float vv = c < p.dv ? Vs[j * p.dv + c] : 0.f;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[r][i] = fmaf(pj[r], vv, acc[r][i]);
      }
    }
  }

  const int64_t o_stride = int64_t(p.heads) * p.dv;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t row = q0 + warp * kRowsPerWarp + r;
    if (row >= p.Tq) continue;
    const float inv = 1.f / l[r];
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
      const int c = lane + 32 * i;
      if (c < p.dv) store_f(p.out, p.ot, row * o_stride + int64_t(h) * p.dv + c, acc[r][i] * inv);
    }
  }
}

template <int kCols>
cudaError_t launch_cols(const AttentionParams& p, cudaStream_t s) {
  const size_t smem = smem_bytes(p.dk, p.dv);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(attention_kernel<kCols>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(unsigned((p.Tq + kBlockQ - 1) / kBlockQ), unsigned(p.heads));
  const float qscale = p.scale * 1.4426950408889634f;
  attention_kernel<kCols><<<grid, kAttnThreads, smem, s>>>(p, qscale);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention(const AttentionParams& p, cudaStream_t s) {
  if (p.Tq <= 0 || p.heads <= 0) return cudaSuccess;
  if (p.Tk <= 0 || p.kv_heads <= 0 || p.heads % p.kv_heads != 0 || p.dk <= 0 || p.dv <= 0 ||
      p.dk > kAttentionMaxHeadDim || p.dv > kAttentionMaxHeadDim || p.heads > 65535 ||
      (p.Tq + kBlockQ - 1) / kBlockQ > 0x7fffffff)
    return cudaErrorInvalidValue;
#ifdef VMLA_HAVE_SM90_ATTENTION
  if (p.allow_tensor_cores && flash_attention_sm90_supported(p)) return launch_flash_attention_sm90(p, s);
#endif
  if (p.allow_tensor_cores && flash_attention_supported(p)) return launch_flash_attention(p, s);
  if (p.dv <= 32) return launch_cols<1>(p, s);
  if (p.dv <= 64) return launch_cols<2>(p, s);
  if (p.dv <= 128) return launch_cols<4>(p, s);
  if (p.dv <= 192) return launch_cols<6>(p, s);
  return launch_cols<8>(p, s);
}

}  // namespace vmla::kernels
