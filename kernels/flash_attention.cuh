#pragma once
// Tensor-core attention for bf16 Q/K/V/out: mma.sync m16n8k16 (sm_80+, runs on sm_90) with fp32
// accumulation, online softmax in base 2, K/V tiles staged in shared memory by cp.async, two stages.
// One CTA per (query tile, head); each warp owns 16 query rows. Head dims are padded inside the
// kernel to the tile's (zero-filled loads), so any dk, dv that fit a tile of the table in
// flash_attention.cu work. launch_attention() picks this kernel when flash_attention_supported() and
// the Hopper kernel (flash_attention_sm90.cuh: d128 on sm_90) does not apply.
#include "kernels/attention.cuh"

namespace vmla::kernels {

// bf16 everywhere, dk and dv multiples of 8 (16-byte rows), 16-byte aligned pointers, a positive
// finite scale, and a tile of the table that holds (dk, dv).
bool flash_attention_supported(const AttentionParams& p);
cudaError_t launch_flash_attention(const AttentionParams& p, cudaStream_t s);

}  // namespace vmla::kernels
