#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/flash_attention.cuh"
#include "kernels/flash_common.cuh"

namespace vmla::kernels {

namespace {

using namespace flash;

// Tile shapes. kDK/kDV are the padded head dims (multiples of 16, the mma's k and two n8 tiles).
// Each warp owns MTiles m16 row blocks (two share every K/V fragment it loads from shared memory,
// halving that traffic per mma); Stages K/V tiles are in flight; CtasPerSm is the occupancy the
// register budget is cut for. Shared-memory rows are 16 bytes longer than the data so that the 8
// row addresses of an ldmatrix fall into distinct bank groups for every width in the table.
template <int DK, int DV, int Warps, int MTiles, int BlockN, bool QInRegs, int Stages = 2, int CtasPerSm = 1>
struct FlashTile {
  static constexpr int kDK = DK, kDV = DV, kThreads = Warps * 32, kMTiles = MTiles, kStages = Stages;
  static constexpr int kBlockM = 16 * MTiles * Warps, kBlockN = BlockN, kCtasPerSm = CtasPerSm;
  static constexpr bool kQInRegs = QInRegs;
  static constexpr int kQStride = DK + 8, kKStride = DK + 8, kVStride = DV + 8;
  static constexpr int kQElems = kBlockM * kQStride, kKElems = kBlockN * kKStride, kVElems = kBlockN * kVStride;
  static constexpr size_t kSmemBytes = sizeof(bf16) * size_t(kQElems + Stages * (kKElems + kVElems));
  static_assert(DK % 16 == 0 && DV % 16 == 0, "head dims are padded to multiples of 16");
  static_assert(BlockN % 16 == 0, "P is fed to the P*V mma in k16 slices");
  static_assert((kQStride * 2) % 16 == 0 && (kVStride * 2) % 16 == 0, "ldmatrix rows are 16-byte aligned");
  static_assert(kSmemBytes * CtasPerSm <= 227 * 1024, "shared memory of sm_90 (per SM)");
  static_assert(Warps >= 1 && Warps <= 8 && (MTiles == 1 || MTiles == 2), "at most 256 threads, 32 rows a warp");
  static_assert(Stages >= 2 && Stages <= 4, "cp.async pipeline depth");
};

// The table. Measured on an H200 at the Wan self-attention shape (4680 x 15600 keys, 12 heads,
// 2026-11-26): d128 at 4 warps x 32 rows, 32-key tiles, 2 CTAs/SM 280 TFLOP/s, against 244 for
// 8 warps x 16 rows with Q in registers and 64-key tiles, 277 for 8 x 32 rows, 247 with 3 stages,
// 239 at 4 x 16 rows; the absorbed 224/192 tile 235 TFLOP/s at 8 x 16 rows, 64-key tiles (32-key
// tiles 207; 32 rows a warp spill). Small head dims keep Q in registers, 16 rows a warp.
using TileD16 = FlashTile<16, 16, 4, 1, 64, true>;                 // text encoder heads
using TileD64V48 = FlashTile<64, 48, 4, 1, 64, true>;              // tiny absorbed MLA (56/40)
using TileD64 = FlashTile<64, 64, 4, 1, 64, true>;                 // tiny dense / expanded
using TileD128 = FlashTile<128, 128, 4, 2, 32, false, 2, 2>;       // Wan dense, expanded MLA (96+32), cross
using TileD224V192 = FlashTile<224, 192, 8, 1, 64, false>;         // Wan absorbed MLA

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// d += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Rows [row0, row0 + Rows) x columns [0, D) of a row-major bf16 matrix into shared memory
// (row stride Stride), 16 bytes per cp.async. Rows past nrows and columns past d are zero-filled
// (src-size 0), which is both the padding of the head dim and the tail of the sequence.
template <int Rows, int D, int Stride, int Threads>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, int64_t row0, int64_t nrows, int64_t row_stride,
                                          int d, int tid) {
  constexpr int kChunks = D / 8, kTotal = Rows * kChunks, kIters = (kTotal + Threads - 1) / Threads;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int i = tid + it * Threads;
    if (kTotal % Threads == 0 || i < kTotal) {
      const int r = i / kChunks, c = (i % kChunks) * 8;
      const bool ok = row0 + r < nrows && c < d;
      const bf16* src = ok ? g + (row0 + r) * row_stride + c : g;
      cp_async_16(s + r * Stride + c, src, ok ? 16 : 0);
    }
  }
}

