// Every CPU backend op against a naive double-precision reference (tests/unit/naive_ops.h), by
// normalised error ||out - ref|| / ||ref||, on seeded random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/backend/cpu/cpu_kernels.h"
#include "core/tensor/backend.h"
#include "tests/unit/naive_ops.h"

namespace vmla {
namespace {

using naive::Vec;

// fp32 results against double references; the ops accumulate in fp32 over at most a few thousand
// terms, which stays two orders of magnitude below this.
constexpr double kTol = 1e-5;

std::vector<float> rnd(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

Vec dbl(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

double nerr(const std::vector<float>& out, const Vec& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size() && i < out.size(); ++i) {
    num += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

naive::Act nact(Activation a) {
  switch (a) {
    case Activation::None: return naive::Act::None;
    case Activation::GeluTanh: return naive::Act::GeluTanh;
    case Activation::Silu: return naive::Act::Silu;
    case Activation::Relu: return naive::Act::Relu;
  }
  return naive::Act::None;
}

class CpuOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = create_cpu_backend();

  OwnedTensor make(Shape s, const std::vector<float>& host) {
    EXPECT_EQ(size_t(s.numel()), host.size());
    OwnedTensor t = be->alloc(s, DType::F32);
    be->upload(host.data(), DType::F32, t.t);
    return t;
  }
  OwnedTensor make_i32(Shape s, const std::vector<int32_t>& host) {
    OwnedTensor t = be->alloc(s, DType::I32);
    be->upload(host.data(), DType::I32, t.t);
    return t;
  }
  OwnedTensor zeros(Shape s) {
    OwnedTensor t = be->alloc(s, DType::F32);
    be->fill(t.t, 0.f);
    return t;
  }
  // Filled with a sentinel so that an op that forgets elements is caught.
  OwnedTensor out(Shape s) {
    OwnedTensor t = be->alloc(s, DType::F32);
    be->fill(t.t, std::nanf(""));
    return t;
  }
  std::vector<float> get(const Tensor& t) {
    std::vector<float> v(size_t(t.numel()));
    be->download(t, v.data(), DType::F32);
    return v;
  }
};

// ---- linear algebra ------------------------------------------------------------------------------

TEST_F(CpuOps, LinearEveryActivationWithAndWithoutBias) {
  struct Dims { int64_t M, N, K; };
  // Odd sizes (tails), a model-sized one split by columns, and a tall one split by rows.
  for (Dims d : {Dims{37, 71, 53}, Dims{192, 1024, 384}, Dims{700, 40, 64}}) {
    auto x = rnd(size_t(d.M * d.K), 1), w = rnd(size_t(d.N * d.K), 2, -0.2f, 0.2f), b = rnd(size_t(d.N), 3);
    auto X = make({d.M, d.K}, x), W = make({d.N, d.K}, w), B = make({d.N}, b);
    Vec bd = dbl(b);
    for (Activation a : {Activation::None, Activation::GeluTanh, Activation::Silu, Activation::Relu})
      for (bool bias : {false, true}) {
        auto Y = out({d.M, d.N});
        be->linear(X.t, W.t, bias ? B.t : Tensor{}, Y.t, a);
        Vec ref = naive::linear(dbl(x), dbl(w), bias ? &bd : nullptr, d.M, d.N, d.K, nact(a));
        EXPECT_LT(nerr(get(Y.t), ref), kTol) << "M " << d.M << " N " << d.N << " K " << d.K << " act " << int(a)
                                            << " bias " << bias;
      }
  }
}

TEST_F(CpuOps, LinearThreeDimInput) {
  auto x = rnd(2 * 5 * 24, 4), w = rnd(16 * 24, 5);
  auto X = make({2, 5, 24}, x), W = make({16, 24}, w), Y = out({2, 5, 16});
  be->linear(X.t, W.t, Tensor{}, Y.t);
  EXPECT_LT(nerr(get(Y.t), naive::linear(dbl(x), dbl(w), nullptr, 10, 16, 24, naive::Act::None)), kTol);
}

TEST_F(CpuOps, GemmBatchedTransposesStridesAlphaBeta) {
  const int64_t M = 13, N = 17, K = 11, batch = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // Row strides larger than the rows, batch strides larger than the matrices.
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
      const int64_t sA = (ta ? K : M) * lda + 7, sB = (tb ? N : K) * ldb + 1, sC = M * ldc + 4;
      auto a = rnd(size_t(sA * batch), 10), b = rnd(size_t(sB * batch), 11), c = rnd(size_t(sC * batch), 12);
      auto A = make({sA * batch}, a), B = make({sB * batch}, b), C = make({sC * batch}, c);
      Backend::GemmBatched p;
      p.A = A.t, p.B = B.t, p.C = C.t;
      p.transA = ta, p.transB = tb;
      p.M = M, p.N = N, p.K = K, p.lda = lda, p.ldb = ldb, p.ldc = ldc;
      p.strideA = sA, p.strideB = sB, p.strideC = sC, p.batch = batch;
      p.alpha = 0.75f, p.beta = -0.5f;
      be->gemm_batched(p);
      Vec ref = dbl(c);
      naive::gemm_batched(dbl(a), dbl(b), ref, ta, tb, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, 0.75, -0.5);
      EXPECT_LT(nerr(get(C.t), ref), kTol) << "transA " << ta << " transB " << tb;
      // Elements outside the C views (row padding) are untouched: compare exactly.
      auto got = get(C.t);
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t j = N; j < ldc && i * sC + m * ldc + j < sC * batch; ++j)
            ASSERT_EQ(got[size_t(i * sC + m * ldc + j)], c[size_t(i * sC + m * ldc + j)]);
    }
}

TEST_F(CpuOps, GemmBatchedLargeSingleBatchBetaZero) {
  // One big product (split over threads); beta = 0 must ignore C's previous contents (NaN here).
  const int64_t M = 150, N = 260, K = 70;
  auto a = rnd(size_t(K * M), 13), b = rnd(size_t(N * K), 14);
  auto A = make({K, M}, a), B = make({N, K}, b), C = out({M, N});
  Backend::GemmBatched p;
  p.A = A.t, p.B = B.t, p.C = C.t, p.transA = true, p.transB = true;
  p.M = M, p.N = N, p.K = K, p.lda = M, p.ldb = K, p.ldc = N;
  be->gemm_batched(p);
  Vec ref(size_t(M * N), 0.0);
  naive::gemm_batched(dbl(a), dbl(b), ref, true, true, M, N, K, M, K, N, 0, 0, 0, 1, 1.0, 0.0);
  EXPECT_LT(nerr(get(C.t), ref), kTol);
}

// ---- norms and modulation ------------------------------------------------------------------------

TEST_F(CpuOps, LayerNormWithAndWithoutAffine) {
  const int64_t T = 45, D = 384;
  auto x = rnd(size_t(T * D), 20, 2.f, 5.f);  // a large mean: the variance must not cancel
  auto w = rnd(size_t(D), 21), b = rnd(size_t(D), 22);
  Vec wd = dbl(w), bd = dbl(b);
  auto X = make({T, D}, x), W = make({D}, w), B = make({D}, b);
  for (int mode = 0; mode < 3; ++mode) {
    auto Y = out({T, D});
    be->layer_norm(X.t, mode ? W.t : Tensor{}, mode == 2 ? B.t : Tensor{}, Y.t, 1e-6f);
    Vec ref = naive::layer_norm(dbl(x), mode ? &wd : nullptr, mode == 2 ? &bd : nullptr, T, D, 1e-6);
    EXPECT_LT(nerr(get(Y.t), ref), kTol) << "mode " << mode;
  }
}

TEST_F(CpuOps, RmsNormWithAndWithoutWeight) {
  const int64_t T = 33, D = 130;
  auto x = rnd(size_t(T * D), 23), w = rnd(size_t(D), 24);
  Vec wd = dbl(w);
  auto X = make({T, D}, x), W = make({D}, w);
  for (bool weight : {false, true}) {
    auto Y = out({T, D});
    be->rms_norm(X.t, weight ? W.t : Tensor{}, Y.t, 1e-6f);
    EXPECT_LT(nerr(get(Y.t), naive::rms_norm(dbl(x), weight ? &wd : nullptr, T, D, 1e-6)), kTol);
  }
}

TEST_F(CpuOps, RmsNormOfAColumnWindow) {
  // The columns [col, col + D) of a wider x, as slices of a fused projection's output are read:
  // the first, a middle and the last slice, and an odd offset.
  const int64_t T = 21, W = 75;
  auto x = rnd(size_t(T * W), 25);
  auto X = make({T, W}, x);
  for (auto [col, D] : {std::pair<int64_t, int64_t>{0, 40}, {40, 16}, {56, 19}, {3, 72}}) {
    auto w = rnd(size_t(D), 26);
    Vec wd = dbl(w);
    auto Wt = make({D}, w), Y = out({T, D});
    be->rms_norm(X.t, Wt.t, Y.t, 1e-6f, col);
    EXPECT_LT(nerr(get(Y.t), naive::rms_norm(dbl(naive::columns(x, T, W, col, D)), &wd, T, D, 1e-6)), kTol) << col;
  }
  EXPECT_EQ(get(X.t), x);  // the source is untouched
  auto Y = out({T, 16});
  EXPECT_THROW(be->rms_norm(X.t, Tensor{}, Y.t, 1e-6f, 60), ShapeError);  // past the last column
  EXPECT_THROW(be->rms_norm(X.t, Tensor{}, Y.t, 1e-6f, -2), ShapeError);
  EXPECT_THROW(be->rms_norm(X.t, Tensor{}, Y.t, 1e-6f), ShapeError);      // no window: widths must match
  const Tensor inside = X.t.view({T * W, 1}).rows_slice(0, T * 16).view({T, 16});
  EXPECT_THROW(be->rms_norm(X.t, Tensor{}, inside, 1e-6f, 0), ShapeError);  // the window overlaps y
}

TEST_F(CpuOps, LnModulateUsesTheFrameOfEachRow) {
  const int64_t F = 3, rpf = 7, T = F * rpf, D = 48, K = 6;
  auto x = rnd(size_t(T * D), 30), mod = rnd(size_t(F * K * D), 31);
  auto X = make({T, D}, x), M = make({F, K * D}, mod);
  for (auto [sh, sc] : {std::pair{0, 1}, std::pair{3, 4}}) {
    auto Y = out({T, D});
    be->ln_modulate(X.t, M.t, sh, sc, rpf, Y.t, 1e-6f);
    EXPECT_LT(nerr(get(Y.t), naive::ln_modulate(dbl(x), dbl(mod), K, sh, sc, rpf, T, D, 1e-6)), kTol);
  }
}

TEST_F(CpuOps, GatedResidualWithAndWithoutGate) {
  const int64_t F = 4, rpf = 5, T = F * rpf, D = 40, K = 6;
  auto x = rnd(size_t(T * D), 32), y = rnd(size_t(T * D), 33), mod = rnd(size_t(F * K * D), 34);
  Vec md = dbl(mod);
  for (int gate : {2, 5, -1}) {
    auto X = make({T, D}, x), Y = make({T, D}, y), M = make({F, K * D}, mod);
    be->gated_residual(X.t, Y.t, gate >= 0 ? M.t : Tensor{}, gate, rpf);
    EXPECT_LT(nerr(get(X.t), naive::gated_residual(dbl(x), dbl(y), &md, K, gate, rpf, T, D)), kTol) << gate;
  }
}

TEST_F(CpuOps, AddModulationBothBroadcastForms) {
  const int64_t F = 3, K = 6, D = 32;
  auto table = rnd(size_t(K * D), 35);
  auto T = make({1, K, D}, table);
  for (int64_t S : {K * D, D}) {
    auto src = rnd(size_t(F * S), 36);
    auto Sr = make({F, S}, src), O = out({F, K * D});
    be->add_modulation(Sr.t, T.t, O.t);
    EXPECT_LT(nerr(get(O.t), naive::add_modulation(dbl(src), dbl(table), F, K * D, S)), kTol) << S;
  }
}

// ---- rope and attention --------------------------------------------------------------------------

struct RopeFixture {
  std::vector<float> freqs;
  std::vector<int32_t> axes;
};

// MLA layout of the tiny model: 8 pairs over (t, h, w) = (4, 2, 2), axis_dims [24, 20, 20].
RopeFixture mla_rope() {
  RopeFixture r;
  const int pairs[3] = {4, 2, 2}, dims[3] = {24, 20, 20};
  for (int a = 0; a < 3; ++a)
    for (int j = 0; j < pairs[a]; ++j) {
      r.freqs.push_back(float(std::pow(10000.0, -2.0 * j / dims[a])));
      r.axes.push_back(a);
    }
  return r;
}

std::vector<int32_t> positions(int64_t T, uint32_t seed, int32_t t0 = 0) {
  std::mt19937 g(seed);
  std::vector<int32_t> p(size_t(T * 3));
  for (int64_t t = 0; t < T; ++t) {
    p[size_t(t * 3)] = t0 + int32_t(g() % 10);
    p[size_t(t * 3 + 1)] = int32_t(g() % 30);
    p[size_t(t * 3 + 2)] = int32_t(g() % 52);
  }
  return p;
}

TEST_F(CpuOps, RopeMatchesNaiveWithOffset) {
  const int64_t T = 29;
  const int heads = 3, hs = 24, off = 6;
  RopeFixture r = mla_rope();
  auto x = rnd(size_t(T * heads * hs), 40);
  auto pos = positions(T, 41);
  auto X = make({T, heads * hs}, x), P = make_i32({T, 3}, pos);
  auto Fq = make({int64_t(r.freqs.size())}, r.freqs);
  auto Ax = make_i32({int64_t(r.axes.size())}, r.axes);
  RopeSpec spec{Fq.t, Ax.t, int(r.freqs.size())};
  be->rope(X.t, heads, hs, off, spec, P.t);
  Vec ref = naive::rope(dbl(x), T, heads, hs, off, r.freqs, r.axes, pos);
  EXPECT_LT(nerr(get(X.t), ref), kTol);
}

TEST_F(CpuOps, RopeCopyFromAColumnWindow) {
  // rope_copy from a column window of a wider tensor: the shared rope key of MLA (every column
  // rotated) and heads rotated from an offset, next to other columns.
  const int64_t T = 17, W = 81;
  RopeFixture r = mla_rope();
  auto x = rnd(size_t(T * W), 46);
  auto pos = positions(T, 47);
  auto X = make({T, W}, x), P = make_i32({T, 3}, pos);
  auto Fq = make({int64_t(r.freqs.size())}, r.freqs);
  auto Ax = make_i32({int64_t(r.axes.size())}, r.axes);
  RopeSpec spec{Fq.t, Ax.t, int(r.freqs.size())};
  struct Case { int heads, hs, off; int64_t col; };
  for (Case c : {Case{1, 16, 0, 40}, Case{3, 24, 6, 5}, Case{1, 16, 0, 0}}) {
    const int64_t n = int64_t(c.heads) * c.hs;
    auto Y = out({T, n});
    be->rope_copy(X.t, Y.t, c.heads, c.hs, c.off, spec, P.t, c.col);
    Vec ref = naive::rope(dbl(naive::columns(x, T, W, c.col, n)), T, c.heads, c.hs, c.off, r.freqs, r.axes, pos);
    EXPECT_LT(nerr(get(Y.t), ref), kTol) << "column " << c.col;
  }
  EXPECT_EQ(get(X.t), x);
  auto Y = out({T, 16});
  EXPECT_THROW(be->rope_copy(X.t, Y.t, 1, 16, 0, spec, P.t), ShapeError);  // no window: widths must match
  EXPECT_THROW(be->rope_copy(X.t, Y.t, 1, 16, 0, spec, P.t, 70), ShapeError);
}

// Dense rope over a whole head, as the MHA model builds it: axis a of dense size dims[a] has
// dims[a] / 2 pairs, pair j at frequency 10000^(-2j / dims[a]).
RopeFixture dense_rope(const int (&dims)[3]) {
  RopeFixture r;
  for (int a = 0; a < 3; ++a)
    for (int j = 0; j < dims[a] / 2; ++j) {
      r.freqs.push_back(float(std::pow(10000.0, -2.0 * j / dims[a])));
      r.axes.push_back(a);
    }
  return r;
}

TEST_F(CpuOps, RmsNormRopeMatchesNormThenRope) {
  // The MHA query: RMSNorm over the model width, then 3D rope over every head. Wan's layout (12
  // heads of 128, axes 44/42/42) and the tiny model's (6 heads of 64, axes 24/20/20), the whole
  // tensor and column windows (the q columns of the fused [q | k | v] output, one further in), with
  // and without a weight. Same bits as rms_norm, then rope.
  struct Case {
    int heads, hd, dims[3];
    int64_t col, W;
    bool weight;
  };
  const int64_t T = 23;
  for (Case c : {Case{12, 128, {44, 42, 42}, kAllColumns, 1536, true}, Case{12, 128, {44, 42, 42}, 0, 4608, true},
                 Case{6, 64, {24, 20, 20}, kAllColumns, 384, true}, Case{6, 64, {24, 20, 20}, 0, 1152, true},
                 Case{6, 64, {24, 20, 20}, 390, 1152, false}, Case{2, 32, {12, 10, 10}, 3, 70, true}}) {
    const int64_t D = int64_t(c.heads) * c.hd;
    const std::string name = std::to_string(c.heads) + "x" + std::to_string(c.hd) + " column " + std::to_string(c.col);
    RopeFixture r = dense_rope(c.dims);
    ASSERT_EQ(int(r.freqs.size()) * 2, c.hd);
    auto x = rnd(size_t(T * c.W), 48, -2.f, 2.f), w = rnd(size_t(D), 49, 0.5f, 1.5f);
    auto pos = positions(T, 50);
    auto X = make({T, c.W}, x), Wt = make({D}, w), P = make_i32({T, 3}, pos);
    auto Fq = make({int64_t(r.freqs.size())}, r.freqs);
    auto Ax = make_i32({int64_t(r.axes.size())}, r.axes);
    RopeSpec spec{Fq.t, Ax.t, int(r.freqs.size())};
    const Tensor wt = c.weight ? Wt.t : Tensor{};
    auto Y = out({T, D});
    be->rms_norm_rope(X.t, wt, Y.t, 1e-6f, c.heads, c.hd, spec, P.t, c.col);
    const int64_t col = c.col == kAllColumns ? 0 : c.col;
    Vec wd = dbl(w);
    Vec ref = naive::rope(naive::rms_norm(dbl(naive::columns(x, T, c.W, col, D)), c.weight ? &wd : nullptr, T, D, 1e-6),
                          T, c.heads, c.hd, 0, r.freqs, r.axes, pos);
    EXPECT_LT(nerr(get(Y.t), ref), kTol) << name;
    auto Y2 = out({T, D});
    be->rms_norm(X.t, wt, Y2.t, 1e-6f, c.col);
    be->rope(Y2.t, c.heads, c.hd, 0, spec, P.t);
    EXPECT_EQ(get(Y.t), get(Y2.t)) << name;
    EXPECT_EQ(get(X.t), x) << name;  // the source is untouched
  }
  // In place, and shape errors: y not heads * head_dim wide, more pairs than a head holds.
  RopeFixture r = dense_rope({12, 10, 10});
  auto Fq = make({int64_t(r.freqs.size())}, r.freqs);
  auto Ax = make_i32({int64_t(r.axes.size())}, r.axes);
  RopeSpec spec{Fq.t, Ax.t, int(r.freqs.size())};
  auto x = rnd(size_t(T * 64), 51);
  auto pos = positions(T, 52);
  auto X = make({T, 64}, x), P = make_i32({T, 3}, pos);
  be->rms_norm_rope(X.t, Tensor{}, X.t, 1e-6f, 2, 32, spec, P.t);
  EXPECT_LT(nerr(get(X.t), naive::rope(naive::rms_norm(dbl(x), nullptr, T, 64, 1e-6), T, 2, 32, 0, r.freqs, r.axes, pos)),
            kTol);
  auto Y = out({T, 64});
  EXPECT_THROW(be->rms_norm_rope(X.t, Tensor{}, Y.t, 1e-6f, 3, 32, spec, P.t), ShapeError);
  EXPECT_THROW(be->rms_norm_rope(X.t, Tensor{}, Y.t, 1e-6f, 4, 16, spec, P.t), ShapeError);
}

TEST_F(CpuOps, RopeScoresDependOnlyOnOffsets) {
  // Rotating q and k at absolute positions p and p + k must give the scores of positions 0 and k.
  const int64_t Tq = 12, Tk = 20;
  const int heads = 2, hs = 16;  // whole head rotated: 8 pairs
  RopeFixture r = mla_rope();
  auto q = rnd(size_t(Tq * heads * hs), 42), k = rnd(size_t(Tk * heads * hs), 43);
  auto pq = positions(Tq, 44), pk = positions(Tk, 45);
  auto Fq = make({int64_t(r.freqs.size())}, r.freqs);
  auto Ax = make_i32({int64_t(r.axes.size())}, r.axes);
  RopeSpec spec{Fq.t, Ax.t, int(r.freqs.size())};
  auto scores = [&](int32_t dt, int32_t dh, int32_t dw) {
    auto sq = pq, sk = pk;
    for (auto* v : {&sq, &sk})
      for (size_t i = 0; i < v->size(); i += 3) (*v)[i] += dt, (*v)[i + 1] += dh, (*v)[i + 2] += dw;
    auto Q = make({Tq, heads * hs}, q), Kt = make({Tk, heads * hs}, k);
    auto PQ = make_i32({Tq, 3}, sq), PK = make_i32({Tk, 3}, sk);
    be->rope(Q.t, heads, hs, 0, spec, PQ.t);
    be->rope(Kt.t, heads, hs, 0, spec, PK.t);
    auto qr = get(Q.t), kr = get(Kt.t);
    std::vector<float> s;
    for (int h = 0; h < heads; ++h)
      for (int64_t i = 0; i < Tq; ++i)
        for (int64_t j = 0; j < Tk; ++j) {
          double d = 0;
          for (int e = 0; e < hs; ++e) d += double(qr[size_t(i * heads * hs + h * hs + e)]) * kr[size_t(j * heads * hs + h * hs + e)];
          s.push_back(float(d));
        }
    return s;
  };
  auto base = scores(0, 0, 0);
  Vec based = dbl(base);
  EXPECT_LT(nerr(scores(37, 0, 0), based), 1e-5);
  EXPECT_LT(nerr(scores(5, 11, 23), based), 1e-5);
  // The rotation is real: unrotated scores differ from these.
  std::vector<float> plain;
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < Tq; ++i)
      for (int64_t j = 0; j < Tk; ++j) {
        double d = 0;
        for (int e = 0; e < hs; ++e) d += double(q[size_t(i * heads * hs + h * hs + e)]) * k[size_t(j * heads * hs + h * hs + e)];
        plain.push_back(float(d));
      }
  EXPECT_GT(nerr(plain, based), 0.1);
}

TEST_F(CpuOps, AttentionMhaAndSharedKv) {
  struct Case { int64_t Tq, Tk; int H, Hk, dk, dv; float amp; };
  // MHA, Tq != Tk, dk != dv; MQA (absorbed MLA); peaky softmax (amp 4); single head.
  for (Case c : {Case{17, 29, 3, 3, 24, 40, 1.f}, Case{23, 41, 4, 1, 56, 40, 1.f}, Case{31, 19, 2, 2, 16, 8, 4.f},
                 Case{9, 70, 1, 1, 64, 64, 1.f}}) {
    auto q = rnd(size_t(c.Tq * c.H * c.dk), 50, -c.amp, c.amp), k = rnd(size_t(c.Tk * c.Hk * c.dk), 51, -c.amp, c.amp);
    auto v = rnd(size_t(c.Tk * c.Hk * c.dv), 52);
    auto Q = make({c.Tq, c.H * c.dk}, q), K = make({c.Tk, c.Hk * c.dk}, k), V = make({c.Tk, c.Hk * c.dv}, v);
    auto O = out({c.Tq, c.H * c.dv});
    const float scale = 1.0f / std::sqrt(float(c.dk));
    be->attention(Q.t, K.t, V.t, O.t, c.H, c.Hk, c.dk, c.dv, scale);
    Vec ref = naive::attention(dbl(q), dbl(k), dbl(v), c.Tq, c.Tk, c.H, c.Hk, c.dk, c.dv, scale);
    EXPECT_LT(nerr(get(O.t), ref), kTol) << "Tq " << c.Tq << " Tk " << c.Tk << " H " << c.H << " Hk " << c.Hk;
  }
}

TEST_F(CpuOps, AttentionBigShapeIsTiled) {
  // 4000 keys: the score tile holds 65 query rows, so 700 queries run as many tiles per head.
  for (int Hk : {2, 1}) {
    const int64_t Tq = 700, Tk = 4000;
    const int H = 2, dk = 32, dv = 24;
    auto q = rnd(size_t(Tq * H * dk), 53, -2.f, 2.f), k = rnd(size_t(Tk * Hk * dk), 54, -2.f, 2.f);
    auto v = rnd(size_t(Tk * Hk * dv), 55);
    auto Q = make({Tq, H * dk}, q), K = make({Tk, Hk * dk}, k), V = make({Tk, Hk * dv}, v), O = out({Tq, H * dv});
    be->attention(Q.t, K.t, V.t, O.t, H, Hk, dk, dv, 0.2f);
    EXPECT_LT(nerr(get(O.t), naive::attention(dbl(q), dbl(k), dbl(v), Tq, Tk, H, Hk, dk, dv, 0.2)), kTol) << Hk;
  }
}

TEST_F(CpuOps, AttentionWanLengthContext) {
  // The Wan benchmark's key count (32760): 64-row score tiles of 32760 columns, never Tq x Tk.
  const int64_t Tq = 70, Tk = 32760;
  const int H = 2, dk = 16, dv = 8;
  auto q = rnd(size_t(Tq * H * dk), 56, -3.f, 3.f), k = rnd(size_t(Tk * H * dk), 57, -3.f, 3.f);
  auto v = rnd(size_t(Tk * H * dv), 58);
  auto Q = make({Tq, H * dk}, q), K = make({Tk, H * dk}, k), V = make({Tk, H * dv}, v), O = out({Tq, H * dv});
  be->attention(Q.t, K.t, V.t, O.t, H, H, dk, dv, 0.25f);
  EXPECT_LT(nerr(get(O.t), naive::attention(dbl(q), dbl(k), dbl(v), Tq, Tk, H, H, dk, dv, 0.25)), kTol);
}

// ---- layout --------------------------------------------------------------------------------------

TEST_F(CpuOps, ConcatHeadsBothForms) {
  const int64_t T = 11;
  const int H = 3, da = 5, db = 4;
  auto a = rnd(size_t(T * H * da), 60);
  for (int Hb : {H, 1}) {
    auto b = rnd(size_t(T * Hb * db), 61);
    auto A = make({T, H * da}, a), B = make({T, Hb * db}, b), O = out({T, H * (da + db)});
    be->concat_heads(A.t, da, B.t, db, H, O.t);
    EXPECT_EQ(nerr(get(O.t), naive::concat_heads(dbl(a), da, dbl(b), db, H, Hb, T)), 0.0) << Hb;
  }
}

TEST_F(CpuOps, ConcatChannels) {
  auto a = rnd(2 * 3 * 5 * 4, 62), b = rnd(2 * 2 * 5 * 4, 63);
  auto A = make({2, 3, 5, 4}, a), B = make({2, 2, 5, 4}, b), O = out({2, 5, 5, 4});
  be->concat_channels(A.t, B.t, O.t);
  Vec ref;
  for (int n = 0; n < 2; ++n) {
    ref.insert(ref.end(), a.begin() + n * 60, a.begin() + (n + 1) * 60);
    ref.insert(ref.end(), b.begin() + n * 40, b.begin() + (n + 1) * 40);
  }
  EXPECT_EQ(nerr(get(O.t), ref), 0.0);
}

TEST_F(CpuOps, PatchifyUnpatchifyIndexFormulasAndRoundTrip) {
  const int64_t F = 3, C = 5, H = 8, W = 12;
  const int ph = 2, pw = 3;
  const int64_t Tn = F * (H / ph) * (W / pw), P = int64_t(ph) * pw;
  auto x = rnd(size_t(F * C * H * W), 64);
  auto X = make({F, C, H, W}, x), Tk = out({Tn, C * P});
  be->patchify(X.t, ph, pw, Tk.t);
  auto tok = get(Tk.t);
  EXPECT_EQ(nerr(tok, naive::patchify(dbl(x), F, C, H, W, ph, pw)), 0.0);

  auto t2 = rnd(size_t(Tn * C * P), 65);
  auto T2 = make({Tn, P * C}, t2), X2 = out({F, C, H, W});
  be->unpatchify(T2.t, ph, pw, X2.t);
  EXPECT_EQ(nerr(get(X2.t), naive::unpatchify(dbl(t2), F, C, H, W, ph, pw)), 0.0);

  // Round trip: patchify's columns c*P + p*pw + q regrouped to unpatchify's (p*pw + q)*C + c.
  std::vector<float> perm(tok.size());
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t pq = 0; pq < P; ++pq) perm[size_t(t * C * P + pq * C + c)] = tok[size_t(t * C * P + c * P + pq)];
  auto T3 = make({Tn, P * C}, perm), X3 = out({F, C, H, W});
  be->unpatchify(T3.t, ph, pw, X3.t);
  EXPECT_EQ(get(X3.t), x);
}

