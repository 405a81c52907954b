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

}  // namespace vmla::kernels
