#pragma once
// im2col for conv2d through a GEMM: col [N][Cin*kh*kw][Ho*Wo], row index (ci*kh + ky)*kw + kx (the
// PyTorch weight [Cout, Cin, kh, kw] flattened), zero padding.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

struct Im2colParams {
  const void* x = nullptr;  // [N, Cin, H, W]
  DType xt = DType::F32;
  void* col = nullptr;
  DType ct = DType::BF16;
  int64_t N = 0, Cin = 0, H = 0, W = 0, Ho = 0, Wo = 0;
  int kh = 3, kw = 3, stride = 1, pad = 1;
};
cudaError_t launch_im2col(const Im2colParams& p, cudaStream_t s);

}  // namespace vmla::kernels
