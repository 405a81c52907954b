// Hopper attention: wgmma (sm_90a) tensor-core kernel for bf16 with dk = dv = 128 (Wan's dense
// heads, the expanded MLA heads of 96 + 32, cross-attention). See flash_attention_sm90.cuh.
//
// CTA = two consumer warpgroups x 64 query rows (BlockM 128), K/V tiles of 128 keys, 3 stages of
// shared memory (Q 32 KiB + 3 x 64 KiB), one CTA per SM. Every tile is stored in the 128-byte
// swizzled layout wgmma reads directly: [d / 64][row][64 elements], 16-byte chunk c of row r at
// chunk c ^ (r % 8). Per K/V tile j a warpgroup issues S_j = Q K_j^T (shared x shared, both K-major)
// and O += P_{j-1} V_{j-1} (P from registers, V MN-major) back to back, waits for S_j only, runs the
// softmax of S_j while the P V product is still on the tensor cores, then waits for it and rescales O.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/flash_attention_sm90.cuh"
#include "kernels/flash_common.cuh"

namespace vmla::kernels {

namespace {

using namespace flash;

constexpr int kD = 128;             // head dim (dk = dv)
constexpr int kBM = 128;            // query rows per CTA (2 warpgroups x 64)
constexpr int kBN = 128;            // keys per tile
constexpr int kThreads = 256;
constexpr int kStages = 3;          // K/V tiles resident: V_{j-1} and K_j in use, j+1 loading
constexpr int kTileBytes = kBN * kD * 2;             // 32 KiB, the same for Q, K and V
constexpr int kHalfBytes = kTileBytes / 2;           // one 64-column half: [128 rows][128 B]
constexpr size_t kSmemBytes = size_t(kTileBytes) * (1 + 2 * kStages) + 1024;  // + alignment slack
static_assert(kBM == kBN, "Q, K and V tiles share one layout");
static_assert(kSmemBytes <= 227 * 1024, "shared memory of sm_90 (per CTA)");

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VMLA_SM90_WGMMA 1
#endif

#ifdef VMLA_SM90_WGMMA

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins accumulator registers in program order around the asynchronous wgmma (the compiler sees the
// issuing asm as their last writer and could otherwise move reads above the wait).
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// Generic-proxy writes (cp.async) to shared memory become visible to wgmma's async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte offsets.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32) | (1ull << 62);
}

// The 64 fp32 accumulator operands of an m64n128 wgmma (a thread's part of the 64 x 128 tile).
#define VMLA_WGMMA_ACC64(d) \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), \
      "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), \
      "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), \
      "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
      "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), \
      "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), \
      "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), \
      "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), \
      "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// d[0..63] (+)= A (smem, K-major) * B (smem, K-major); m64n128k16, bf16 in, fp32 accumulate.
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t a_desc, uint64_t b_desc, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : VMLA_WGMMA_ACC64(d)
      : "l"(a_desc), "l"(b_desc), "r"(accumulate));
}

// d[0..63] += A (registers, the accumulator layout packed to bf16) * B (smem, MN-major: trans-b).
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b_desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : VMLA_WGMMA_ACC64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(1));
}

// A [128 rows x 128] bf16 tile, rows [row0, row0 + 128) of a row-major matrix (row stride in
// elements), into the swizzled layout; rows past nrows are zero-filled (src-size 0).
__device__ __forceinline__ void load_tile_sw128(uint32_t s, const bf16* g, int64_t row0, int64_t nrows,
                                                int64_t row_stride, int tid) {
  constexpr int kChunks = kBN * (kD / 8);  // 16-byte chunks
#pragma unroll
  for (int it = 0; it < kChunks / kThreads; ++it) {
    const int i = tid + it * kThreads;
    const int r = i >> 4, c = i & 15;  // row, 16-byte chunk of the row
    const bool ok = row0 + r < nrows;
    const bf16* src = ok ? g + (row0 + r) * row_stride + c * 8 : g;
    const uint32_t dst = s + (c >> 3) * kHalfBytes + r * 128 + (((c & 7) ^ (r & 7)) << 4);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
  }
}

