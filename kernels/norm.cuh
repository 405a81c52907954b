#pragma once
// Row normalisation: LayerNorm (optionally affine), RMSNorm, and LayerNorm with per-frame
// modulation (y = LN(x) * (1 + scale) + shift). Statistics in fp32, two passes over the row.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

struct NormParams {
  const void* x = nullptr;
  DType xt = DType::F32;
  void* y = nullptr;
  DType yt = DType::F32;
  int64_t rows = 0, D = 0;
  int64_t ldx = 0;  // row stride of x in elements (0: D); y is always dense [rows, D]
  float eps = 1e-6f;
  bool rms = false;  // true: y = x / rms(x) * w; false: LayerNorm
  // Affine weights (either may be null).
  const void* w = nullptr;
  DType wt = DType::F32;
  const void* b = nullptr;
  DType bt = DType::F32;
  // Modulation (LayerNorm only; replaces the affine part when mod != null).
  const void* mod = nullptr;
  DType mt = DType::F32;
  int64_t mod_cols = 0, rows_per_frame = 1;
  int shift_idx = 0, scale_idx = 1;
};
cudaError_t launch_norm(const NormParams& p, cudaStream_t s);

// RMSNorm, then rotary embedding, in one pass over each row (the query of the MHA path): row r of y
// [rows, D] is x's row normalised over D and scaled by w, then in every head of head_dim columns the
// pair p < npairs (columns 2p, 2p+1) is rotated by pos[r][axes[p]] * freqs[p] (as launch_rope with
// offset 0). fp32 arithmetic, one rounding to y's dtype.
constexpr int kNormRopeMaxPairs = 256;  // npairs above this: the backend runs rms_norm, then rope
struct NormRopeParams {
  const void* x = nullptr;
  DType xt = DType::F32;
  int64_t ldx = 0;  // row stride of x in elements (0: D)
  void* y = nullptr;
  DType yt = DType::F32;
  int64_t rows = 0, D = 0;
  float eps = 1e-6f;
  const void* w = nullptr;  // [D] or null
  DType wt = DType::F32;
  int head_dim = 0, npairs = 0;  // D a multiple of head_dim, 2 * npairs <= head_dim
  const void* freqs = nullptr;   // [npairs]
  DType ft = DType::F32;
  const int32_t* axes = nullptr;  // [npairs]
  const int32_t* pos = nullptr;   // [rows, 3]
};
cudaError_t launch_norm_rope(const NormRopeParams& p, cudaStream_t s);

}  // namespace vmla::kernels
