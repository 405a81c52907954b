// Hopper attention: wgmma (sm_90a) tensor-core kernel for bf16 with dk = dv = 128 (Wan's dense
// heads, the expanded MLA heads of 96 + 32, cross-attention). See flash_attention_sm90.cuh.
//
// The structure of FlashAttention-3. A CTA holds 128 query rows and runs on its own SM (384 threads):
//  - warpgroup 0 produces: one thread issues TMA copies of the Q tile and of 128-key K and V tiles
//    into 3 + 3 shared-memory slots; mbarriers count the bytes in (full) and the consumers out
//    (empty), so loading runs ahead of the math by up to two tiles;
//  - warpgroups 1 and 2 consume, 64 query rows each. Per tile j a consumer issues S_j = Q K_j^T
//    (both operands from shared memory, K-major) and O += P_{j-1} V_{j-1} (P from registers, V
//    MN-major) back to back, waits for S_j only, and runs the softmax of S_j while P V is still on
//    the tensor cores; the two consumers take turns to issue (named barriers 1 and 2), so that one's
//    softmax overlaps the other's GEMMs.
// Tiles are stored in the 128-byte swizzled layout that both TMA writes and wgmma reads:
// [d / 64][row][64 elements], 16-byte chunk c of row r at chunk c ^ (r % 8), 1024-byte aligned.
// Measured against the mma.sync kernel and cuDNN in docs/BENCHMARKS.md.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "kernels/flash_attention_sm90.cuh"
#include "kernels/flash_common.cuh"

namespace vmla::kernels {

namespace {

using namespace flash;

// The TMA descriptors of a launch (kernel parameters: __grid_constant__).
struct TmaMaps {
  CUtensorMap q, k, v;
};

constexpr int kD = 128;              // head dim (dk = dv)
constexpr int kBM = 128;             // query rows per CTA (2 consumer warpgroups x 64)
constexpr int kBN = 128;             // keys per tile
constexpr int kThreads = 384;        // warpgroup 0 produces, warpgroups 1 and 2 consume
constexpr int kStages = 3;           // slots for K tiles, and as many for V tiles
constexpr int kTileBytes = kBN * kD * 2;             // 32 KiB, the same for Q, K and V
constexpr int kHalfBytes = kTileBytes / 2;           // one 64-column half: [128 rows][128 B]
constexpr int kBarrierBytes = 8 * (1 + 4 * kStages);  // full_q, full_k, full_v, empty_k, empty_v
// Q + 3 K + 3 V tiles, the mbarriers, and slack to align the tiles to 1024 bytes.
constexpr size_t kSmemBytes = size_t(kTileBytes) * (1 + 2 * kStages) + kBarrierBytes + 1024;
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

#undef VMLA_WGMMA_ACC64

// A consumer warpgroup's math: 64 query rows against K/V tiles in shared memory.
// Accumulator layout (per warp: 16 rows): s[4i + 2r + c] is row lane/4 + 8r, column 8i + 2(lane%4) + c.
struct WarpgroupAttention {
  float s[64], o[64];
  uint32_t pf[kBN / 16][4];  // P of the previous tile, bf16 A fragments per k16 slice of keys
  float m_run[2], l_run[2];
  float scale_log2;
  int lane;

