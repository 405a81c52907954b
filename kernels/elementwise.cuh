#pragma once
// Elementwise kernels: dtype conversion, fill, axpby, activations, modulation tables, GEMM epilogues,
// gated residuals. Every tensor pointer comes with its own dtype; arithmetic is fp32.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/tensor/dtype.h"

namespace vmla::kernels {

// dst[i] = src[i] converted (n elements).
struct ConvertParams {
  const void* src = nullptr;
  DType src_t = DType::F32;
  void* dst = nullptr;
  DType dst_t = DType::F32;
  int64_t n = 0;
};
cudaError_t launch_convert(const ConvertParams& p, cudaStream_t s);

// dst [rows, cols] (rows dst_ld elements apart) = src [rows, cols] (rows src_ld apart), converted:
// a column window of a wider matrix copied out, or into one.
struct ConvertRowsParams {
  const void* src = nullptr;
  DType src_t = DType::F32;
  int64_t src_ld = 0;
  void* dst = nullptr;
  DType dst_t = DType::F32;
  int64_t dst_ld = 0;
  int64_t rows = 0, cols = 0;
};
cudaError_t launch_convert_rows(const ConvertRowsParams& p, cudaStream_t s);

struct FillParams {
  void* dst = nullptr;
  DType t = DType::F32;
  int64_t n = 0;
  float value = 0.f;
};
cudaError_t launch_fill(const FillParams& p, cudaStream_t s);

// out = alpha * x + beta * y; y may be null (then beta is ignored). out may alias x or y.
struct AxpbyParams {
  const void* x = nullptr;
  DType xt = DType::F32;
  const void* y = nullptr;
  DType yt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t n = 0;
  float alpha = 1.f, beta = 0.f;
};
cudaError_t launch_axpby(const AxpbyParams& p, cudaStream_t s);

// op 0..3: vmla::Activation; op 4: out = c * tanh(x / c).
enum UnaryOp : int { kUnaryNone = 0, kUnaryGeluTanh = 1, kUnarySilu = 2, kUnaryRelu = 3, kUnaryTanhClamp = 4 };
struct UnaryParams {
  const void* x = nullptr;
  DType xt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t n = 0;
  int op = 0;
  float c = 1.f;
};
cudaError_t launch_unary(const UnaryParams& p, cudaStream_t s);

// out [F, KD]: out[f, j] = table[j] + src[f, src_cols == KD ? j : j % src_cols].
struct ModulationParams {
  const void* src = nullptr;
  DType st = DType::F32;
  const void* table = nullptr;
  DType tt = DType::F32;
  void* out = nullptr;
  DType ot = DType::F32;
  int64_t F = 0, KD = 0, src_cols = 0;
};
cudaError_t launch_add_modulation(const ModulationParams& p, cudaStream_t s);

// y[i] = act(src[i] + bias[(i / inner) % nb]) for i < n; bias may be null; src may equal y.
// Linear: inner = 1, nb = N. Conv: inner = Ho*Wo, nb = Cout.
struct BiasActParams {
  const void* src = nullptr;
  DType srct = DType::F32;
  const void* bias = nullptr;
  DType bt = DType::F32;
  void* y = nullptr;
  DType yt = DType::F32;
  int64_t n = 0, inner = 1, nb = 1;
  int act = 0;
};
cudaError_t launch_bias_act(const BiasActParams& p, cudaStream_t s);

// x [T, D] += gate * y, gate = mod[i / rows_per_frame, gate_idx*D + d] (gate_idx < 0: gate = 1).
struct GatedResidualParams {
  void* x = nullptr;
  DType xt = DType::F32;
  const void* y = nullptr;
  DType yt = DType::F32;
  const void* mod = nullptr;
  DType mt = DType::F32;
  int64_t T = 0, D = 0, mod_cols = 0, rows_per_frame = 1;
  int gate_idx = -1;
};
cudaError_t launch_gated_residual(const GatedResidualParams& p, cudaStream_t s);

}  // namespace vmla::kernels