TEST_F(CpuOps, Conv2dStridesPaddingOneByOneAndActivation) {
  struct Case { int64_t N, Ci, H, W, Co, k; int stride, pad; Activation act; bool bias; };
  for (Case c : {Case{2, 4, 13, 11, 6, 3, 1, 1, Activation::None, true},
                 Case{3, 5, 13, 11, 7, 3, 2, 1, Activation::Relu, true},
                 Case{2, 6, 9, 10, 3, 1, 1, 0, Activation::None, false},
                 Case{2, 6, 9, 10, 8, 1, 1, 0, Activation::Silu, true},
                 Case{1, 16, 40, 36, 12, 3, 1, 1, Activation::GeluTanh, true},  // several row strips
                 Case{2, 16, 40, 36, 12, 3, 2, 1, Activation::Relu, false},
                 Case{1, 3, 10, 12, 4, 3, 2, 0, Activation::None, true}}) {
    const int64_t Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1, Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    auto x = rnd(size_t(c.N * c.Ci * c.H * c.W), 70), w = rnd(size_t(c.Co * c.Ci * c.k * c.k), 71, -0.5f, 0.5f);
    auto b = rnd(size_t(c.Co), 72);
    Vec bd = dbl(b);
    auto X = make({c.N, c.Ci, c.H, c.W}, x), Wt = make({c.Co, c.Ci, c.k, c.k}, w), B = make({c.Co}, b);
    auto Y = out({c.N, c.Co, Ho, Wo});
    be->conv2d(X.t, Wt.t, c.bias ? B.t : Tensor{}, Y.t, c.stride, c.pad, c.act);
    Vec ref = naive::conv2d(dbl(x), dbl(w), c.bias ? &bd : nullptr, c.N, c.Ci, c.H, c.W, c.Co, c.k, c.k, c.stride,
                            c.pad, nact(c.act));
    EXPECT_LT(nerr(get(Y.t), ref), kTol) << "Ci " << c.Ci << " k " << c.k << " stride " << c.stride << " pad " << c.pad;
  }
}

