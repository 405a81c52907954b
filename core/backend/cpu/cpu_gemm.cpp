// GEMM-based kernels: sgemm partitioning, linear, conv2d (im2col + sgemm).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/cpu/cpu_kernels.h"
#include "core/backend/cpu/cpu_math.h"

namespace vmla::cpu {

namespace {

// Below this many multiply-adds a GEMM runs on one thread: waking the pool costs more.
constexpr int64_t kParallelGemmMacs = int64_t(1) << 18;
// Smallest row or column block handed to one task, and tasks per thread: two, so that a thread
// held up by another process on a shared machine leaves a block to the others. Measured on the
// 2-core EPYC, [192,384]x[1024,384]^T: 1 block/thread 0.99 ms, 2: 0.99 ms, 4: 1.11 ms (idle).
constexpr int64_t kMinGemmBlock = 64;
constexpr int kGemmBlocksPerThread = 2;
// im2col scratch per task: small enough to stay in L2 next to the weights' panel.
constexpr int64_t kIm2colBytes = int64_t(512) << 10;
static_assert(kMinGemmBlock > 0 && kIm2colBytes >= 4096);

int blas_int(int64_t v, const char* what) {
  if (v > INT_MAX) throw Error(std::string("cpu gemm: ") + what + " = " + std::to_string(v) +
                               " exceeds the 32-bit BLAS interface");
  return int(v);
}

float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

void sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.0f)
        std::fill(c, c + N, 0.0f);
      else
        for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              blas_int(M, "M"), blas_int(N, "N"), blas_int(K, "K"), alpha, A, blas_int(lda, "lda"), B,
              blas_int(ldb, "ldb"), beta, C, blas_int(ldc, "ldc"));
}

namespace {

// Cuts [M, N] into a few row blocks per thread (when M >= N) or column blocks, and runs
// block(m0, m1, n0, n1) for each on the pool. Splitting the larger side re-reads the smaller operand.
template <class Block>
void split_gemm(ThreadPool& pool, int64_t M, int64_t N, int64_t K, Block&& block) {
  int64_t parts = pool.size() == 1 ? 1 : int64_t(kGemmBlocksPerThread) * pool.size();
  bool by_rows = M >= N;
  int64_t len = by_rows ? M : N;
  parts = std::min(parts, len / kMinGemmBlock);
  if (parts <= 1 || M * N * K < kParallelGemmMacs) {
    block(int64_t(0), M, int64_t(0), N);
    return;
  }
  pool.run(parts, [&](int64_t p, int) {
    // Block edges on multiples of 8 keep the kernels' vector tails at the end only.
    int64_t b0 = (len * p / parts) & ~int64_t(7);
    int64_t b1 = p + 1 == parts ? len : (len * (p + 1) / parts) & ~int64_t(7);
    if (b1 <= b0) return;
    if (by_rows)
      block(b0, b1, int64_t(0), N);
    else
      block(int64_t(0), M, b0, b1);
  });
}

}  // namespace

void sgemm(ThreadPool& pool, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  split_gemm(pool, M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const float* a = transA ? A + m0 : A + m0 * lda;
    const float* b = transB ? B + n0 * ldb : B + n0;
    sgemm_serial(transA, transB, m1 - m0, n1 - n0, K, alpha, a, lda, b, ldb, beta, C + m0 * ldc + n0, ldc);
  });
}

void linear(ThreadPool& pool, const float* x, const float* w, const float* b, float* y, int64_t M, int64_t N,
            int64_t K, Activation act) {
  split_gemm(pool, M, N, K, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    // [m1-m0, n1-n0] block of y = x[m0:m1] @ w[n0:n1]^T, then its epilogue while it is in cache.
    sgemm_serial(false, true, m1 - m0, n1 - n0, K, 1.0f, x + m0 * K, K, w + n0 * K, K, 0.0f, y + m0 * N + n0, N);
    if (b || act != Activation::None)
      for (int64_t i = m0; i < m1; ++i) bias_act_row(y + i * N + n0, b ? b + n0 : nullptr, n1 - n0, act);
  });
}