  __device__ __forceinline__ void init(float scale_l2) {
#pragma unroll
    for (int i = 0; i < 64; ++i) s[i] = o[i] = 0.f;
    m_run[0] = m_run[1] = -INFINITY;
    l_run[0] = l_run[1] = 0.f;
    scale_log2 = scale_l2;
    lane = threadIdx.x & 31;
  }
  // S = Q K^T: A = this warpgroup's 64 Q rows (q: their tile base), B = 128 keys; both K-major
  // (LBO unused, 8-row groups 1024 B apart); k16 step ks starts 32 B further into the swizzled
  // row, in half ks / 4.
  __device__ __forceinline__ void issue_s(uint32_t q, uint32_t k) {
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks)
      wgmma_ss(s, smem_desc(q + (ks >> 2) * kHalfBytes + (ks & 3) * 32, 16, 1024),
               smem_desc(k + (ks >> 2) * kHalfBytes + (ks & 3) * 32, 16, 1024), ks > 0);
    wgmma_commit();
  }
  // O += P V: B = V, MN-major: 64-column halves kHalfBytes apart (LBO), 8-key groups 1024 B apart
  // (SBO); k16 step kk starts 16 keys (2048 B) further.
  __device__ __forceinline__ void issue_pv(uint32_t v) {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) wgmma_rs(o, pf[kk], smem_desc(v + kk * 2048, kHalfBytes, 1024));
    wgmma_commit();
  }
  // Masks keys past the end, turns S into P (base 2, running maximum); alpha: the factors by which
  // the rows' earlier output must shrink.
  __device__ __forceinline__ void softmax(int64_t k0, int64_t keys, float (&alpha)[2]) {
    if (k0 + kBN > keys) {  // zero-filled rows of the last tile take no weight
#pragma unroll
      for (int i = 0; i < 64; ++i)
        if (k0 + (i >> 2) * 8 + 2 * (lane & 3) + (i & 1) >= keys) s[i] = -INFINITY;
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {  // the 4 lanes of a quad share each row
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < 16; ++i) mx = fmaxf(mx, fmaxf(s[4 * i + 2 * r], s[4 * i + 2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[r], mx * scale_log2);
      alpha[r] = fast_exp2(m_run[r] - m_new);
      m_run[r] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float pv = fast_exp2(fmaf(s[4 * i + 2 * r + c], scale_log2, -m_new));
          s[4 * i + 2 * r + c] = pv;
          sum += pv;
        }
      }
      l_run[r] = l_run[r] * alpha[r] + sum;  // per-thread partial; the quad is summed at the end
    }
  }
  __device__ __forceinline__ void rescale(const float (&alpha)[2]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= alpha[(i >> 1) & 1];
  }
  // P as the A operand of the next P V product: k16 slice kk = accumulator n8 tiles 2kk, 2kk+1.
  __device__ __forceinline__ void pack_p() {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      pf[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
      pf[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
      pf[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
      pf[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
  }
  // O / l as bf16 into the head's output matrix (row stride o_row): the warpgroup's 64 rows start at
  // row0; rows at or past `rows` (the zero-filled tail of the last tile) are not written.
  __device__ __forceinline__ void store(bf16* og, int64_t row0, int64_t rows, int64_t o_row) {
    const int warp_in_wg = (threadIdx.x >> 5) & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_run[r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int64_t row = row0 + warp_in_wg * 16 + (lane >> 2) + 8 * r;
      if (row >= rows) continue;
      const float inv = 1.f / l;
      bf16* orow = og + row * o_row;
#pragma unroll
      for (int i = 0; i < 16; ++i)
        *reinterpret_cast<__nv_bfloat162*>(orow + 8 * i + 2 * (lane & 3)) =
            __floats2bfloat162_rn(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
    }
  }
};


__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int phase) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(bar),
      "r"(phase)
      : "memory");
}
// Two 64-column halves of a 128 x 128 tile: columns [col, col + 128), rows [row, row + 128);
// rows past the tensor's end arrive as zeros.
__device__ __forceinline__ void tma_tile(uint32_t dst, const CUtensorMap* map, int col, int row, uint32_t bar) {
#pragma unroll
  for (int half = 0; half < 2; ++half)
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst + half * kHalfBytes),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(col + half * 64), "r"(row), "r"(bar)
        : "memory");
}
#endif