TEST_F(CpuOps, Upsample2x) {
  auto x = rnd(2 * 3 * 5 * 7, 73);
  auto X = make({2, 3, 5, 7}, x), Y = out({2, 3, 10, 14});
  be->upsample2x(X.t, Y.t);
  EXPECT_EQ(nerr(get(Y.t), naive::upsample2x(dbl(x), 6, 5, 7)), 0.0);
}

// ---- elementwise ---------------------------------------------------------------------------------

TEST_F(CpuOps, TanhClamp) {
  auto x = rnd(5000, 74, -12.f, 12.f);
  auto small = rnd(1000, 75, -0.05f, 0.05f);  // relative accuracy near 0 matters too
  for (auto* v : {&x, &small}) {
    auto X = make({int64_t(v->size())}, *v), O = out({int64_t(v->size())});
    be->tanh_clamp(X.t, O.t, 3.f);
    Vec ref(v->size());
    for (size_t i = 0; i < v->size(); ++i) ref[i] = 3.0 * std::tanh(double((*v)[i]) / 3.0);
    EXPECT_LT(nerr(get(O.t), ref), kTol);
  }
}

TEST_F(CpuOps, ActivationAndAxpbyInPlace) {
  auto x = rnd(3000, 76, -6.f, 6.f), y = rnd(3000, 77);
  for (Activation a : {Activation::None, Activation::GeluTanh, Activation::Silu, Activation::Relu}) {
    auto X = make({3000}, x);
    be->activation(X.t, X.t, a);  // in place
    Vec ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) ref[i] = naive::act(x[i], nact(a));
    EXPECT_LT(nerr(get(X.t), ref), kTol) << int(a);
  }
  auto X = make({30, 100}, x), Y = make({3000}, y);
  be->axpby(0.3f, X.t, -1.5f, Y.t, Y.t);  // out aliases y
  Vec ref(x.size());
  for (size_t i = 0; i < x.size(); ++i) ref[i] = 0.3 * x[i] - 1.5 * y[i];
  EXPECT_LT(nerr(get(Y.t), ref), kTol);
  auto O = out({3000});
  be->axpby(2.f, X.t, 0.f, Tensor{}, O.t);  // y absent
  for (size_t i = 0; i < x.size(); ++i) ref[i] = 2.0 * x[i];
  EXPECT_LT(nerr(get(O.t), ref), kTol);
}

