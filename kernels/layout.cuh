#pragma once
// Video layout kernels: patchify / unpatchify, head and channel concatenation, nearest 2x upsample,
// RGB8 conversion and token-embedding lookup.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

// x [F, C, H, W] <-> tokens [F*(H/ph)*(W/pw), C*ph*pw].
// patchify (inverse = false): token column c*ph*pw + p*pw + q.
// unpatchify (inverse = true): token column (p*pw + q)*C + c (Wan head layout).
struct PatchifyParams {
  void* x = nullptr;
  DType xt = DType::F32;
  void* tokens = nullptr;
  DType tt = DType::F32;
  int64_t F = 0, C = 0, H = 0, W = 0;
  int ph = 1, pw = 1;
  bool inverse = false;
};
cudaError_t launch_patchify(const PatchifyParams& p, cudaStream_t s);

// out [T, H*(da+db)], head h = [a_h (da) ; b_{h or 0} (db)].
struct ConcatHeadsParams {
  const void* a = nullptr;
  DType at = DType::F32;
  const void* b = nullptr;
  DType bt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t T = 0;
  int heads = 0, da = 0, db = 0, b_heads = 1;
};
cudaError_t launch_concat_heads(const ConcatHeadsParams& p, cudaStream_t s);

// out [N, Ca+Cb, HW] from a [N, Ca, HW] and b [N, Cb, HW].
struct ConcatChannelsParams {
  const void* a = nullptr;
  DType at = DType::F32;
  const void* b = nullptr;
  DType bt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t N = 0, Ca = 0, Cb = 0, HW = 0;
};
cudaError_t launch_concat_channels(const ConcatChannelsParams& p, cudaStream_t s);

// y [NC, 2H, 2W] nearest-neighbour from x [NC, H, W].
struct Upsample2xParams {
  const void* x = nullptr;
  DType xt = DType::F32;
  void* y = nullptr;
  DType yt = DType::F32;
  int64_t NC = 0, H = 0, W = 0;
};
cudaError_t launch_upsample2x(const Upsample2xParams& p, cudaStream_t s);

// x [F, 3, H, W] in [0, 1] -> rgb [F, H, W, 3] U8, round_half_even(clamp(x * 255, 0, 255)).
struct ToRgb8Params {
  const void* x = nullptr;
  DType xt = DType::F32;
  uint8_t* rgb = nullptr;
  int64_t F = 0, HW = 0;
};
cudaError_t launch_to_rgb8(const ToRgb8Params& p, cudaStream_t s);

// out [n, D] = table[ids[i]]. The ids travel inside the kernel parameters (no host staging, no
// synchronisation): at most kEmbeddingIdsPerLaunch per launch, the launcher splits longer lists.
constexpr int kEmbeddingIdsPerLaunch = 256;
struct EmbeddingParams {
  const void* table = nullptr;
  DType tt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t D = 0;
  int n = 0;
  int32_t ids[kEmbeddingIdsPerLaunch] = {};
};
// ids already validated against the table size by the caller.
cudaError_t launch_embedding(const void* table, DType tt, void* out, DType ot, int64_t D, const int32_t* ids,
                             int64_t n, cudaStream_t s);

}  // namespace vmla::kernels