template <class Tl>
__global__ void __launch_bounds__(Tl::kThreads, Tl::kCtasPerSm) flash_attention_kernel(const FlashParams p) {
  constexpr int kDK = Tl::kDK, kDV = Tl::kDV, kBM = Tl::kBlockM, kBN = Tl::kBlockN, kT = Tl::kThreads;
  constexpr int kMT = Tl::kMTiles, kStages = Tl::kStages;
  constexpr int kKSteps = kDK / 16;  // k16 slices of the head dim (S = Q K^T)
  constexpr int kSTiles = kBN / 8;   // n8 tiles of S per m16 block
  constexpr int kOTiles = kDV / 8;   // n8 tiles of O per m16 block
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Ks = Qs + Tl::kQElems;            // kStages stages
  bf16* Vs = Ks + kStages * Tl::kKElems;  // kStages stages

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, hk = h / p.group;
  const int64_t m0 = int64_t(blockIdx.x) * kBM;
  const bf16* qg = p.q + int64_t(h) * p.q_head;
  const bf16* kg = p.k + int64_t(hk) * p.k_head;
  const bf16* vg = p.v + int64_t(hk) * p.v_head;
  const int n_tiles = int((p.keys + kBN - 1) / kBN);
  auto load_kv = [&](int t) {
    const int st = t % kStages;
    const int64_t k0 = int64_t(t) * kBN;
    load_tile<kBN, kDK, Tl::kKStride, kT>(Ks + st * Tl::kKElems, kg, k0, p.keys, p.k_row, p.dk, tid);
    load_tile<kBN, kDV, Tl::kVStride, kT>(Vs + st * Tl::kVElems, vg, k0, p.keys, p.v_row, p.dv, tid);
  };

  // Prologue: Q and K/V tiles 0 .. kStages-2, one commit group per tile (empty groups keep the
  // count uniform, so "tile j landed" is always wait_group<kStages - 2>).
  load_tile<kBM, kDK, Tl::kQStride, kT>(Qs, qg, m0, p.rows, p.q_row, p.dk, tid);
  load_kv(0);
  cp_async_commit();
#pragma unroll
  for (int t = 1; t < kStages - 1; ++t) {
    if (t < n_tiles) load_kv(t);
    cp_async_commit();
  }

  // ldmatrix lane addressing (fragment layouts of mma.m16n8k16):
  //  A (Q) x4: row lane&15, column (lane>>4)*8 -> a0..a3;
  //  B (K, not transposed) x4: key (lane&7) + (lane>>4)*8, dim ((lane>>3)&1)*8 -> b0,b1 of two n8 tiles;
  //  B (V, transposed) x4: key lane&15, dim (lane>>4)*8 -> b0,b1 of two n8 tiles.
  const bf16* q_lane = Qs + (warp * 16 * kMT + (lane & 15)) * Tl::kQStride + (lane >> 4) * 8;
  const int k_lane = ((lane & 7) + (lane >> 4) * 8) * Tl::kKStride + ((lane >> 3) & 1) * 8;
  const int v_lane = (lane & 15) * Tl::kVStride + (lane >> 4) * 8;

  uint32_t qf[Tl::kQInRegs ? kMT : 1][Tl::kQInRegs ? kKSteps : 1][4];
  float o[kMT][kOTiles][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int i = 0; i < kOTiles; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  // Per m16 block: rows lane/4 (r = 0) and lane/4 + 8 (r = 1).
  float m_run[kMT][2], l_run[kMT][2];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) m_run[mt][0] = m_run[mt][1] = -INFINITY, l_run[mt][0] = l_run[mt][1] = 0.f;

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile j landed for every thread; stage (j-1) % kStages is no longer read
    if (j + kStages - 1 < n_tiles) load_kv(j + kStages - 1);
    cp_async_commit();
    if constexpr (Tl::kQInRegs) {
      if (j == 0) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int ks = 0; ks < kKSteps; ++ks) ldmatrix_x4(qf[mt][ks], q_lane + mt * 16 * Tl::kQStride + ks * 16);
      }
    }
    const bf16* Kt = Ks + (j % kStages) * Tl::kKElems;
    const bf16* Vt = Vs + (j % kStages) * Tl::kVElems;

    // S = Q K^T for this warp's rows and kBN keys.
    float s[kMT][kSTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int i = 0; i < kSTiles; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if constexpr (Tl::kQInRegs) {
          a[mt][0] = qf[mt][ks][0];
          a[mt][1] = qf[mt][ks][1];
          a[mt][2] = qf[mt][ks][2];
          a[mt][3] = qf[mt][ks][3];
        } else {
          ldmatrix_x4(a[mt], q_lane + mt * 16 * Tl::kQStride + ks * 16);
        }
      }