TEST_F(CpuOps, EmbeddingLooksUpHostIds) {
  const int64_t V = 50, D = 24;
  auto table = rnd(size_t(V * D), 78);
  auto T = make({V, D}, table), O = out({6, D});
  std::vector<int32_t> ids = {3, 0, 49, 3, 17, 1};
  be->embedding(T.t, ids.data(), int64_t(ids.size()), O.t);
  auto got = get(O.t);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(got[i * D + size_t(d)], table[size_t(ids[i] * D + d)]);
  std::vector<int32_t> bad = {1, 50};
  auto O2 = out({2, D});
  EXPECT_THROW(be->embedding(T.t, bad.data(), 2, O2.t), Error);
}

TEST_F(CpuOps, ToRgb8RoundsAndClamps) {
  const int64_t F = 2, H = 5, W = 300;  // W > 256: the conversion's inner blocking
  auto x = rnd(size_t(F * 3 * H * W), 79, -0.2f, 1.2f);
  x[0] = 0.5f, x[1] = 1.5f / 255.f, x[2] = 2.5f / 255.f, x[3] = -0.f, x[4] = 1.f, x[5] = std::nanf("");
  auto X = make({F, 3, H, W}, x);
  OwnedTensor R = be->alloc({F, H, W, 3}, DType::U8);
  be->to_rgb8(X.t, R.t);
  std::vector<uint8_t> got(size_t(R.t.numel()));
  be->download(R.t, got.data(), DType::U8);
  x[5] = 0.f;  // NaN becomes black
  EXPECT_EQ(got, naive::to_rgb8(x, F, H, W));
  EXPECT_EQ(got[0], 128);
}

