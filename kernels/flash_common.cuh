#pragma once
// Shared by the tensor-core attention kernels (flash_attention.cu: mma.sync for sm_80+,
// flash_attention_sm90.cu: wgmma for sm_90a): the element-stride parameters, cp.async helpers and
// the base-2 softmax pieces. Device code plus one inline host function.
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/attention.cuh"

namespace vmla::kernels::flash {

using bf16 = __nv_bfloat16;

// What the kernels read; element strides. With one shared K/V head (MQA, the absorbed MLA path)
// the query heads are folded into the rows (row r = token r / heads, head r % heads): one CTA then
// serves several heads from the same K/V tile.
struct FlashParams {
  const bf16* q = nullptr;
  const bf16* k = nullptr;
  const bf16* v = nullptr;
  bf16* o = nullptr;
  int64_t rows = 0;  // query rows per grid.y head
  int64_t keys = 0;
  int64_t q_row = 0, q_head = 0;
  int64_t k_row = 0, k_head = 0;
  int64_t v_row = 0, v_head = 0;
  int64_t o_row = 0, o_head = 0;
  int group = 1;  // query heads per K/V head
  int dk = 0, dv = 0;
  float scale_log2 = 0.f;  // scale * log2(e): the softmax runs in base 2
};

// Element strides for the kernels. With one K/V head the query heads fold into the rows:
// q [Tq*heads, dk], out [Tq*heads, dv], one grid.y.
inline FlashParams make_flash_params(const AttentionParams& p, int* grid_heads) {
  FlashParams fp;
  fp.q = static_cast<const bf16*>(p.q);
  fp.k = static_cast<const bf16*>(p.k);
  fp.v = static_cast<const bf16*>(p.v);
  fp.o = static_cast<bf16*>(p.out);
  fp.keys = p.Tk;
  fp.dk = p.dk;
  fp.dv = p.dv;
  fp.scale_log2 = p.scale * 1.4426950408889634f;
  fp.k_row = int64_t(p.kv_heads) * p.dk;
  fp.k_head = p.dk;
  fp.v_row = int64_t(p.kv_heads) * p.dv;
  fp.v_head = p.dv;
  if (p.kv_heads == 1) {
    fp.rows = p.Tq * p.heads;
    fp.q_row = p.dk;
    fp.o_row = p.dv;
    fp.group = 1;
    *grid_heads = 1;
  } else {
    fp.rows = p.Tq;
    fp.q_row = int64_t(p.heads) * p.dk;
    fp.q_head = p.dk;
    fp.o_row = int64_t(p.heads) * p.dv;
    fp.o_head = p.dv;
    fp.group = p.heads / p.kv_heads;
    *grid_heads = p.heads;
  }
  return fp;
}

// The checks both kernels share: bf16 everywhere, 16-byte rows and pointers, a positive finite scale.
inline bool bf16_rows_aligned(const AttentionParams& p) {
  auto aligned16 = [](const void* x) { return (reinterpret_cast<uintptr_t>(x) & 15u) == 0; };
  return p.qt == DType::BF16 && p.kt == DType::BF16 && p.vt == DType::BF16 && p.ot == DType::BF16 && p.dk > 0 &&
         p.dv > 0 && p.dk % 8 == 0 && p.dv % 8 == 0 && p.kv_heads > 0 && p.heads % p.kv_heads == 0 &&
         std::isfinite(p.scale) && p.scale > 0.f && aligned16(p.q) && aligned16(p.k) && aligned16(p.v) &&
         aligned16(p.out);
}

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {  // at most N most recent groups still in flight
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) is the lower column
  uint32_t r;
  memcpy(&r, &v, sizeof(r));
  return r;
}

__device__ __forceinline__ float fast_exp2(float x) {  // exp2(-inf) = 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace vmla::kernels::flash