#pragma unroll
      for (int np = 0; np < kSTiles / 2; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, Kt + k_lane + np * 16 * Tl::kKStride + ks * 16);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_bf16(s[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // Keys past the end (zero-filled rows of the last tile) take no weight.
    const int64_t k0 = int64_t(j) * kBN;
    if (k0 + kBN > p.keys) {
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (k0 + nt * 8 + 2 * (lane & 3) + (e & 1) >= p.keys) s[mt][nt][e] = -INFINITY;
    }

    // Online softmax; a thread holds columns of rows lane/4 (e = 0, 1) and lane/4 + 8 (e = 2, 3)
    // of each m16 block, and the 4 lanes of a quad share those rows. Every tile has at least one
    // valid key, so the running maximum is finite after the first tile (alpha = exp2(-inf) = 0).
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[mt][r], mx * p.scale_log2);
        const float alpha = fast_exp2(m_run[mt][r] - m_new);
        m_run[mt][r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < kSTiles; ++nt) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const float pv = fast_exp2(fmaf(s[mt][nt][2 * r + c], p.scale_log2, -m_new));
            s[mt][nt][2 * r + c] = pv;
            sum += pv;
          }
        }
        l_run[mt][r] = l_run[mt][r] * alpha + sum;  // per-thread partial; the quad is summed at the end
#pragma unroll
        for (int dt = 0; dt < kOTiles; ++dt) {
          o[mt][dt][2 * r] *= alpha;
          o[mt][dt][2 * r + 1] *= alpha;
        }
      }
    }

    // O += P V: the S accumulators of n8 tiles 2kk, 2kk+1 are exactly the A fragment of k16 slice kk.
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kDV / 16; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, Vt + v_lane + kk * 16 * Tl::kVStride + dp * 16);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();  // no copy may outlive the CTA (the trailing groups are empty)

  bf16* og = p.o + int64_t(h) * p.o_head;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_run[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int64_t row = m0 + warp * 16 * kMT + mt * 16 + (lane >> 2) + 8 * r;
      if (row >= p.rows) continue;
      const float inv = 1.f / l;
      bf16* orow = og + row * p.o_row;
#pragma unroll
      for (int dt = 0; dt < kOTiles; ++dt) {
        const int col = dt * 8 + 2 * (lane & 3);
        if (col < p.dv)
          *reinterpret_cast<__nv_bfloat162*>(orow + col) =
              __floats2bfloat162_rn(o[mt][dt][2 * r] * inv, o[mt][dt][2 * r + 1] * inv);
      }
    }
  }
}

template <class Tl>
cudaError_t launch_tile(const FlashParams& fp, int grid_heads, cudaStream_t s) {
  auto* kern = flash_attention_kernel<Tl>;
  if (Tl::kSmemBytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tl::kSmemBytes));
    if (e != cudaSuccess) return e;
  }
  const int64_t blocks = (fp.rows + Tl::kBlockM - 1) / Tl::kBlockM;
  if (blocks > 0x7fffffff || grid_heads > 65535) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(blocks), unsigned(grid_heads), 1u};
  kern<<<grid, Tl::kThreads, Tl::kSmemBytes, s>>>(fp);
  return cudaGetLastError();
}

enum class TileId { None, D16, D64V48, D64, D128, D224V192 };

template <class Tl>
constexpr bool fits(int dk, int dv) {
  return dk <= Tl::kDK && dv <= Tl::kDV;
}

// The smallest tile that holds (dk, dv); the table is ordered by cost.
TileId pick_tile(int dk, int dv) {
  if (fits<TileD16>(dk, dv)) return TileId::D16;
  if (fits<TileD64V48>(dk, dv)) return TileId::D64V48;
  if (fits<TileD64>(dk, dv)) return TileId::D64;
  if (fits<TileD128>(dk, dv)) return TileId::D128;
  if (fits<TileD224V192>(dk, dv)) return TileId::D224V192;
  return TileId::None;
}

}  // namespace

bool flash_attention_supported(const AttentionParams& p) {
  return bf16_rows_aligned(p) && pick_tile(p.dk, p.dv) != TileId::None;
}

cudaError_t launch_flash_attention(const AttentionParams& p, cudaStream_t s) {
  if (p.Tq <= 0 || p.heads <= 0) return cudaSuccess;
  if (p.Tk <= 0 || !flash_attention_supported(p)) return cudaErrorInvalidValue;
  int grid_heads = 0;
  const FlashParams fp = make_flash_params(p, &grid_heads);
  switch (pick_tile(p.dk, p.dv)) {
    case TileId::D16: return launch_tile<TileD16>(fp, grid_heads, s);
    case TileId::D64V48: return launch_tile<TileD64V48>(fp, grid_heads, s);
    case TileId::D64: return launch_tile<TileD64>(fp, grid_heads, s);
    case TileId::D128: return launch_tile<TileD128>(fp, grid_heads, s);
    case TileId::D224V192: return launch_tile<TileD224V192>(fp, grid_heads, s);
    case TileId::None: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace vmla::kernels