// ---- memory, copies and conversions --------------------------------------------------------------

TEST_F(CpuOps, CopyRowsCopyAndFill) {
  auto a = rnd(10 * 7, 80);
  auto A = make({10, 7}, a), B = out({6, 7});
  be->fill(B.t, 2.5f);
  be->copy_rows(A.t, 3, B.t, 1, 4);
  auto got = get(B.t);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 7; ++c)
      ASSERT_EQ(got[size_t(r * 7 + c)], (r >= 1 && r < 5) ? a[size_t((r + 2) * 7 + c)] : 2.5f);
  // Overlapping rows of one tensor (a ring shifting down).
  be->copy_rows(A.t, 0, A.t, 2, 8);
  auto shifted = get(A.t);
  for (int64_t i = 14; i < 70; ++i) ASSERT_EQ(shifted[size_t(i)], a[size_t(i - 14)]);
  EXPECT_THROW(be->copy_rows(A.t, 8, B.t, 0, 3), ShapeError);
  auto C = out({7, 10});
  be->copy(A.t, C.t);
  EXPECT_EQ(get(C.t), shifted);
}

TEST_F(CpuOps, CopyRowsFromAColumnWindow) {
  const int64_t R = 10, W = 12;
  auto a = rnd(size_t(R * W), 86);
  auto A = make({R, W}, a), B = out({6, 5});
  be->fill(B.t, 2.5f);
  be->copy_rows(A.t, 3, B.t, 1, 4, 7);  // columns 7..11 of rows 3..6
  auto got = get(B.t);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 5; ++c)
      ASSERT_EQ(got[size_t(r * 5 + c)], (r >= 1 && r < 5) ? a[size_t((r + 2) * W + 7 + c)] : 2.5f);
  // Into another dtype: the rounded values.
  auto BB = be->alloc({R, 4}, DType::BF16);
  be->copy_rows(A.t, 0, BB.t, 0, R, 2);
  std::vector<uint16_t> bits(size_t(R * 4));
  be->download(BB.t, bits.data(), DType::BF16);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < 4; ++c) ASSERT_EQ(bits[size_t(r * 4 + c)], f32_to_bf16(a[size_t(r * W + 2 + c)]));
  EXPECT_EQ(get(A.t), a);
  EXPECT_THROW(be->copy_rows(A.t, 0, B.t, 0, 2, 8), ShapeError);   // past the last column
  EXPECT_THROW(be->copy_rows(A.t, 0, B.t, 0, 2), ShapeError);      // no window: widths must match
  EXPECT_THROW(be->copy_rows(A.t, 0, A.t.view({24, 5}), 0, 2, 1), ShapeError);  // the window overlaps dst
}