#undef VMLA_WGMMA_ACC64
#endif  // VMLA_SM90_WGMMA

__global__ void __launch_bounds__(kThreads, 1) flash_attention_sm90_kernel(const FlashParams p) {
#ifdef VMLA_SM90_WGMMA
  extern __shared__ unsigned char smem_raw[];
  // wgmma's swizzle works on address bits: every tile starts on a 1024-byte boundary.
  const uint32_t smem0 = (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const uint32_t Qs = smem0;
  auto Ks = [&](int st) { return smem0 + uint32_t(kTileBytes) * (1 + 2 * st); };
  auto Vs = [&](int st) { return smem0 + uint32_t(kTileBytes) * (2 + 2 * st); };

  const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31, warp_in_wg = (tid >> 5) & 3;
  const int h = blockIdx.y, hk = h / p.group;
  const int64_t m0 = int64_t(blockIdx.x) * kBM;
  const bf16* kg = p.k + int64_t(hk) * p.k_head;
  const bf16* vg = p.v + int64_t(hk) * p.v_head;
  const int n_tiles = int((p.keys + kBN - 1) / kBN);
  auto load_kv = [&](int t) {
    const int st = t % kStages;
    load_tile_sw128(Ks(st), kg, int64_t(t) * kBN, p.keys, p.k_row, tid);
    load_tile_sw128(Vs(st), vg, int64_t(t) * kBN, p.keys, p.v_row, tid);
  };
  load_tile_sw128(Qs, p.q + int64_t(h) * p.q_head, m0, p.rows, p.q_row, tid);
  load_kv(0);
  cp_async_commit();

  // S = Q K^T: A = this warpgroup's 64 Q rows, B = 128 keys; both K-major (LBO unused, 8-row
  // groups 1024 B apart); k16 step ks starts 32 B further into the swizzled row, in half ks / 4.
  // O += P V: B = V, MN-major: 64-column halves kHalfBytes apart (LBO), 8-key groups 1024 B
  // apart (SBO); k16 step kk starts 16 keys (2048 B) further.
  auto q_desc = [&](int ks) { return smem_desc(Qs + (ks >> 2) * kHalfBytes + wg * 64 * 128 + (ks & 3) * 32, 16, 1024); };
  auto k_desc = [&](int st, int ks) { return smem_desc(Ks(st) + (ks >> 2) * kHalfBytes + (ks & 3) * 32, 16, 1024); };
  auto v_desc = [&](int st, int kk) { return smem_desc(Vs(st) + kk * 2048, kHalfBytes, 1024); };

  float s[64], o[64];
  uint32_t pf[kBN / 16][4];  // P of the previous tile, bf16 A fragments per k16 slice of keys
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = o[i] = 0.f;
  // Accumulator layout (per warp: 16 rows): s[4i + 2r + c] is row lane/4 + 8r, column 8i + 2(lane%4) + c.
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};

  // Tile j: wait for its copy, start the copy of tile j + 1 (into the stage tile j - 2 held).
  auto next_tile = [&](int j) {
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();  // tile j landed for all; stage (j + 1) % 3 (tile j - 2) is no longer read
    if (j + 1 < n_tiles) load_kv(j + 1);
    cp_async_commit();
  };
  // Masks keys past the end, turns S into P (base 2, running maximum) and returns the factors by
  // which the rows' earlier output must shrink.
  auto softmax = [&](int j, float (&alpha)[2]) {
    const int64_t k0 = int64_t(j) * kBN;
    if (k0 + kBN > p.keys) {  // zero-filled rows of the last tile take no weight
#pragma unroll
      for (int i = 0; i < 64; ++i)
        if (k0 + (i >> 2) * 8 + 2 * (lane & 3) + (i & 1) >= p.keys) s[i] = -INFINITY;
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {  // the 4 lanes of a quad share each row
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < 16; ++i) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * r], s[4 * i + 2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[r], mx * p.scale_log2);
      alpha[r] = fast_exp2(m_run[r] - m_new);
      m_run[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float pv = fast_exp2(fmaf(s[4 * i + 2 * r + c], p.scale_log2, -m_new));
          s[4 * i + 2 * r + c] = pv;
          sum += pv;
        }
      }
      l_run[r] = l_run[r] * alpha[r] + sum;  // per-thread partial; the quad is summed at the end
    }
  };
  // P as the A operand of the next P V product: k16 slice kk = accumulator n8 tiles 2kk, 2kk+1.
  auto pack_p = [&]() {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      pf[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
      pf[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
      pf[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
      pf[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
  };
  auto issue_s = [&](int st) {
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) wgmma_ss(s, q_desc(ks), k_desc(st, ks), ks > 0);
    wgmma_commit();
  };
  auto issue_pv = [&](int st) {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) wgmma_rs(o, pf[kk], v_desc(st, kk));
    wgmma_commit();
  };

  float alpha[2];
  next_tile(0);
  wgmma_fence();
  issue_s(0);
  wgmma_wait<0>();
  fence_regs(s);
  softmax(0, alpha);
  pack_p();
  for (int j = 1; j < n_tiles; ++j) {
    next_tile(j);
    wgmma_fence();
    issue_s(j % kStages);
    issue_pv((j - 1) % kStages);
    wgmma_wait<1>();  // S_j is ready; P_{j-1} V_{j-1} may still run
    fence_regs(s);
    softmax(j, alpha);
    wgmma_wait<0>();
    fence_regs(o);
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
    pack_p();
  }
  // The last tile's P V.
  wgmma_fence();
  issue_pv((n_tiles - 1) % kStages);
  wgmma_wait<0>();
  fence_regs(o);
  cp_async_wait<0>();  // no copy may outlive the CTA (the trailing group is empty)

  bf16* og = p.o + int64_t(h) * p.o_head;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int64_t row = m0 + wg * 64 + warp_in_wg * 16 + (lane >> 2) + 8 * r;
    if (row >= p.rows) continue;
    const float inv = 1.f / l;
    bf16* orow = og + row * p.o_row;
#pragma unroll
    for (int i = 0; i < 16; ++i)
      *reinterpret_cast<__nv_bfloat162*>(orow + 8 * i + 2 * (lane & 3)) =
          __floats2bfloat162_rn(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
  }
#else
  __trap();  // built without sm_90a code; the host never launches it then (sm90_attention_available)
#endif
}

}  // namespace

