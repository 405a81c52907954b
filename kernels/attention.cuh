#pragma once
// Dense (non-causal) attention. kv_heads divides heads (MHA: equal; the absorbed MLA path: 1).
// dk, dv <= 256. launch_attention() runs the Hopper wgmma kernel (flash_attention_sm90.cuh) for
// bf16 d128 heads on sm_90, else the mma.sync tensor-core kernel (flash_attention.cuh) for bf16
// inputs whose head dims it supports, else the simple fp32 kernel of attention.cu (one block per
// (32-query tile, head), K/V streamed in 32-key tiles, online softmax, any dtype).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

constexpr int kAttentionMaxHeadDim = 256;

struct AttentionParams {
  const void* q = nullptr;  // [Tq, heads*dk]
  const void* k = nullptr;  // [Tk, kv_heads*dk]
  const void* v = nullptr;  // [Tk, kv_heads*dv]
  void* out = nullptr;      // [Tq, heads*dv]
  DType qt = DType::F32, kt = DType::F32, vt = DType::F32, ot = DType::F32;
  int64_t Tq = 0, Tk = 0;
  int heads = 0, kv_heads = 0, dk = 0, dv = 0;
  float scale = 1.f;
  bool allow_tensor_cores = true;  // false: always the simple kernel (A/B timing, debugging)
  bool allow_sm90 = true;          // false: the mma.sync kernel even where the wgmma one applies
};
cudaError_t launch_attention(const AttentionParams& p, cudaStream_t s);

}  // namespace vmla::kernels