TEST_F(CpuOps, UploadDownloadF16Bf16I32U8) {
  const int64_t n = 4099;
  auto v = rnd(size_t(n), 81, -70000.f, 70000.f);
  // F16-representable values survive F16 -> F32 tensor -> F16 bit-exactly.
  std::vector<uint16_t> h16(static_cast<size_t>(n)), back16(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) h16[size_t(i)] = f32_to_f16(v[size_t(i)] / 8.f);
  auto T = be->alloc({n}, DType::F32);
  be->upload(h16.data(), DType::F16, T.t);
  be->download(T.t, back16.data(), DType::F16);
  EXPECT_EQ(h16, back16);
  // BF16 likewise, and a BF16 tensor on the backend: F32 in, rounded to nearest even, F32 out.
  std::vector<uint16_t> hb(static_cast<size_t>(n)), backb(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) hb[size_t(i)] = f32_to_bf16(v[size_t(i)]);
  be->upload(hb.data(), DType::BF16, T.t);
  be->download(T.t, backb.data(), DType::BF16);
  EXPECT_EQ(hb, backb);
  auto TB = be->alloc({n}, DType::BF16);
  be->upload(v.data(), DType::F32, TB.t);
  std::vector<float> vb(static_cast<size_t>(n));
  be->download(TB.t, vb.data(), DType::F32);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(vb[size_t(i)], bf16_to_f32(f32_to_bf16(v[size_t(i)])));
  auto TH = be->alloc({n}, DType::F16);
  be->copy(TB.t, TH.t);  // BF16 -> F16 through fp32
  std::vector<uint16_t> hh(static_cast<size_t>(n));
  be->download(TH.t, hh.data(), DType::F16);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hh[size_t(i)], f32_to_f16(vb[size_t(i)]));
  // Integers and bytes are exact.
  std::vector<int32_t> iv = {0, -5, 7, 123456, -2147483647};
  auto TI = be->alloc({5}, DType::I32);
  be->upload(iv.data(), DType::I32, TI.t);
  std::vector<int32_t> ib(5);
  be->download(TI.t, ib.data(), DType::I32);
  EXPECT_EQ(iv, ib);
  std::vector<uint8_t> u8 = {0, 1, 128, 255};
  auto TU = be->alloc({4}, DType::U8);
  be->upload(u8.data(), DType::U8, TU.t);
  std::vector<float> uf(4);
  be->download(TU.t, uf.data(), DType::F32);
  EXPECT_EQ(uf, (std::vector<float>{0.f, 1.f, 128.f, 255.f}));
}

