#pragma once
// Hopper tensor-core attention (wgmma, sm_90a) for bf16 Q/K/V/out with dk = dv = 128: the Wan
// self-attention (dense heads and the expanded MLA heads of 96 + 32) and cross-attention.
// launch_attention() prefers it over the mma.sync kernel (flash_attention.cuh) where it applies.
// Built only for sm_90a (kernels/CMakeLists.txt); on any other device it reports unavailable.
#include "kernels/attention.cuh"

namespace vmla::kernels {

// The current device is sm_90 and this binary holds the sm_90a kernel.
bool sm90_attention_available();
// p.allow_sm90, bf16 everywhere, dk = dv = 128, 16-byte aligned pointers, a positive finite scale,
// and sm90_attention_available().
bool flash_attention_sm90_supported(const AttentionParams& p);
cudaError_t launch_flash_attention_sm90(const AttentionParams& p, cudaStream_t s);

}  // namespace vmla::kernels