bool sm90_attention_available() {
  // Per device, asked once: 0 unknown, 1 yes, 2 no.
  static std::atomic<int> known[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return false;
  if (dev >= 64) return false;
  if (const int k = known[dev].load(std::memory_order_relaxed)) return k == 1;
  int major = 0, minor = 0;
  cudaFuncAttributes attr{};
  const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
                  major == 9 && minor == 0 &&  // sm_90a code runs on sm_90 only
                  cudaFuncGetAttributes(&attr, flash_attention_sm90_kernel) == cudaSuccess && attr.binaryVersion == 90;
  known[dev].store(ok ? 1 : 2, std::memory_order_relaxed);
  return ok;
}

bool flash_attention_sm90_supported(const AttentionParams& p) {
  return p.allow_sm90 && p.dk == kD && p.dv == kD && bf16_rows_aligned(p) && sm90_attention_available();
}

cudaError_t launch_flash_attention_sm90(const AttentionParams& p, cudaStream_t s) {
  if (p.Tq <= 0 || p.heads <= 0) return cudaSuccess;
  if (p.Tk <= 0 || !flash_attention_sm90_supported(p)) return cudaErrorInvalidValue;
  int grid_heads = 0;
  const FlashParams fp = make_flash_params(p, &grid_heads);
  const cudaError_t attr_err = cudaFuncSetAttribute(flash_attention_sm90_kernel,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
  if (attr_err != cudaSuccess) return attr_err;
  const int64_t blocks = (fp.rows + kBM - 1) / kBM;
  if (blocks > 0x7fffffff || grid_heads > 65535) return cudaErrorInvalidValue;
  flash_attention_sm90_kernel<<<dim3(unsigned(blocks), unsigned(grid_heads), 1u), kThreads, kSmemBytes, s>>>(fp);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