TEST_F(CpuOps, OpsReadNonF32Operands) {
  // A BF16 weight gives the result of its exact fp32 value; a BF16 output is the rounded result.
  const int64_t M = 20, N = 30, K = 40;
  auto x = rnd(size_t(M * K), 82), w = rnd(size_t(N * K), 83);
  for (auto& e : w) e = bf16_to_f32(f32_to_bf16(e));
  auto X = make({M, K}, x);
  auto W = be->alloc({N, K}, DType::BF16);
  be->upload(w.data(), DType::F32, W.t);
  auto Y = out({M, N});
  be->linear(X.t, W.t, Tensor{}, Y.t);
  Vec ref = naive::linear(dbl(x), dbl(w), nullptr, M, N, K, naive::Act::None);
  EXPECT_LT(nerr(get(Y.t), ref), kTol);
  auto YB = be->alloc({M, N}, DType::BF16);
  be->linear(X.t, W.t, Tensor{}, YB.t);
  EXPECT_LT(nerr(get(YB.t), ref), 4e-3);  // bf16 has 8 bits of mantissa
  // A conv-shaped weight [N, C, 1, ph, pw] works as the linear [N, C*ph*pw].
  auto W5 = make({N, 10, 1, 2, 2}, w);
  be->linear(X.t, W5.t, Tensor{}, Y.t);
  EXPECT_LT(nerr(get(Y.t), ref), kTol);
  // gemm_batched into a BF16 C with row padding: the padding keeps its bits.
  {
    const int64_t ldc = N + 3;
    auto c0 = rnd(size_t(M * ldc), 84);
    auto CB = be->alloc({M, ldc}, DType::BF16);
    be->upload(c0.data(), DType::F32, CB.t);
    std::vector<uint16_t> before(size_t(M * ldc)), after(size_t(M * ldc));
    be->download(CB.t, before.data(), DType::BF16);
    Backend::GemmBatched p;
    p.A = X.t, p.B = W.t, p.C = CB.t, p.transB = true;
    p.M = M, p.N = N, p.K = K, p.lda = K, p.ldb = K, p.ldc = ldc;
    be->gemm_batched(p);
    be->download(CB.t, after.data(), DType::BF16);
    std::vector<float> got;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) got.push_back(bf16_to_f32(after[size_t(m * ldc + n)]));
      for (int64_t n = N; n < ldc; ++n) ASSERT_EQ(after[size_t(m * ldc + n)], before[size_t(m * ldc + n)]);
    }
    EXPECT_LT(nerr(got, ref), 4e-3);
  }
  auto R = be->alloc({M, N}, DType::F16);
  be->copy(Y.t, R.t);
  be->gated_residual(R.t, Y.t, Tensor{}, -1, 1);  // in place on an F16 tensor: R = 2Y
  for (auto& e : ref) e *= 2;
  EXPECT_LT(nerr(get(R.t), ref), 1e-3);
}

TEST_F(CpuOps, MemoryAccountingAndAlignment) {
  const size_t before = be->memory_info().allocated_by_engine;
  {
    Buffer b = be->alloc_bytes(1000);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
    EXPECT_EQ(be->memory_info().allocated_by_engine, before + 1000);
    Buffer c = be->alloc_bytes(0);
    EXPECT_NE(c.data(), nullptr);
  }
  EXPECT_EQ(be->memory_info().allocated_by_engine, before);
  EXPECT_THROW(be->alloc_bytes(size_t(1) << 62), OutOfMemory);
  EXPECT_EQ(be->name(), "cpu");
  EXPECT_NE(be->device_name().find(" threads, OpenBLAS "), std::string::npos) << be->device_name();
  EXPECT_EQ(be->act_dtype(), DType::F32);
}

// OpenBLAS runs a kernel set of the CPU's vector features, not the generic fallback it takes for
// CPUs newer than itself (blas_core.cpp: the first CPU backend switches it), and the device name
// says which. Unless the user has set OPENBLAS_CORETYPE.
TEST_F(CpuOps, BlasKernelsMatchTheCpu) {
  const char* want = cpu::blas_core_for_this_cpu();
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  std::printf("OpenBLAS core %s (this CPU's features: %s, OPENBLAS_CORETYPE %s)\n", cpu::blas_core().c_str(),
              want ? want : "no AVX2", env ? env : "unset");
  EXPECT_NE(be->device_name().find("OpenBLAS " + cpu::blas_core() + ")"), std::string::npos) << be->device_name();
  if (want && env && std::string(env) != want) return;  // the user's choice
  EXPECT_FALSE(cpu::blas_core_below_cpu()) << cpu::blas_core() << " for a CPU with " << want;
}

TEST_F(CpuOps, OneThreadAndManyThreadsAgree) {
  auto one = create_cpu_backend(1), many = create_cpu_backend(3);
  const int64_t Tq = 96, Tk = 300;
  const int H = 4, d = 32;
  auto q = rnd(size_t(Tq * H * d), 90), k = rnd(size_t(Tk * H * d), 91), v = rnd(size_t(Tk * H * d), 92);
  std::vector<float> res[2];
  int i = 0;
  for (Backend* b : {one.get(), many.get()}) {
    auto mk = [&](Shape s, const std::vector<float>& h) {
      auto t = b->alloc(s, DType::F32);
      b->upload(h.data(), DType::F32, t.t);
      return t;
    };
    auto Q = mk({Tq, H * d}, q), K = mk({Tk, H * d}, k), V = mk({Tk, H * d}, v);
    auto O = b->alloc({Tq, H * d}, DType::F32);
    b->attention(Q.t, K.t, V.t, O.t, H, H, d, d, 0.125f);
    res[i].resize(size_t(O.t.numel()));
    b->download(O.t, res[i].data(), DType::F32);
    ++i;
  }
  EXPECT_LT(nerr(res[1], dbl(res[0])), 1e-6);
}

// ---- shape errors --------------------------------------------------------------------------------

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ShapeError& e) {
    return e.what();
  }
  return "";
}