namespace {

// col [Cin*kh*kw, rows*Wo] for output rows [oy0, oy0+rows) of one image x [Cin, H, W].
void im2col(const ConvParams& p, const float* x, int64_t oy0, int64_t rows, float* col) {
  const int64_t ncols = rows * p.Wo;
  for (int64_t c = 0; c < p.Cin; ++c) {
    const float* xc = x + c * p.H * p.W;
    for (int64_t ky = 0; ky < p.kh; ++ky) {
      for (int64_t kx = 0; kx < p.kw; ++kx) {
        float* dst = col + ((c * p.kh + ky) * p.kw + kx) * ncols;
        for (int64_t r = 0; r < rows; ++r) {
          float* d = dst + r * p.Wo;
          int64_t iy = (oy0 + r) * p.stride + ky - p.pad;
          if (iy < 0 || iy >= p.H) {
            std::fill(d, d + p.Wo, 0.0f);
            continue;
          }
          const float* src = xc + iy * p.W;
          // Output columns whose input column kx - pad + ox*stride lies inside [0, W).
          int64_t ox_lo = 0, ox_hi = p.Wo;  // [ox_lo, ox_hi)
          int64_t first = kx - p.pad;
          if (first < 0) ox_lo = std::min<int64_t>(p.Wo, (-first + p.stride - 1) / p.stride);
          int64_t last_ok = p.W - 1 - first;  // ox*stride <= last_ok
          ox_hi = last_ok < 0 ? 0 : std::min<int64_t>(p.Wo, last_ok / p.stride + 1);
          if (ox_hi < ox_lo) ox_hi = ox_lo;
          std::fill(d, d + ox_lo, 0.0f);
          if (p.stride == 1) {
            std::memcpy(d + ox_lo, src + first + ox_lo, size_t(ox_hi - ox_lo) * sizeof(float));
          } else {
            for (int64_t ox = ox_lo; ox < ox_hi; ++ox) d[ox] = src[ox * p.stride + first];
          }
          std::fill(d + ox_hi, d + p.Wo, 0.0f);
        }
      }
    }
  }
}

}  // namespace

void conv2d(ThreadPool& pool, const ConvParams& p, const float* x, const float* w, const float* b, float* y) {
  const int64_t K = p.Cin * p.kh * p.kw;
  const int64_t in_img = p.Cin * p.H * p.W, out_img = p.Cout * p.Ho * p.Wo, plane = p.Ho * p.Wo;
  if (p.N == 0 || out_img == 0) return;
  const bool direct = p.kh == 1 && p.kw == 1 && p.stride == 1 && p.pad == 0;

  // Tasks are (image, strip of output rows); enough strips for every thread to get two tasks.
  int64_t rows = direct ? p.Ho : std::max<int64_t>(1, kIm2colBytes / int64_t(sizeof(float)) / std::max<int64_t>(1, K * p.Wo));
  int64_t want_strips = (2 * pool.size() + p.N - 1) / p.N;
  int64_t macs = p.N * out_img * K;
  if (macs < kParallelGemmMacs) want_strips = 1;
  rows = std::min(rows, (p.Ho + want_strips - 1) / want_strips);
  rows = std::max<int64_t>(rows, 1);
  const int64_t strips = (p.Ho + rows - 1) / rows;

  pool.run(p.N * strips, [&](int64_t task, int) {
    static thread_local std::vector<float> col_buf;
    const int64_t n = task / strips, oy0 = (task % strips) * rows, nr = std::min(rows, p.Ho - oy0);
    const float* xn = x + n * in_img;
    float* yn = y + n * out_img + oy0 * p.Wo;
    const int64_t ncols = nr * p.Wo;
    const float* B;
    if (direct) {
      B = xn + oy0 * p.Wo;  // x [Cin, H*W] is already the column matrix
    } else {
      float* col = scratch(col_buf, size_t(K * ncols));
      im2col(p, xn, oy0, nr, col);
      B = col;
    }
    // y [Cout, ncols] (row stride Ho*Wo) = w [Cout, K] @ B [K, ncols] (row stride ldb)
    sgemm_serial(false, false, p.Cout, ncols, K, 1.0f, w, K, B, direct ? plane : ncols, 0.0f, yn, plane);
    if (b || p.act != Activation::None)
      for (int64_t c = 0; c < p.Cout; ++c) scalar_bias_act_row(yn + c * plane, b ? b[c] : 0.0f, ncols, p.act);
  });
}

}  // namespace vmla::cpu
