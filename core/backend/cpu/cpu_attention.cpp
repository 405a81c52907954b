// Attention (query-tiled, two GEMMs per tile, exact softmax per row) and rotary embedding.
// expv<f16v> (cpu_math.h) returns a 64-byte vector, which GCC warns would be passed differently with
// and without AVX-512 (-Wpsabi); it is always inlined into the clones below, so no call crosses
// that boundary.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/backend/cpu/cpu_kernels.h"
#include "core/backend/cpu/cpu_math.h"

namespace vmla::cpu {

namespace {

// Score tile [rows, Tk] per task: sized to stay in L2 for short contexts (tiny: 640 keys), never
// below kMinTileRows rows, because every tile re-packs all of K and V inside sgemm and long contexts
// (Wan: 32760 keys, 8 MiB per tile) would spend their time packing, nor above kMaxTileRows.
// Nothing of size Tq x Tk is ever allocated.
constexpr int64_t kTileBytes = int64_t(1) << 20;
constexpr int64_t kMinTileRows = 64;
constexpr int64_t kMaxTileRows = 256;
static_assert(kMinTileRows <= kMaxTileRows);

// The softmax's row max and exp-and-sum, the attention's share that is not GEMM (a fifth of a
// pass with 256 tokens a frame), on 16-lane vectors: the library is built for baseline x86-64, so
// target_clones compiles them again for AVX2 and AVX-512 and the loader picks the widest the CPU has
// (one zmm register, two ymm or four xmm per vector). Same polynomial, same results up to the
// rounding of fused multiply-adds.
using f16v = float __attribute__((vector_size(64)));
using i16v = int32_t __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VMLA_WIDE_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define VMLA_WIDE_CLONES
#endif

VMLA_WIDE_CLONES float row_max(const float* s, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  f16v m = f16v{} + ninf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    f16v x;
    std::memcpy(&x, s + i, sizeof x);
    m = x > m ? x : m;
  }
  float r = ninf;
  for (int64_t j = 0; j < kLanes; ++j) r = m[j] > r ? m[j] : r;
  for (; i < n; ++i) r = s[i] > r ? s[i] : r;
  return r;
}

// s[i] = exp(s[i] - m); returns the sum.
VMLA_WIDE_CLONES float exp_sub_sum(float* s, int64_t n, float m) {
  f16v acc{};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    f16v e;
    std::memcpy(&e, s + i, sizeof e);
    e = expv<f16v, i16v>(e - m);
    std::memcpy(s + i, &e, sizeof e);
    acc += e;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < kLanes; ++j) sum += acc[j];
  for (; i < n; ++i) sum += (s[i] = fast_exp(s[i] - m));
  return sum;
}

// One attention problem: rows of Q against one K, V.
struct Group {
  const float* q;
  const float* k;
  const float* v;
  float* o;
  int64_t ldq, ldk, ldv, ldo;
};

}  // namespace

void attention(ThreadPool& pool, const AttentionParams& p, const float* q, const float* k, const float* v,
               float* out) {
  const int64_t H = p.heads, dk = p.dk, dv = p.dv, Tk = p.Tk;
  // With one shared K/V head the query heads are independent rows: q [Tq, H*dk] is [Tq*H, dk] and
  // out [Tq, H*dv] is [Tq*H, dv], one problem with H times the rows.
  const bool shared = p.kv_heads == 1 && H > 1;
  const int64_t ngroups = shared ? 1 : H;
  const int64_t nrows = shared ? p.Tq * H : p.Tq;
  if (nrows == 0 || dv == 0) return;
  auto group = [&](int64_t g) {
    if (shared) return Group{q, k, v, out, dk, dk, dv, dv};
    const int64_t kh = p.kv_heads == 1 ? 0 : g;
    return Group{q + g * dk, k + kh * dk, v + kh * dv, out + g * dv, H * dk, p.kv_heads * dk, p.kv_heads * dv, H * dv};
  };

  int64_t tile = std::clamp<int64_t>(kTileBytes / int64_t(sizeof(float)) / std::max<int64_t>(Tk, 1), kMinTileRows,
                                     kMaxTileRows);
  // At least two tasks per thread when the rows allow it, for balance.
  const int64_t want_tasks = 2 * pool.size();
  if (ngroups * ((nrows + tile - 1) / tile) < want_tasks) {
    int64_t per_group = (want_tasks + ngroups - 1) / ngroups;
    tile = std::max<int64_t>(kMinTileRows, (nrows + per_group - 1) / per_group);
  }
  tile = std::min(tile, nrows);
  const int64_t tiles = (nrows + tile - 1) / tile;

  pool.run(ngroups * tiles, [&](int64_t task, int) {
    static thread_local std::vector<float> s_buf;
    static thread_local std::vector<float> inv_buf;
    const Group g = group(task / tiles);
    const int64_t r0 = (task % tiles) * tile, nr = std::min(tile, nrows - r0);
    if (s_buf.size() < size_t(nr * Tk)) s_buf.resize(size_t(nr * Tk));
    if (inv_buf.size() < size_t(nr)) inv_buf.resize(size_t(nr));
    float* s = s_buf.data();
    float* inv = inv_buf.data();
    // s [nr, Tk] = scale * q[r0:r0+nr] @ k^T
    sgemm_serial(false, true, nr, Tk, dk, p.scale, g.q + r0 * g.ldq, g.ldq, g.k, g.ldk, 0.0f, s, Tk);
    for (int64_t r = 0; r < nr; ++r) {
      float* row = s + r * Tk;
      inv[r] = 1.0f / exp_sub_sum(row, Tk, row_max(row, Tk));
    }
    // o [nr, dv] = p @ v, then the softmax denominators (dv columns instead of Tk).
    float* o = g.o + r0 * g.ldo;
    sgemm_serial(false, false, nr, dv, Tk, 1.0f, s, Tk, g.v, g.ldv, 0.0f, o, g.ldo);
    for (int64_t r = 0; r < nr; ++r) {
      float* orow = o + r * g.ldo;
      const float c = inv[r];
      for (int64_t j = 0; j < dv; ++j) orow[j] *= c;
    }
  });
}

void rope(ThreadPool& pool, const RopeParams& p, float* x, const float* freqs, const int32_t* axes,
          const int32_t* pos) {
  if (p.T == 0 || p.npairs == 0) return;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, int64_t(p.heads) * p.npairs));
  pool.parallel_for(p.T, grain, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(size_t(p.npairs)), sn(size_t(p.npairs));
    for (int64_t t = t0; t < t1; ++t) {
      const int32_t* pt = pos + t * 3;
      for (int j = 0; j < p.npairs; ++j) {
        // The angle in double: positions times frequencies reach a few hundred radians on big grids.
        const double ang = double(pt[axes[j]]) * double(freqs[j]);
        cs[size_t(j)] = float(std::cos(ang));
        sn[size_t(j)] = float(std::sin(ang));
      }
      float* row = x + t * p.row_stride;
      for (int h = 0; h < p.heads; ++h) {
        float* e = row + int64_t(h) * p.head_stride + p.offset;
        for (int j = 0; j < p.npairs; ++j) {
          const float a = e[2 * j], b = e[2 * j + 1];
          e[2 * j] = a * cs[size_t(j)] - b * sn[size_t(j)];
          e[2 * j + 1] = a * sn[size_t(j)] + b * cs[size_t(j)];
        }
      }
    }
  });
}

}  // namespace vmla::cpu
