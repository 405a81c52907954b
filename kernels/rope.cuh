#pragma once
// Rotary embedding on [T, heads*head_stride]: pair p of every head (columns off+2p, off+2p+1) is
// rotated by pos[t][axes[p]] * freqs[p] (adjacent pairs, Wan convention). In place, or from `src`
// (same layout and dtype, rows src_ld elements apart) into x, which then needs offset 0 and
// 2 * npairs = head_stride (every column rotated; the backend copies first otherwise).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

struct RopeParams {
  void* x = nullptr;
  const void* src = nullptr;  // nullptr: in place
  int64_t src_ld = 0;         // row stride of src in elements (0: heads * head_stride, dense)
  DType xt = DType::F32;
  int64_t T = 0;
  int heads = 0, head_stride = 0, offset = 0, npairs = 0;
  const void* freqs = nullptr;  // [npairs]
  DType ft = DType::F32;
  const int32_t* axes = nullptr;  // [npairs]
  const int32_t* pos = nullptr;   // [T, 3]
};
cudaError_t launch_rope(const RopeParams& p, cudaStream_t s);

}  // namespace vmla::kernels