TEST_F(CpuOps, ShapeMismatchesThrow) {
  auto x = zeros({8, 16}), w = zeros({4, 15}), y = zeros({8, 4});
  std::string msg = error_of([&] { be->linear(x.t, w.t, Tensor{}, y.t); });
  EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8, 16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 15]"), std::string::npos) << msg;

  auto w2 = zeros({4, 16}), b = zeros({5});
  EXPECT_THROW(be->linear(x.t, w2.t, b.t, y.t), ShapeError);                 // bias length
  EXPECT_THROW(be->linear(x.t, w2.t, Tensor{}, zeros({8, 5}).t), ShapeError);  // output width
  EXPECT_THROW(be->linear(x.t, w2.t, Tensor{}, x.t), ShapeError);            // output aliases input

  auto q = zeros({5, 32}), k = zeros({7, 32}), v = zeros({7, 30}), o = zeros({5, 32});
  EXPECT_THROW(be->attention(q.t, k.t, v.t, o.t, 2, 2, 16, 16, 1.f), ShapeError);  // v columns
  EXPECT_THROW(be->attention(q.t, k.t, zeros({7, 32}).t, o.t, 2, 3, 16, 16, 1.f), ShapeError);  // kv_heads
  EXPECT_THROW(be->attention(q.t, k.t, zeros({6, 32}).t, o.t, 2, 2, 16, 16, 1.f), ShapeError);  // Tk differs

  auto img = zeros({1, 3, 8, 8});
  EXPECT_THROW(be->conv2d(img.t, zeros({4, 3, 3, 3}).t, Tensor{}, zeros({1, 4, 8, 7}).t, 1, 1), ShapeError);
  EXPECT_THROW(be->conv2d(img.t, zeros({4, 2, 3, 3}).t, Tensor{}, zeros({1, 4, 8, 8}).t, 1, 1), ShapeError);
  EXPECT_THROW(be->patchify(zeros({1, 3, 7, 8}).t, 2, 2, zeros({12, 12}).t), ShapeError);
  EXPECT_THROW(be->unpatchify(zeros({16, 12}).t, 2, 2, zeros({1, 3, 8, 6}).t), ShapeError);
  EXPECT_THROW(be->upsample2x(img.t, zeros({1, 3, 16, 15}).t), ShapeError);
  EXPECT_THROW(be->concat_channels(img.t, zeros({1, 2, 8, 7}).t, zeros({1, 5, 8, 8}).t), ShapeError);
  EXPECT_THROW(be->concat_heads(zeros({4, 6}).t, 3, zeros({4, 5}).t, 2, 2, zeros({4, 10}).t), ShapeError);

  // Modulation: too few frames for the rows, chunk index out of range.
  auto xt = zeros({12, 8}), mod = zeros({2, 48});
  EXPECT_THROW(be->ln_modulate(xt.t, mod.t, 0, 1, 4, zeros({12, 8}).t, 1e-6f), ShapeError);
  EXPECT_THROW(be->ln_modulate(xt.t, mod.t, 0, 6, 6, zeros({12, 8}).t, 1e-6f), ShapeError);
  EXPECT_THROW(be->gated_residual(xt.t, zeros({12, 9}).t, mod.t, 2, 6), ShapeError);
  EXPECT_THROW(be->add_modulation(zeros({2, 5}).t, zeros({48}).t, zeros({2, 48}).t), ShapeError);
  EXPECT_THROW(be->layer_norm(xt.t, zeros({7}).t, Tensor{}, zeros({12, 8}).t, 1e-6f), ShapeError);
  EXPECT_THROW(be->rms_norm(xt.t, Tensor{}, zeros({12, 7}).t, 1e-6f), ShapeError);

  // RoPE: pairs past the head, bad axis.
  auto fr = zeros({4});
  auto ax = make_i32({4}, {0, 1, 2, 3});
  auto pos = make_i32({12, 3}, std::vector<int32_t>(36, 0));
  EXPECT_THROW(be->rope(xt.t, 1, 8, 2, RopeSpec{fr.t, ax.t, 4}, pos.t), ShapeError);
  EXPECT_THROW(be->rope(xt.t, 1, 8, 0, RopeSpec{fr.t, ax.t, 4}, pos.t), ShapeError);

  // GEMM views reaching past the tensors.
  Backend::GemmBatched p;
  p.A = zeros({4, 4}).t, p.B = zeros({4, 4}).t, p.C = zeros({4, 4}).t;
  p.M = 4, p.N = 4, p.K = 4, p.lda = 4, p.ldb = 4, p.ldc = 4, p.batch = 2, p.strideA = p.strideB = p.strideC = 16;
  EXPECT_THROW(be->gemm_batched(p), ShapeError);
  p.batch = 1;
  p.lda = 3;
  EXPECT_THROW(be->gemm_batched(p), ShapeError);

  EXPECT_THROW(be->copy(xt.t, zeros({5}).t), ShapeError);
  EXPECT_THROW(be->to_rgb8(img.t, zeros({1, 8, 8, 3}).t), ShapeError);  // F32 output, U8 expected
}

// ---- speed (informational) -----------------------------------------------------------------------

TEST_F(CpuOps, PrintSpeedOfModelShapes) {
  using clk = std::chrono::steady_clock;
  // Best of the repetitions: on a shared machine the minimum is the figure that repeats.
  auto time_it = [](auto&& f) {
    f();  // warm up
    int reps = 0;
    double best = 1e30;
    const auto t0 = clk::now();
    while (std::chrono::duration<double>(clk::now() - t0).count() < 0.3 || reps < 5) {
      const auto a = clk::now();
      f();
      best = std::min(best, std::chrono::duration<double>(clk::now() - a).count());
      ++reps;
    }
    return best;
  };
  auto x = make({192, 384}, rnd(192 * 384, 1)), w = make({1024, 384}, rnd(1024 * 384, 2)), b = make({1024}, rnd(1024, 3));
  auto y = out({192, 1024});
  double tg = time_it([&] { be->linear(x.t, w.t, Tensor{}, y.t); });
  std::printf("[ speed    ] linear [192,384]x[1024,384]^T: %.1f us, %.1f GFLOP/s\n", tg * 1e6,
              2.0 * 192 * 384 * 1024 / tg * 1e-9);
  double tl = time_it([&] { be->linear(x.t, w.t, b.t, y.t, Activation::GeluTanh); });
  std::printf("[ speed    ] linear [192,384]x[1024,384]^T +b gelu: %.1f us, %.1f GFLOP/s\n", tl * 1e6,
              2.0 * 192 * 384 * 1024 / tl * 1e-9);
  auto q = make({192, 384}, rnd(192 * 384, 4)), k = make({640, 384}, rnd(640 * 384, 5)), v = make({640, 384}, rnd(640 * 384, 6));
  auto o = out({192, 384});
  double ta = time_it([&] { be->attention(q.t, k.t, v.t, o.t, 6, 6, 64, 64, 0.125f); });
  std::printf("[ speed    ] attention q192 k640 h6 d64: %.1f us, %.1f GFLOP/s\n", ta * 1e6,
              2.0 * 2 * 192 * 640 * 64 * 6 / ta * 1e-9);
  auto kc = make({640, 56}, rnd(640 * 56, 7)), vc = make({640, 40}, rnd(640 * 40, 8));
  auto qa = make({192, 6 * 56}, rnd(192 * 6 * 56, 9)), oa = out({192, 6 * 40});
  double tm = time_it([&] { be->attention(qa.t, kc.t, vc.t, oa.t, 6, 1, 56, 40, 0.125f); });
  std::printf("[ speed    ] attention absorbed MLA q192 k640 h6 dk56 dv40: %.1f us\n", tm * 1e6);
  auto ci = make({12, 64, 64, 64}, rnd(12 * 64 * 64 * 64, 10)), cw = make({64, 64, 3, 3}, rnd(64 * 64 * 9, 11));
  auto co = out({12, 64, 64, 64});
  double tc = time_it([&] { be->conv2d(ci.t, cw.t, Tensor{}, co.t, 1, 1, Activation::Relu); });
  std::printf("[ speed    ] conv2d 3x3 [12,64,64,64]->64: %.2f ms, %.1f GFLOP/s\n", tc * 1e3,
              2.0 * 12 * 64 * 64 * 64 * 64 * 9 / tc * 1e-9);
  SUCCEED();
}

}  // namespace
}  // namespace vmla
