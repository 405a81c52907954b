#pragma once
// Raw fp32 kernels of the CPU backend. Callers (cpu_backend.cpp) have checked shapes and converted
// every operand to F32; pointers here are dense row-major unless a leading dimension says otherwise.
#include <cstdint>
#include <string>

#include "core/backend/cpu/thread_pool.h"
#include "core/tensor/backend.h"

namespace vmla::cpu {

// The OpenBLAS kernel set the GEMMs run on ("SkylakeX", "Haswell", ...; blas_core.cpp), the one
// this CPU's features call for (nullptr: none, the library's own choice), whether the library runs
// a set below those features, and the switch to it, once per process, before the first GEMM (the
// CPU backend's constructor).
std::string blas_core();
const char* blas_core_for_this_cpu();
bool blas_core_below_cpu();
void choose_blas_core();

// C [M, N] = alpha * op(A) @ op(B) + beta * C on the calling thread (one OpenBLAS call).
void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The same, cut into row or column blocks run on the pool.
void sgemm(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// y [M, N] = act(x [M, K] @ w [N, K]^T + b [N]); b may be null.
void linear(ThreadPool& pool, const float* x, const float* w, const float* b, float* y, int64_t M, int64_t N,
            int64_t K, Activation act);

struct ConvParams {
  int64_t N, Cin, H, W;     // input [N, Cin, H, W]
  int64_t Cout, kh, kw;     // weight [Cout, Cin, kh, kw]
  int64_t Ho, Wo;           // output [N, Cout, Ho, Wo]
  int64_t stride, pad;
  Activation act;
};
void conv2d(ThreadPool& pool, const ConvParams& p, const float* x, const float* w, const float* b, float* y);

// out [Tq, H*dv] = softmax(scale * q k^T) v per head; k, v have Hk = H or 1 heads.
struct AttentionParams {
  int64_t Tq, Tk;
  int heads, kv_heads, dk, dv;
  float scale;
};
void attention(ThreadPool& pool, const AttentionParams& p, const float* q, const float* k, const float* v,
               float* out);

// In-place rotary embedding of x [T, row_stride]: for every head h and pair j, the columns
// (h*head_stride + offset + 2j, +1) rotate by pos[t*3 + axes[j]] * freqs[j].
struct RopeParams {
  int64_t T, row_stride;
  int heads, head_stride, offset, npairs;
};
void rope(ThreadPool& pool, const RopeParams& p, float* x, const float* freqs, const int32_t* axes,
          const int32_t* pos);

}  // namespace vmla::cpu