__global__ void __launch_bounds__(kThreads, 1)
    flash_attention_sm90_kernel(const FlashParams p, const __grid_constant__ TmaMaps maps) {
#ifdef VMLA_SM90_WGMMA
  extern __shared__ unsigned char smem_raw[];
  const uint32_t smem0 = (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const uint32_t Qs = smem0;
  auto Ks = [&](int st) { return smem0 + uint32_t(kTileBytes) * (1 + st); };
  auto Vs = [&](int st) { return smem0 + uint32_t(kTileBytes) * (1 + kStages + st); };
  const uint32_t bars = smem0 + uint32_t(kTileBytes) * (1 + 2 * kStages);
  // full_q, full_k[3], full_v[3], empty_k[3], empty_v[3]
  const uint32_t full_q = bars;
  auto full_k = [&](int st) { return bars + 8 * (1 + st); };
  auto full_v = [&](int st) { return bars + 8 * (4 + st); };
  auto empty_k = [&](int st) { return bars + 8 * (7 + st); };
  auto empty_v = [&](int st) { return bars + 8 * (10 + st); };

  const int tid = threadIdx.x, wg = tid >> 7;
  const int h = blockIdx.y, hk = h / p.group;
  const int64_t m0 = int64_t(blockIdx.x) * kBM;
  const int n_tiles = int((p.keys + kBN - 1) / kBN);
  if (tid == 0) {
    mbar_init(full_q, 1);
    for (int st = 0; st < kStages; ++st) {
      mbar_init(full_k(st), 1);
      mbar_init(full_v(st), 1);
      mbar_init(empty_k(st), 2 * 128);
      mbar_init(empty_v(st), 2 * 128);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {  // producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (tid != 0) return;
    mbar_expect_tx(full_q, kTileBytes);
    tma_tile(Qs, &maps.q, int(h * p.q_head), int(m0), full_q);
    const int kcol = int(hk * p.k_head), vcol = int(hk * p.v_head);
    for (int t = 0; t < n_tiles; ++t) {
      const int st = t % kStages, use = t / kStages;
      if (use > 0) mbar_wait(empty_k(st), (use - 1) & 1);
      mbar_expect_tx(full_k(st), kTileBytes);
      tma_tile(Ks(st), &maps.k, kcol, t * kBN, full_k(st));
      if (use > 0) mbar_wait(empty_v(st), (use - 1) & 1);
      mbar_expect_tx(full_v(st), kTileBytes);
      tma_tile(Vs(st), &maps.v, vcol, t * kBN, full_v(st));
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
  const int cw = wg - 1;  // consumer 0 or 1
  // Turns: consumer c waits on named barrier 1 + c (its own 128 threads plus the other's 128).
  auto my_turn = [&] { asm volatile("bar.sync %0, 256;\n" ::"r"(1 + cw) : "memory"); };
  auto your_turn = [&] { asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - cw) : "memory"); };
  if (cw == 1) your_turn();  // consumer 0 goes first

  WarpgroupAttention a;
  a.init(p.scale_log2);
  const uint32_t q = Qs + cw * 64 * 128;
  float alpha[2];
  mbar_wait(full_q, 0);
  mbar_wait(full_k(0), 0);
  my_turn();
  wgmma_fence();
  a.issue_s(q, Ks(0));
  your_turn();
  wgmma_wait<0>();
  fence_regs(a.s);
  mbar_arrive(empty_k(0));
  a.softmax(0, p.keys, alpha);
  a.pack_p();
  for (int j = 1; j < n_tiles; ++j) {
    const int st = j % kStages, sp = (j - 1) % kStages;
    mbar_wait(full_k(st), (j / kStages) & 1);
    mbar_wait(full_v(sp), ((j - 1) / kStages) & 1);
    my_turn();
    wgmma_fence();
    a.issue_s(q, Ks(st));
    a.issue_pv(Vs(sp));
    your_turn();
    wgmma_wait<1>();  // S_j is ready; P_{j-1} V_{j-1} may still run
    fence_regs(a.s);
    mbar_arrive(empty_k(st));
    a.softmax(int64_t(j) * kBN, p.keys, alpha);
    wgmma_wait<0>();
    fence_regs(a.o);
    mbar_arrive(empty_v(sp));
    a.rescale(alpha);
    a.pack_p();
  }
  const int sl = (n_tiles - 1) % kStages;
  mbar_wait(full_v(sl), ((n_tiles - 1) / kStages) & 1);
  my_turn();
  wgmma_fence();
  a.issue_pv(Vs(sl));
  your_turn();
  wgmma_wait<0>();
  fence_regs(a.o);
  if (cw == 0) my_turn();  // takes the other's last arrival: no named barrier is left half-used
  a.store(p.o + int64_t(h) * p.o_head, m0 + cw * 64, p.rows, p.o_row);
#else
  __trap();
#endif
}

}  // namespace

namespace {

// cuTensorMapEncodeTiled from the driver, through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A row-major bf16 matrix [rows, width] (row stride in elements) read in 128-row x 64-column boxes
// into the 128-byte swizzled layout.
bool encode_map(CUtensorMap* map, const void* base, int64_t width, int64_t rows, int64_t row_stride) {
  const PFN_cuTensorMapEncodeTiled_v12000 enc = tensor_map_encoder();
  if (!enc) return false;
  const cuuint64_t dims[2] = {cuuint64_t(width), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(row_stride) * 2};
  const cuuint32_t box[2] = {64, 128}, elem[2] = {1, 1};
  return enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides, box, elem,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
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
  return p.allow_sm90 && p.dk == kD && p.dv == kD && bf16_rows_aligned(p) && sm90_attention_available() &&
         tensor_map_encoder() != nullptr && p.Tq * std::max(1, p.heads / p.kv_heads) <= 0x7fffffff &&
         p.Tk <= 0x7fffffff;
}

cudaError_t launch_flash_attention_sm90(const AttentionParams& p, cudaStream_t s) {
  if (p.Tq <= 0 || p.heads <= 0) return cudaSuccess;
  if (p.Tk <= 0 || !flash_attention_sm90_supported(p)) return cudaErrorInvalidValue;
  int grid_heads = 0;
  const FlashParams fp = make_flash_params(p, &grid_heads);
  const int64_t blocks = (fp.rows + kBM - 1) / kBM;
  if (blocks > 0x7fffffff || grid_heads > 65535 || fp.rows > 0x7fffffff || fp.keys > 0x7fffffff)
    return cudaErrorInvalidValue;
  const dim3 grid(unsigned(blocks), unsigned(grid_heads), 1u);
  TmaMaps maps;
  const int64_t qw = p.kv_heads == 1 ? p.dk : int64_t(p.heads) * p.dk;
  if (!encode_map(&maps.q, fp.q, qw, fp.rows, fp.q_row) ||
      !encode_map(&maps.k, fp.k, int64_t(p.kv_heads) * p.dk, fp.keys, fp.k_row) ||
      !encode_map(&maps.v, fp.v, int64_t(p.kv_heads) * p.dv, fp.keys, fp.v_row))
    return cudaErrorInvalidValue;
  const int smem = int(kSmemBytes);
  const cudaError_t err =
      cudaFuncSetAttribute(flash_attention_sm90_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  flash_attention_sm90_kernel<<<grid, kThreads, smem, s>>>(fp, maps);
  return cudaGetLastError();
}

}  // namespace vmla::kernels
