// Parity of every CUDA backend op against the CPU backend (the numerical reference): fresh random
// inputs, bf16 storage where the model uses it, outputs poisoned with NaN before each op, compared by
// normalised error ||cuda - cpu|| / ||cpu|| < 1e-2. Skips cleanly without a CUDA build or device.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/tensor/backend.h"
#ifdef VMLA_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"  // the GEMM tuning record
#endif
#ifdef VMLA_WITH_CUDA
#include "kernels/flash_attention_sm90.cuh"
#endif

namespace vmla {
namespace {

constexpr double kTol = 1e-2;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::map<std::string, double>& error_table() {
  static std::map<std::string, double> t;
  return t;
}

// Prints the worst normalised error per op at the end (the table the GPU report quotes).
struct Backends;
Backends& backends();

class ErrorReport : public ::testing::Environment {
 public:
  void TearDown() override;
};
[[maybe_unused]] const auto* const kReport = ::testing::AddGlobalTestEnvironment(new ErrorReport);

std::unique_ptr<Backend> make_gpu(std::string* why) {
#ifdef VMLA_WITH_CUDA
  if (cuda_device_count() == 0) {
    *why = "no CUDA device or driver available: CUDA parity tests skipped";
    return nullptr;
  }
  return create_cuda_backend(0);
#else
  *why = "this build has no CUDA backend (nvcc not found at configure time): CUDA parity tests skipped";
  return nullptr;
#endif
}

#ifdef VMLA_WITH_CUDA
// A second CUDA backend made with environment variable `var` set to `value` (backends read their
// switches when created); the variable is restored afterwards.
std::unique_ptr<Backend> cuda_backend_with(const char* var, const char* value) {
  const char* env = std::getenv(var);
  const std::string saved = env ? env : "";
  setenv(var, value, 1);
  std::unique_ptr<Backend> be = create_cuda_backend(0);
  if (env)
    setenv(var, saved.c_str(), 1);
  else
    unsetenv(var);
  return be;
}
#endif

struct Backends {
  std::unique_ptr<Backend> cpu, gpu;
  std::string why;
};
Backends& backends() {
  static Backends b = [] {
    Backends r;
    r.gpu = make_gpu(&r.why);
    if (r.gpu) r.cpu = create_cpu_backend();
    return r;
  }();
  return b;
}

void ErrorReport::TearDown() {
  // Backends go before the CUDA runtime unloads at exit.
  backends().gpu.reset();
  backends().cpu.reset();
  if (error_table().empty()) return;
  std::printf("\n%-44s %s\n", "op (case)", "max normalised error");
  for (auto& [name, err] : error_table()) std::printf("%-44s %.3e\n", name.c_str(), err);
}

// One logical tensor on both backends: the CPU copy in F32, the GPU copy in `gdt`.
struct Pair {
  OwnedTensor c, g;
  Shape shape;
};

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    Backends& b = backends();
    if (!b.gpu) GTEST_SKIP() << b.why;
    cpu = b.cpu.get();
    gpu = b.gpu.get();
    rng.seed(std::random_device{}());
  }

  // Host values rounded to the GPU storage type, so both backends see identical inputs and only
  // the op's own error is measured.
  std::vector<float> random_host(int64_t n, DType gdt, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> h(static_cast<size_t>(n));
    for (auto& v : h) {
      v = u(rng);
      if (gdt == DType::BF16) v = bf16_to_f32(f32_to_bf16(v));
      if (gdt == DType::F16) v = f16_to_f32(f32_to_f16(v));
    }
    return h;
  }

  Pair from_host(const std::vector<float>& h, Shape s, DType gdt) {
    Pair p;
    p.shape = s;
    p.c = cpu->alloc(s, DType::F32);
    p.g = gpu->alloc(s, gdt);
    cpu->upload(h.data(), DType::F32, p.c.t);
    gpu->upload(h.data(), DType::F32, p.g.t);
    return p;
  }

  Pair rnd(Shape s, DType gdt = DType::BF16, float lo = -1.f, float hi = 1.f) {
    return from_host(random_host(s.numel(), gdt, lo, hi), s, gdt);
  }

  // An output, poisoned with NaN on both sides.
  Pair out(Shape s, DType gdt = DType::BF16) {
    Pair p;
    p.shape = s;
    p.c = cpu->alloc(s, DType::F32);
    p.g = gpu->alloc(s, gdt);
    cpu->fill(p.c.t, kNaN);
    gpu->fill(p.g.t, kNaN);
    return p;
  }

  std::vector<float> get(Backend* be, const Tensor& t) {
    std::vector<float> h(size_t(t.numel()));
    be->download(t, h.data(), DType::F32);
    return h;
  }

  // ||gpu - cpu|| / ||cpu||; infinite if the GPU left any element unwritten (NaN) or non-finite.
  double compare(const std::vector<float>& c, const std::vector<float>& g, const std::string& name) {
    EXPECT_EQ(c.size(), g.size());
    double num = 0, den = 0;
    int64_t bad_gpu = 0, bad_cpu = 0, first_bad = -1;
    for (size_t i = 0; i < c.size(); ++i) {
      if (!std::isfinite(c[i])) {
        ++bad_cpu;
        continue;
      }
      if (!std::isfinite(g[i])) {
        if (first_bad < 0) first_bad = int64_t(i);
        ++bad_gpu;
        continue;
      }
      const double d = double(g[i]) - double(c[i]);
      num += d * d;
      den += double(c[i]) * double(c[i]);
    }
    EXPECT_EQ(bad_cpu, 0) << name << ": the CPU reference produced " << bad_cpu << " non-finite values";
    EXPECT_EQ(bad_gpu, 0) << name << ": CUDA left " << bad_gpu << " elements unwritten or non-finite (first at "
                          << first_bad << ")";
    double err = (bad_gpu || bad_cpu) ? std::numeric_limits<double>::infinity()
                                      : (den > 0 ? std::sqrt(num / den) : std::sqrt(num));
    double& slot = error_table()[name];
    slot = std::max(slot, err);
    return err;
  }

  double check(const Pair& p, const std::string& name, double tol = kTol) {
    double err = compare(get(cpu, p.c.t), get(gpu, p.g.t), name);
    EXPECT_LT(err, tol) << name << ": normalised error " << err << " (shape " << p.shape.str() << ")";
    return err;
  }

  // Rope tables (freqs, axes) and random positions [T, 3] in [0, max_pos] on both backends.
  struct RopeTables {
    OwnedTensor fc, fg, ac, ag, pc, pg;
    RopeSpec cpu, gpu;
  };
  RopeTables rope_tables(const std::vector<float>& freqs, const std::vector<int32_t>& axes, int64_t T, int max_pos) {
    std::vector<int32_t> pos(size_t(T) * 3);
    std::uniform_int_distribution<int> up(0, max_pos);
    for (auto& v : pos) v = up(rng);
    auto upload_both = [&](const void* h, DType dt, Shape s, OwnedTensor& oc, OwnedTensor& og) {
      oc = cpu->alloc(s, dt);
      og = gpu->alloc(s, dt);
      cpu->upload(h, dt, oc.t);
      gpu->upload(h, dt, og.t);
    };
    const int n = int(freqs.size());
    RopeTables r;
    upload_both(freqs.data(), DType::F32, Shape{n}, r.fc, r.fg);
    upload_both(axes.data(), DType::I32, Shape{n}, r.ac, r.ag);
    upload_both(pos.data(), DType::I32, Shape{T, 3}, r.pc, r.pg);
    r.cpu = RopeSpec{r.fc.t, r.ac.t, n};
    r.gpu = RopeSpec{r.fg.t, r.ag.t, n};
    return r;
  }

  Backend* cpu = nullptr;
  Backend* gpu = nullptr;
  std::mt19937 rng;
};

const Tensor kNone{};

// ---- backend basics ---------------------------------------------------------------------------------

TEST_F(CudaOps, DeviceInfoAndMemory) {
  EXPECT_EQ(gpu->name(), "cuda");
  EXPECT_EQ(gpu->device(), Device::CUDA);
  EXPECT_EQ(gpu->act_dtype(), DType::BF16);
  EXPECT_FALSE(gpu->device_name().empty());
  std::printf("device: %s\n", gpu->device_name().c_str());
  MemoryInfo before = gpu->memory_info();
  EXPECT_GT(before.device_total, size_t(0));
  {
    auto t = gpu->alloc(Shape{1 << 20}, DType::F32);
    EXPECT_GE(gpu->memory_info().allocated_by_engine, before.allocated_by_engine + (size_t(4) << 20));
  }
  EXPECT_EQ(gpu->memory_info().allocated_by_engine, before.allocated_by_engine);
  EXPECT_THROW(gpu->alloc_bytes(size_t(1) << 52), OutOfMemory);
  // The backend stays usable after a failed allocation.
  auto t = gpu->alloc(Shape{16}, DType::F32);
  gpu->fill(t.t, 2.f);
  std::vector<float> h(16);
  gpu->download(t.t, h.data(), DType::F32);
  for (float v : h) EXPECT_EQ(v, 2.f);
}

TEST_F(CudaOps, UploadDownloadConversions) {
  // Larger than one staging slot, so the chunked path runs.
  const int64_t n = (int64_t(9) << 20) / 2 + 77;
  std::vector<float> h = random_host(n, DType::F32, -4.f, 4.f);
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    auto t = gpu->alloc(Shape{n}, dt);
    gpu->upload(h.data(), DType::F32, t.t);
    std::vector<float> back(static_cast<size_t>(n));
    gpu->download(t.t, back.data(), DType::F32);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
      num += double(back[size_t(i)] - h[size_t(i)]) * (back[size_t(i)] - h[size_t(i)]);
      den += double(h[size_t(i)]) * h[size_t(i)];
    }
    const double err = std::sqrt(num / den);
    error_table()[std::string("upload/download ") + std::string(dtype_name(dt))] = err;
    EXPECT_LT(err, dt == DType::F32 ? 1e-7 : 4e-3) << dtype_name(dt);
    // Same-dtype round trip of raw bf16 bits.
    if (dt == DType::BF16) {
      std::vector<uint16_t> bits(static_cast<size_t>(n)), bits2(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) bits[size_t(i)] = f32_to_bf16(h[size_t(i)]);
      gpu->upload(bits.data(), DType::BF16, t.t);
      gpu->download(t.t, bits2.data(), DType::BF16);
      EXPECT_EQ(bits, bits2);
    }
  }
  std::vector<int32_t> ids = {3, -1, 7, 1 << 30};
  auto it = gpu->alloc(Shape{4}, DType::I32);
  gpu->upload(ids.data(), DType::I32, it.t);
  std::vector<int32_t> ids2(4);
  gpu->download(it.t, ids2.data(), DType::I32);
  EXPECT_EQ(ids, ids2);
}

TEST_F(CudaOps, ErrorsAreTyped) {
  auto q = gpu->alloc(Shape{8, 64}, DType::BF16);
  auto o = gpu->alloc(Shape{8, 32}, DType::BF16);
  EXPECT_THROW(gpu->attention(q.t, q.t, q.t, o.t, 1, 1, 64, 64, 1.f), ShapeError);
  auto hostside = cpu->alloc(Shape{8, 64}, DType::F32);
  EXPECT_THROW(gpu->copy(hostside.t, q.t), DeviceError);
}

// ---- data movement ----------------------------------------------------------------------------------

TEST_F(CudaOps, CopyAndConvert) {
  for (DType src : {DType::F32, DType::BF16, DType::F16})
    for (DType dst : {DType::F32, DType::BF16, DType::F16}) {
      Pair a = rnd(Shape{37, 129}, src, -3.f, 3.f);
      Pair b = out(Shape{37 * 129}, dst);
      cpu->copy(a.c.t, b.c.t);
      gpu->copy(a.g.t, b.g.t);
      check(b, "copy " + std::string(dtype_name(src)) + "->" + std::string(dtype_name(dst)));
    }
}

TEST_F(CudaOps, CopyRows) {
  Pair a = rnd(Shape{50, 96}, DType::F32);
  Pair b = rnd(Shape{3, 40, 96}, DType::BF16);
  cpu->copy_rows(a.c.t, 7, b.c.t, 60, 33);
  gpu->copy_rows(a.g.t, 7, b.g.t, 60, 33);
  check(b, "copy_rows");
}

TEST_F(CudaOps, CopyRowsColumnWindow) {
  // A column window of a wider tensor: a 2D memcpy between equal dtypes, the strided conversion
  // kernel between different ones (the chunk's rope key or values read out of a fused projection).
  for (DType src : {DType::BF16, DType::F32}) {
    Pair a = rnd(Shape{50, 992}, src);
    Pair b = rnd(Shape{40, 32}, DType::BF16);
    cpu->copy_rows(a.c.t, 5, b.c.t, 3, 30, 192);
    gpu->copy_rows(a.g.t, 5, b.g.t, 3, 30, 192);
    check(b, std::string("copy_rows column window ") + std::string(dtype_name(src)) + "->BF16",
          src == DType::BF16 ? 1e-30 : kTol);
  }
  Pair a = rnd(Shape{8, 30}, DType::BF16);
  Pair b = rnd(Shape{8, 16}, DType::BF16);
  EXPECT_THROW(gpu->copy_rows(a.g.t, 0, b.g.t, 0, 8, 20), ShapeError);  // past the last column
  EXPECT_THROW(gpu->copy_rows(a.g.t, 0, b.g.t, 0, 8), ShapeError);      // no window: widths must match
}

TEST_F(CudaOps, Fill) {
  for (float v : {0.f, -1.75f, 3.5f}) {
    Pair a = out(Shape{1000, 3}, DType::BF16);
    cpu->fill(a.c.t, v);
    gpu->fill(a.g.t, v);
    check(a, "fill", v == 0.f ? 1e-30 : kTol);
  }
}

TEST_F(CudaOps, ConcatHeads) {
  const int T = 75, H = 6, da = 40, db = 16;
  for (int hb : {1, H}) {
    Pair a = rnd(Shape{T, H * da});
    Pair b = rnd(Shape{T, hb * db}, DType::F32);
    Pair o = out(Shape{T, H * (da + db)});
    cpu->concat_heads(a.c.t, da, b.c.t, db, H, o.c.t);
    gpu->concat_heads(a.g.t, da, b.g.t, db, H, o.g.t);
    check(o, hb == 1 ? "concat_heads (shared b)" : "concat_heads (per-head b)");
  }
}

TEST_F(CudaOps, ConcatChannels) {
  Pair a = rnd(Shape{3, 64, 17, 19});
  Pair b = rnd(Shape{3, 32, 17, 19});
  Pair o = out(Shape{3, 96, 17, 19});
  cpu->concat_channels(a.c.t, b.c.t, o.c.t);
  gpu->concat_channels(a.g.t, b.g.t, o.g.t);
  check(o, "concat_channels");
}

// ---- elementwise ------------------------------------------------------------------------------------

TEST_F(CudaOps, Axpby) {
  Pair x = rnd(Shape{123, 77}, DType::F32);
  Pair y = rnd(Shape{123, 77}, DType::BF16);
  Pair o = out(Shape{123, 77}, DType::BF16);
  cpu->axpby(0.7f, x.c.t, -1.3f, y.c.t, o.c.t);
  gpu->axpby(0.7f, x.g.t, -1.3f, y.g.t, o.g.t);
  check(o, "axpby");
  // In place (out aliases x), and without y.
  cpu->axpby(2.f, x.c.t, 0.5f, y.c.t, x.c.t);
  gpu->axpby(2.f, x.g.t, 0.5f, y.g.t, x.g.t);
  check(x, "axpby (in place)");
  Pair o2 = out(Shape{123, 77}, DType::F32);
  cpu->axpby(-3.f, y.c.t, 0.f, kNone, o2.c.t);
  gpu->axpby(-3.f, y.g.t, 0.f, kNone, o2.g.t);
  check(o2, "axpby (no y)");
  // Four-element vector path (element count a multiple of 4), also in place.
  Pair x4 = rnd(Shape{64, 96}, DType::F32);
  Pair y4 = rnd(Shape{64, 96}, DType::BF16);
  Pair o4 = out(Shape{64, 96}, DType::BF16);
  cpu->axpby(0.7f, x4.c.t, -1.3f, y4.c.t, o4.c.t);
  gpu->axpby(0.7f, x4.g.t, -1.3f, y4.g.t, o4.g.t);
  check(o4, "axpby (vec4)");
  cpu->axpby(1.f, x4.c.t, 1.f, y4.c.t, x4.c.t);
  gpu->axpby(1.f, x4.g.t, 1.f, y4.g.t, x4.g.t);
  check(x4, "axpby (vec4, in place)");
}

TEST_F(CudaOps, Activations) {
  const std::pair<Activation, const char*> acts[] = {
      {Activation::None, "none"}, {Activation::GeluTanh, "gelu_tanh"}, {Activation::Silu, "silu"}, {Activation::Relu, "relu"}};
  for (auto [act, name] : acts) {
    Pair x = rnd(Shape{311, 64}, DType::BF16, -5.f, 5.f);
    Pair o = out(Shape{311, 64}, DType::BF16);
    cpu->activation(x.c.t, o.c.t, act);
    gpu->activation(x.g.t, o.g.t, act);
    check(o, std::string("activation ") + name);
  }
}

TEST_F(CudaOps, TanhClamp) {
  Pair x = rnd(Shape{4, 16, 20, 24}, DType::F32, -10.f, 10.f);
  Pair o = out(Shape{4, 16, 20, 24}, DType::BF16);
  cpu->tanh_clamp(x.c.t, o.c.t, 3.f);
  gpu->tanh_clamp(x.g.t, o.g.t, 3.f);
  check(o, "tanh_clamp");
}

TEST_F(CudaOps, AddModulation) {
  const int F = 3, D = 384, K = 6;
  Pair table = rnd(Shape{1, K, D}, DType::F32);
  for (int src_cols : {D, K * D}) {
    Pair src = rnd(Shape{F, src_cols}, DType::F32);
    Pair o = out(Shape{F, K * D}, DType::F32);
    cpu->add_modulation(src.c.t, table.c.t, o.c.t);
    gpu->add_modulation(src.g.t, table.g.t, o.g.t);
    check(o, src_cols == D ? "add_modulation [F, D]" : "add_modulation [F, K*D]");
  }
}

// ---- linear algebra ---------------------------------------------------------------------------------

TEST_F(CudaOps, Linear) {
  struct Case {
    int M, K, N;
    DType xt, wt, yt;
    bool bias;
    Activation act;
    const char* name;
  };
  const Case cases[] = {
      {300, 384, 1024, DType::BF16, DType::BF16, DType::BF16, true, Activation::GeluTanh, "linear bf16 bias gelu"},
      {257, 384, 384, DType::BF16, DType::BF16, DType::BF16, false, Activation::None, "linear bf16"},
      {64, 256, 2304, DType::BF16, DType::BF16, DType::F32, true, Activation::Silu, "linear bf16 -> f32 silu"},
      {100, 128, 384, DType::F32, DType::BF16, DType::BF16, true, Activation::Relu, "linear mixed f32 x bf16 w"},
      {33, 72, 50, DType::F32, DType::F32, DType::F32, true, Activation::None, "linear f32"},
      {45, 96, 80, DType::F32, DType::F32, DType::BF16, false, Activation::None, "linear f32 -> bf16"},
      {29, 64, 48, DType::F16, DType::F16, DType::BF16, true, Activation::None, "linear f16 -> bf16"},
      // Wan-like shapes through the fused (cuBLASLt epilogue) path: bf16 x and w, f32 bias.
      {1000, 1536, 1536, DType::BF16, DType::BF16, DType::BF16, true, Activation::None, "linear fused bias 1536"},
      {777, 1536, 2240, DType::BF16, DType::BF16, DType::BF16, true, Activation::GeluTanh, "linear fused bias gelu"},
      {130, 384, 200, DType::BF16, DType::BF16, DType::BF16, true, Activation::Relu, "linear fused bias relu"},
      {300, 1536, 64, DType::BF16, DType::BF16, DType::F32, true, Activation::None, "linear fused bias -> f32"},
  };
  for (const Case& c : cases) {
    Pair x = rnd(Shape{c.M, c.K}, c.xt);
    Pair w = rnd(Shape{c.N, c.K}, c.wt, -0.1f, 0.1f);
    Pair b = rnd(Shape{c.N}, DType::F32);
    Pair y = out(Shape{c.M, c.N}, c.yt);
    cpu->linear(x.c.t, w.c.t, c.bias ? b.c.t : kNone, y.c.t, c.act);
    gpu->linear(x.g.t, w.g.t, c.bias ? b.g.t : kNone, y.g.t, c.act);
    check(y, c.name);
  }
}

TEST_F(CudaOps, GemmBatched) {
  struct Case {
    bool ta, tb;
    DType at, bt, ct;
    float beta;
    const char* name;
  };
  const Case cases[] = {
      {false, false, DType::BF16, DType::BF16, DType::BF16, 0.f, "gemm_batched NN bf16"},
      {false, true, DType::BF16, DType::BF16, DType::F32, 0.5f, "gemm_batched NT bf16 beta"},
      {true, false, DType::BF16, DType::F32, DType::BF16, 0.f, "gemm_batched TN mixed"},
      {true, true, DType::F32, DType::F32, DType::F32, 1.f, "gemm_batched TT f32 beta"},
      {false, true, DType::F32, DType::F32, DType::BF16, 0.f, "gemm_batched NT f32 -> bf16"},
  };
  const int64_t M = 70, N = 56, K = 40, batch = 6, pad = 3;
  for (const Case& c : cases) {
    Backend::GemmBatched pc, pg;
    const int64_t ra = c.ta ? K : M, ca = c.ta ? M : K, rb = c.tb ? N : K, cb = c.tb ? K : N;
    const int64_t lda = ca + pad, ldb = cb, ldc = N + pad;
    const int64_t sa = ra * lda + 5, sb = rb * ldb, sc = M * ldc + 2;
    Pair A = rnd(Shape{batch * sa}, c.at);
    Pair B = rnd(Shape{batch * sb}, c.bt);
    Pair C = rnd(Shape{batch * sc}, c.ct);  // not poisoned: beta reads it and the gaps must survive
    for (auto* p : {&pc, &pg}) {
      p->transA = c.ta;
      p->transB = c.tb;
      p->M = M;
      p->N = N;
      p->K = K;
      p->lda = lda;
      p->ldb = ldb;
      p->ldc = ldc;
      p->strideA = sa;
      p->strideB = sb;
      p->strideC = sc;
      p->batch = batch;
      p->alpha = 0.75f;
      p->beta = c.beta;
    }
    pc.A = A.c.t;
    pc.B = B.c.t;
    pc.C = C.c.t;
    pg.A = A.g.t;
    pg.B = B.g.t;
    pg.C = C.g.t;
    cpu->gemm_batched(pc);
    gpu->gemm_batched(pg);
    check(C, c.name);
  }
}

// Wan-1.3B projections (4680 rows: a chunk of 3 frames of 1560 tokens) on the tuned cuBLASLt path:
// parity with the CPU, the same bits on every later call and on a second backend (the choice is
// process-wide), the backend's record of its choice, and the speed of the tuned algorithm against the
// heuristic's first (a backend made with VMLA_GEMM_TUNE=0), host-timed like the attention cases.
TEST_F(CudaOps, LinearTunedWanShapes) {
#ifdef VMLA_WITH_CUDA
  // Tuning is off by default (bit-exact runs); these backends switch it on (1) or keep it off (0).
  std::unique_ptr<Backend> tuned_be = cuda_backend_with("VMLA_GEMM_TUNE", "1"),
                           first = cuda_backend_with("VMLA_GEMM_TUNE", "0"),
                           second = cuda_backend_with("VMLA_GEMM_TUNE", "1");
  Backend* tb = tuned_be.get();
  auto record = [](Backend* be, int64_t M, int64_t N, int64_t K) {
    for (const CudaBackend::GemmTuning& t : dynamic_cast<CudaBackend&>(*be).gemm_tuning())
      if (t.M == M && t.N == N && t.K == K) return t;
    ADD_FAILURE() << "no tuning record for " << M << " x " << N << " x " << K;
    return CudaBackend::GemmTuning{};
  };
  struct Case {
    int M, K, N;
    Activation act;
    const char* name;
  };
  const Case cases[] = {{4680, 1536, 1536, Activation::None, "linear tuned Wan 4680x1536x1536 bias"},
                        {4680, 1536, 8960, Activation::GeluTanh, "linear tuned Wan 4680x1536x8960 bias gelu"}};
  for (const Case& c : cases) {
    Pair x = rnd(Shape{c.M, c.K});
    Pair w = rnd(Shape{c.N, c.K}, DType::BF16, -0.1f, 0.1f);
    Pair b = rnd(Shape{c.N}, DType::F32);
    Pair y = out(Shape{c.M, c.N});
    cpu->linear(x.c.t, w.c.t, b.c.t, y.c.t, c.act);
    tb->linear(x.g.t, w.g.t, b.g.t, y.g.t, c.act);  // the shape's first call: timing, then the real call
    const std::vector<float> ref = get(cpu, y.c.t), tuned = get(tb, y.g.t);
    EXPECT_LT(compare(ref, tuned, c.name), kTol) << c.name;
    // The inputs are device memory of the same device, so the other backends read them directly.
    OwnedTensor y1 = first->alloc(Shape{c.M, c.N}, DType::BF16), y2 = second->alloc(Shape{c.M, c.N}, DType::BF16);
    first->fill(y1.t, kNaN);
    second->fill(y2.t, kNaN);
    first->linear(x.g.t, w.g.t, b.g.t, y1.t, c.act);
    second->linear(x.g.t, w.g.t, b.g.t, y2.t, c.act);
    EXPECT_LT(compare(ref, get(first.get(), y1.t), std::string(c.name) + " (heuristic first)"), kTol) << c.name;
    EXPECT_TRUE(get(second.get(), y2.t) == tuned) << c.name << ": a second backend gave other bits";

    // Host-timed, tuned and heuristic-first in turn (so neither gains from the clock ramping up): the
    // best of 5 rounds of 10 calls each.
    auto time_us = [&](Backend* be, const Tensor& yt) {
      const int reps = 10;
      be->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) be->linear(x.g.t, w.g.t, b.g.t, yt, c.act);
      be->synchronize();
      return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
    };
    double us_tuned = std::numeric_limits<double>::infinity(), us_first = us_tuned;
    for (int round = 0; round < 5; ++round) {
      us_tuned = std::min(us_tuned, time_us(tb, y.g.t));
      us_first = std::min(us_first, time_us(first.get(), y1.t));
    }
    EXPECT_TRUE(get(tb, y.g.t) == tuned) << c.name << ": later calls gave other bits than the tuning call";

    const CudaBackend::GemmTuning t = record(tb, c.M, c.N, c.K), t1 = record(first.get(), c.M, c.N, c.K),
                                  t2 = record(second.get(), c.M, c.N, c.K);
    EXPECT_EQ(t1.chosen, 0);
    EXPECT_FALSE(t1.measured);
    EXPECT_EQ(t2.chosen, t.chosen);
    EXPECT_GE(t.candidates, 1);
    EXPECT_LT(t.chosen, std::max(t.candidates, 1));
    if (t.candidates > 1) {
      EXPECT_TRUE(t.measured) << c.name;
      if (t.first_us > 0) {
        EXPECT_LE(t.best_us, t.first_us);
      }
    }
    const double tflop = 2.0 * c.M * c.N * c.K * 1e-12;
    auto rate = [&](double us) { return us > 0 ? tflop / (us * 1e-6) : 0.0; };
    std::printf("%s: %d candidates (%d failed), chose %d; backend's timing: heuristic-first %.1f us (%.0f TFLOP/s) -> "
                "tuned %.1f us (%.0f TFLOP/s); host-timed (best of 5 x 10 calls): heuristic-first %.1f us (%.0f TFLOP/s), tuned "
                "%.1f us (%.0f TFLOP/s)\n",
                c.name, t.candidates, t.failed, t.chosen, t.first_us, rate(t.first_us), t.best_us, rate(t.best_us),
                us_first, rate(us_first), us_tuned, rate(us_tuned));
  }
  std::printf("%s\n", tb->diagnostics().c_str());
#else
  GTEST_SKIP() << "no CUDA build";
#endif
}

// ---- normalisation ----------------------------------------------------------------------------------

TEST_F(CudaOps, LayerNorm) {
  for (int D : {384, 1536, 40, 2100}) {  // 2100: wider than the one-warp-per-row kernel
    Pair x = rnd(Shape{200, D}, DType::F32, -2.f, 3.f);
    Pair w = rnd(Shape{D}, DType::BF16);
    Pair b = rnd(Shape{D}, DType::BF16);
    Pair y = out(Shape{200, D}, DType::BF16);
    cpu->layer_norm(x.c.t, w.c.t, b.c.t, y.c.t, 1e-5f);
    gpu->layer_norm(x.g.t, w.g.t, b.g.t, y.g.t, 1e-5f);
    check(y, "layer_norm affine");
    Pair y2 = out(Shape{200, D}, DType::BF16);
    cpu->layer_norm(x.c.t, kNone, kNone, y2.c.t, 1e-6f);
    gpu->layer_norm(x.g.t, kNone, kNone, y2.g.t, 1e-6f);
    check(y2, "layer_norm plain");
  }
}

TEST_F(CudaOps, RmsNorm) {
  for (int D : {40, 192, 384, 1536}) {
    Pair x = rnd(Shape{150, D}, DType::BF16, -2.f, 2.f);
    Pair w = rnd(Shape{D}, DType::BF16, 0.5f, 1.5f);
    Pair y = out(Shape{150, D}, DType::BF16);
    cpu->rms_norm(x.c.t, w.c.t, y.c.t, 1e-6f);
    gpu->rms_norm(x.g.t, w.g.t, y.g.t, 1e-6f);
    check(y, "rms_norm");
    // In place, no weight.
    cpu->rms_norm(x.c.t, kNone, x.c.t, 1e-6f);
    gpu->rms_norm(x.g.t, kNone, x.g.t, 1e-6f);
    check(x, "rms_norm (in place, no w)");
  }
}

TEST_F(CudaOps, RmsNormColumnWindow) {
  // y [T, D] = RMSNorm of the columns [col, col + D) of x [T, W]: the slices of the fused
  // projections' outputs (Wan MLA kv_norm and q_norm, Wan MHA norm_k, tiny MLA), then windows the
  // one-warp-per-row kernel cannot take (odd column, row stride not a multiple of 4, wide rows).
  struct Case {
    int64_t D, col, W;
  };
  for (Case c : {Case{192, 0, 992}, Case{768, 224, 992}, Case{1536, 1536, 4608}, Case{40, 0, 248}, Case{192, 56, 248},
                 Case{19, 3, 30}, Case{384, 2, 770}, Case{2100, 8, 2200}}) {
    Pair x = rnd(Shape{150, c.W}, DType::BF16, -2.f, 2.f);
    Pair w = rnd(Shape{c.D}, DType::BF16, 0.5f, 1.5f);
    Pair y = out(Shape{150, c.D}, DType::BF16);
    cpu->rms_norm(x.c.t, w.c.t, y.c.t, 1e-6f, c.col);
    gpu->rms_norm(x.g.t, w.g.t, y.g.t, 1e-6f, c.col);
    check(y, "rms_norm column window " + std::to_string(c.col) + "+" + std::to_string(c.D) + " of " + std::to_string(c.W));
  }
  Pair x = rnd(Shape{10, 30}, DType::BF16);
  Pair y = out(Shape{10, 16}, DType::BF16);
  EXPECT_THROW(gpu->rms_norm(x.g.t, kNone, y.g.t, 1e-6f, 20), ShapeError);  // past the last column
  EXPECT_THROW(gpu->rms_norm(x.g.t, kNone, y.g.t, 1e-6f), ShapeError);      // no window: widths must match
}

TEST_F(CudaOps, LnModulate) {
  const int F = 3, rows_per_frame = 64, D = 384;
  Pair x = rnd(Shape{F * rows_per_frame, D}, DType::F32, -3.f, 3.f);
  Pair mod = rnd(Shape{F, 6 * D}, DType::F32);
  for (auto [sh, sc] : {std::pair{0, 1}, std::pair{3, 4}}) {
    Pair y = out(Shape{F * rows_per_frame, D}, DType::BF16);
    cpu->ln_modulate(x.c.t, mod.c.t, sh, sc, rows_per_frame, y.c.t, 1e-6f);
    gpu->ln_modulate(x.g.t, mod.g.t, sh, sc, rows_per_frame, y.g.t, 1e-6f);
    check(y, "ln_modulate");
  }
}

TEST_F(CudaOps, GatedResidual) {
  const int F = 3, rows_per_frame = 48, D = 384;
  Pair mod = rnd(Shape{F, 6 * D}, DType::F32);
  for (int gate : {2, 5, -1}) {
    Pair x = rnd(Shape{F * rows_per_frame, D}, DType::F32, -3.f, 3.f);
    Pair y = rnd(Shape{F * rows_per_frame, D}, DType::BF16);
    cpu->gated_residual(x.c.t, y.c.t, mod.c.t, gate, rows_per_frame);
    gpu->gated_residual(x.g.t, y.g.t, gate >= 0 ? mod.g.t : kNone, gate, rows_per_frame);
    check(x, gate >= 0 ? "gated_residual" : "gated_residual (no gate)");
  }
}

// ---- attention --------------------------------------------------------------------------------------

TEST_F(CudaOps, Rope) {
  struct Case {
    int heads, head_stride, offset, npairs;
    const char* name;
  };
  // Dense MHA (tiny: head_dim 64, axis pairs 12/10/10) and the MLA rope part after the nope part.
  const Case cases[] = {{6, 64, 0, 32, "rope dense"},
                        {6, 64, 48, 8, "rope mla part"},
                        {1, 56, 40, 8, "rope shared key"},
                        {12, 128, 0, 64, "rope Wan dense"},
                        {1, 32, 0, 16, "rope Wan MLA shared key"}};
  for (const Case& c : cases) {
    const int T = 3 * 8 * 8;
    std::vector<float> freqs(size_t(c.npairs));
    std::vector<float> axes_f(size_t(c.npairs));
    for (int p = 0; p < c.npairs; ++p) {
      const int axis = p < c.npairs / 2 ? 0 : (p < 3 * c.npairs / 4 ? 1 : 2);
      axes_f[size_t(p)] = float(axis);
      freqs[size_t(p)] = std::pow(10000.f, -2.f * float(p % 8) / 24.f);
    }
    std::vector<int32_t> axes(axes_f.begin(), axes_f.end());
    const RopeTables rt = rope_tables(freqs, axes, T, 40);
    const RopeSpec &sc = rt.cpu, &sg = rt.gpu;
    const OwnedTensor &pc = rt.pc, &pg = rt.pg;
    Pair x = rnd(Shape{T, c.heads * c.head_stride}, DType::BF16, -2.f, 2.f);
    // Out of place (how the context is gathered): one fused pass where every column rotates, else
    // a copy and the in-place rotation. The source must come through untouched.
    Pair y = out(x.shape);
    const std::vector<float> x_before = get(gpu, x.g.t);
    cpu->rope_copy(x.c.t, y.c.t, c.heads, c.head_stride, c.offset, sc, pc.t);
    gpu->rope_copy(x.g.t, y.g.t, c.heads, c.head_stride, c.offset, sg, pg.t);
    check(y, std::string(c.name) + " (rope_copy)");
    EXPECT_TRUE(get(gpu, x.g.t) == x_before) << c.name << ": rope_copy changed its source";
    // From a column window of a wider tensor (a slice of a fused projection's output): the same
    // one-pass kernel with the source's row stride, or the strided copy and the rotation.
    const int64_t n = int64_t(c.heads) * c.head_stride;
    Pair wide = rnd(Shape{T, 24 + n + 40}, DType::BF16, -2.f, 2.f);
    Pair yw = out(x.shape);
    cpu->rope_copy(wide.c.t, yw.c.t, c.heads, c.head_stride, c.offset, sc, pc.t, 24);
    gpu->rope_copy(wide.g.t, yw.g.t, c.heads, c.head_stride, c.offset, sg, pg.t, 24);
    check(yw, std::string(c.name) + " (rope_copy, column window)");
    cpu->rope(x.c.t, c.heads, c.head_stride, c.offset, sc, pc.t);
    gpu->rope(x.g.t, c.heads, c.head_stride, c.offset, sg, pg.t);
    check(x, c.name);
    EXPECT_TRUE(get(gpu, x.g.t) == get(gpu, y.g.t)) << c.name << ": rope_copy and rope differ";
  }
}

TEST_F(CudaOps, RmsNormRope) {
#ifdef VMLA_WITH_CUDA
  // The MHA query (RMSNorm over the model width, then 3D rope per head) in one pass, against the
  // CPU op and against CUDA's two passes (VMLA_CUDA_FUSED_NORM_ROPE=0: rms_norm, then rope). Wan
  // (12 x 128, axes 44/42/42) and tiny (6 x 64, axes 24/20/20): the whole tensor, the q columns of
  // the fused [q | k | v], and an odd column the one-warp-per-row kernel cannot take; then heads of
  // 6 (a float4 holds the end of one head and the start of the next) and heads of 40 with 16 pairs
  // (columns left unrotated). 190 rows: not a whole number of 8-row blocks.
  std::unique_ptr<Backend> two = cuda_backend_with("VMLA_CUDA_FUSED_NORM_ROPE", "0");
  struct Case {
    int heads, hd, dims[3];
    int64_t col, W;
    const char* name;
  };
  const Case cases[] = {{12, 128, {44, 42, 42}, kAllColumns, 1536, "Wan"},
                        {12, 128, {44, 42, 42}, 0, 4608, "Wan, q of qkv"},
                        {12, 128, {44, 42, 42}, 3, 4608, "Wan, column 3"},
                        {6, 64, {24, 20, 20}, kAllColumns, 384, "tiny"},
                        {6, 64, {24, 20, 20}, 0, 1152, "tiny, q of qkv"},
                        {6, 64, {24, 20, 20}, 1, 1152, "tiny, column 1"},
                        {8, 6, {2, 2, 2}, kAllColumns, 48, "heads of 6"},
                        {4, 40, {12, 10, 10}, 8, 200, "16 of 20 pairs"}};
  const int64_t T = 190;
  for (const Case& c : cases) {
    const int64_t D = int64_t(c.heads) * c.hd;
    std::vector<float> freqs;
    std::vector<int32_t> axes;
    for (int a = 0; a < 3; ++a)
      for (int j = 0; j < c.dims[a] / 2; ++j) {
        freqs.push_back(std::pow(10000.f, -2.f * float(j) / float(c.dims[a])));
        axes.push_back(a);
      }
    const RopeTables rt = rope_tables(freqs, axes, T, 60);
    Pair x = rnd(Shape{T, c.W}, DType::BF16, -2.f, 2.f);
    Pair w = rnd(Shape{D}, DType::BF16, 0.5f, 1.5f);
    Pair y = out(Shape{T, D});
    cpu->rms_norm_rope(x.c.t, w.c.t, y.c.t, 1e-6f, c.heads, c.hd, rt.cpu, rt.pc.t, c.col);
    gpu->rms_norm_rope(x.g.t, w.g.t, y.g.t, 1e-6f, c.heads, c.hd, rt.gpu, rt.pg.t, c.col);
    check(y, std::string("rms_norm_rope ") + c.name);
    // The two passes round to bf16 in between; the one pass rounds once.
    OwnedTensor y2 = gpu->alloc(Shape{T, D}, DType::BF16);
    gpu->fill(y2.t, kNaN);
    gpu->synchronize();
    two->rms_norm_rope(x.g.t, w.g.t, y2.t, 1e-6f, c.heads, c.hd, rt.gpu, rt.pg.t, c.col);
    two->synchronize();
    const double err = compare(get(gpu, y2.t), get(gpu, y.g.t), std::string("rms_norm_rope one vs two passes ") + c.name);
    EXPECT_LT(err, kTol) << c.name;
  }
  // A Wan chunk's queries (3 latent frames of 30 x 52 tokens, the q columns of qkv): one pass
  // against two, timed (printed; the A/B of the whole pass is videomla bench with the switch).
  const int64_t Tw = 4680, Dw = 1536;
  std::vector<float> freqs;
  std::vector<int32_t> axes;
  for (int a = 0; a < 3; ++a)
    for (int j = 0; j < (a == 0 ? 22 : 21); ++j) {
      freqs.push_back(std::pow(10000.f, -2.f * float(j) / float(a == 0 ? 44 : 42)));
      axes.push_back(a);
    }
  std::vector<int32_t> pos(size_t(Tw) * 3);
  for (int64_t t = 0; t < Tw; ++t) {
    pos[size_t(t * 3)] = int32_t(6 + t / 1560);
    pos[size_t(t * 3 + 1)] = int32_t(t % 1560 / 52);
    pos[size_t(t * 3 + 2)] = int32_t(t % 52);
  }
  OwnedTensor fr = gpu->alloc(Shape{64}, DType::F32), ax = gpu->alloc(Shape{64}, DType::I32);
  OwnedTensor ps = gpu->alloc(Shape{Tw, 3}, DType::I32);
  gpu->upload(freqs.data(), DType::F32, fr.t);
  gpu->upload(axes.data(), DType::I32, ax.t);
  gpu->upload(pos.data(), DType::I32, ps.t);
  const RopeSpec spec{fr.t, ax.t, 64};
  const std::vector<float> hx = random_host(Tw * 3 * Dw, DType::BF16, -2.f, 2.f);
  OwnedTensor qkv = gpu->alloc(Shape{Tw, 3 * Dw}, DType::BF16), nw = gpu->alloc(Shape{Dw}, DType::BF16);
  OwnedTensor q = gpu->alloc(Shape{Tw, Dw}, DType::BF16);
  gpu->upload(hx.data(), DType::F32, qkv.t);
  gpu->fill(nw.t, 1.f);
  double ms[2] = {0, 0};
  Backend* bes[2] = {gpu, two.get()};
  for (int b = 0; b < 2; ++b) {
    Backend* be = bes[b];
    gpu->synchronize();
    be->rms_norm_rope(qkv.t, nw.t, q.t, 1e-6f, 12, 128, spec, ps.t, 0);
    be->synchronize();
    const int reps = 50;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) be->rms_norm_rope(qkv.t, nw.t, q.t, 1e-6f, 12, 128, spec, ps.t, 0);
    be->synchronize();
    ms[b] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
  }
  const double gb = 2.0 * double(Tw) * double(Dw) * 2.0 * 1e-9;  // one read of q and one write, bf16
  std::printf("rms_norm_rope Wan query %lld x %lld: one pass %.4f ms (%.0f GB/s), two passes %.4f ms, %.2fx\n",
              static_cast<long long>(Tw), static_cast<long long>(Dw), ms[0], gb / ms[0] * 1e3, ms[1], ms[1] / ms[0]);
#else
  GTEST_SKIP() << "no CUDA build";
#endif
}

struct AttnCase {
  int64_t Tq, Tk;
  int heads, kv_heads, dk, dv;
  const char* name;
  int64_t check_rows;  // 0: every query row; else that many rows spread over Tq (large cases)
  DType dt = DType::BF16;  // q, k, v and out on the GPU (bf16: the tensor-core kernel where it applies)
};

class CudaAttention : public CudaOps, public ::testing::WithParamInterface<AttnCase> {};

TEST_P(CudaAttention, MatchesCpu) {
  const AttnCase& c = GetParam();
  const float scale = 1.f / std::sqrt(float(c.dk));
  // Scores of a few units: a peaked softmax, which a near-uniform one would not test.
  const float qr = 3.f;
  std::vector<float> hq = random_host(c.Tq * c.heads * c.dk, c.dt, -qr, qr);
  std::vector<float> hk = random_host(c.Tk * c.kv_heads * c.dk, c.dt, -1.f, 1.f);
  std::vector<float> hv = random_host(c.Tk * c.kv_heads * c.dv, c.dt, -1.f, 1.f);

  OwnedTensor q = gpu->alloc(Shape{c.Tq, c.heads * c.dk}, c.dt);
  OwnedTensor k = gpu->alloc(Shape{c.Tk, c.kv_heads * c.dk}, c.dt);
  OwnedTensor v = gpu->alloc(Shape{c.Tk, c.kv_heads * c.dv}, c.dt);
  OwnedTensor o = gpu->alloc(Shape{c.Tq, c.heads * c.dv}, c.dt);
  gpu->upload(hq.data(), DType::F32, q.t);
  gpu->upload(hk.data(), DType::F32, k.t);
  gpu->upload(hv.data(), DType::F32, v.t);
  gpu->fill(o.t, kNaN);
  gpu->attention(q.t, k.t, v.t, o.t, c.heads, c.kv_heads, c.dk, c.dv, scale);
  std::vector<float> go = get(gpu, o.t);

  if (c.check_rows) {
    // Speed, for the record (host clock around synchronised repetitions, after the run above).
    const int reps = 10;
    gpu->synchronize();
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) gpu->attention(q.t, k.t, v.t, o.t, c.heads, c.kv_heads, c.dk, c.dv, scale);
    gpu->synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    const double flop = 2.0 * double(c.Tq) * double(c.Tk) * c.heads * (c.dk + c.dv);
    std::printf("%s: %.2f ms, %.1f TFLOP/s\n", c.name, s * 1e3, flop / s * 1e-12);
  }

  // CPU reference over the checked query rows (all of them for the small cases).
  std::vector<int64_t> rows;
  if (c.check_rows == 0) {
    for (int64_t i = 0; i < c.Tq; ++i) rows.push_back(i);
  } else {
    for (int64_t i = 0; i < c.check_rows; ++i) rows.push_back(i * (c.Tq - 1) / (c.check_rows - 1));
  }
  const int64_t R = int64_t(rows.size());
  std::vector<float> hq_sub(size_t(R * c.heads * c.dk));
  for (int64_t r = 0; r < R; ++r)
    std::copy_n(hq.begin() + rows[size_t(r)] * c.heads * c.dk, c.heads * c.dk, hq_sub.begin() + r * c.heads * c.dk);
  OwnedTensor cq = cpu->alloc(Shape{R, c.heads * c.dk}, DType::F32);
  OwnedTensor ck = cpu->alloc(Shape{c.Tk, c.kv_heads * c.dk}, DType::F32);
  OwnedTensor cv = cpu->alloc(Shape{c.Tk, c.kv_heads * c.dv}, DType::F32);
  OwnedTensor co = cpu->alloc(Shape{R, c.heads * c.dv}, DType::F32);
  cpu->upload(hq_sub.data(), DType::F32, cq.t);
  cpu->upload(hk.data(), DType::F32, ck.t);
  cpu->upload(hv.data(), DType::F32, cv.t);
  cpu->fill(co.t, kNaN);
  cpu->attention(cq.t, ck.t, cv.t, co.t, c.heads, c.kv_heads, c.dk, c.dv, scale);
  std::vector<float> ref = get(cpu, co.t);

  std::vector<float> go_sub(size_t(R * c.heads * c.dv));
  for (int64_t r = 0; r < R; ++r)
    std::copy_n(go.begin() + rows[size_t(r)] * c.heads * c.dv, c.heads * c.dv, go_sub.begin() + r * c.heads * c.dv);
  const double err = compare(ref, go_sub, c.name);
  EXPECT_LT(err, kTol) << c.name;
  // Unwritten elements outside the checked rows.
  if (c.check_rows) {
    int64_t nan = 0;
    for (float x : go) nan += !std::isfinite(x);
    EXPECT_EQ(nan, 0) << c.name << ": elements left unwritten";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(AttnCase{192, 640, 6, 6, 64, 64, "attention MHA 192x640 h6 d64", 0, DType::BF16},
                      AttnCase{192, 640, 6, 1, 56, 40, "attention MQA dk56 dv40", 0, DType::BF16},
                      AttnCase{130, 1000, 12, 1, 224, 192, "attention MQA dk224 dv192", 0, DType::BF16},
                      AttnCase{97, 32, 6, 6, 64, 64, "attention cross 97x32", 0, DType::BF16},
                      AttnCase{33, 7, 4, 1, 256, 256, "attention MQA d256 tiny Tk", 0, DType::BF16},
                      AttnCase{4680, 10920, 12, 12, 128, 128, "attention large 4680x10920 h12 d128", 64, DType::BF16},
                      // Wan-1.3B at a full window (sink 1 + window 6 + chunk 3 frames of 1560 tokens).
                      AttnCase{4680, 15600, 12, 12, 128, 128, "attention Wan MHA 4680x15600 d128", 64, DType::BF16},
                      AttnCase{4680, 15600, 12, 1, 224, 192, "attention Wan absorbed 4680x15600 dk224 dv192", 32,
                               DType::BF16},
                      AttnCase{4680, 512, 12, 12, 128, 128, "attention Wan cross 4680x512 d128", 64, DType::BF16},
                      // Odd sizes: partial query and key tiles, padded head dims, one key.
                      AttnCase{20, 20, 8, 8, 16, 16, "attention text encoder d16", 0, DType::BF16},
                      AttnCase{1, 1, 2, 2, 64, 64, "attention 1 query 1 key", 0, DType::BF16},
                      AttnCase{77, 65, 3, 1, 128, 128, "attention MQA d128 77x65", 0, DType::BF16},
                      AttnCase{100, 300, 6, 6, 128, 128, "attention MHA d128 100x300", 0, DType::BF16},
                      AttnCase{150, 333, 4, 4, 40, 24, "attention padded dk40 dv24", 0, DType::BF16},
                      // Fallbacks to the simple kernel: fp32 storage, a head dim that is no multiple of 8.
                      AttnCase{64, 100, 2, 2, 64, 64, "attention f32 (simple kernel)", 0, DType::F32},
                      AttnCase{50, 70, 2, 2, 60, 60, "attention bf16 d60 (simple kernel)", 0, DType::BF16}),
    [](const ::testing::TestParamInfo<AttnCase>& i) { return "case" + std::to_string(i.index); });

// The Hopper (wgmma) kernel against the mma.sync kernel on the same inputs, and the time of each in
// the same run: the attention A/B of issue 5. A second backend with VMLA_CUDA_SM90_ATTENTION=0 runs
// the mma.sync kernel. Only where the wgmma kernel runs (sm_90).
TEST_F(CudaOps, Sm90AttentionMatchesMmaKernel) {
#ifdef VMLA_WITH_CUDA
  if (!kernels::sm90_attention_available()) GTEST_SKIP() << "not an sm_90 device: the wgmma kernel does not run";
  std::unique_ptr<Backend> mma = cuda_backend_with("VMLA_CUDA_SM90_ATTENTION", "0");
  struct Case {
    int64_t Tq, Tk;
    int heads, kv_heads;
    const char* name;
  };
  const Case cases[] = {{4680, 15600, 12, 12, "Wan self 4680x15600 h12"},
                        {4680, 4680, 12, 12, "Wan first chunk 4680x4680 h12"},
                        {4680, 512, 12, 12, "Wan cross 4680x512 h12"},
                        {300, 1000, 3, 1, "MQA 300x1000 (heads folded into rows)"},
                        {129, 257, 2, 2, "partial tiles 129x257"}};
  for (const Case& c : cases) {
    const int d = 128;
    const float scale = 1.f / std::sqrt(float(d));
    std::vector<float> hq = random_host(c.Tq * c.heads * d, DType::BF16, -3.f, 3.f);
    std::vector<float> hk = random_host(c.Tk * c.kv_heads * d, DType::BF16, -1.f, 1.f);
    std::vector<float> hv = random_host(c.Tk * c.kv_heads * d, DType::BF16, -1.f, 1.f);
    double ms[2] = {0, 0};
    std::vector<float> res[2];
    Backend* bes[2] = {gpu, mma.get()};
    for (int b = 0; b < 2; ++b) {
      Backend* be = bes[b];
      OwnedTensor q = be->alloc(Shape{c.Tq, c.heads * d}, DType::BF16);
      OwnedTensor k = be->alloc(Shape{c.Tk, c.kv_heads * d}, DType::BF16);
      OwnedTensor v = be->alloc(Shape{c.Tk, c.kv_heads * d}, DType::BF16);
      OwnedTensor o = be->alloc(Shape{c.Tq, c.heads * d}, DType::BF16);
      be->upload(hq.data(), DType::F32, q.t);
      be->upload(hk.data(), DType::F32, k.t);
      be->upload(hv.data(), DType::F32, v.t);
      be->fill(o.t, kNaN);
      be->attention(q.t, k.t, v.t, o.t, c.heads, c.kv_heads, d, d, scale);
      res[b] = get(be, o.t);
      const int reps = 10;
      be->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) be->attention(q.t, k.t, v.t, o.t, c.heads, c.kv_heads, d, d, scale);
      be->synchronize();
      ms[b] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    }
    const double err = compare(res[1], res[0], std::string("attention sm90 vs mma: ") + c.name);
    EXPECT_LT(err, kTol) << c.name;
    const double flop = 4.0 * double(c.Tq) * double(c.Tk) * c.heads * d;
    std::printf("%-40s wgmma %.3f ms (%.0f TFLOP/s)  mma.sync %.3f ms (%.0f TFLOP/s)  %.2fx\n", c.name, ms[0],
                flop / ms[0] * 1e-9, ms[1], flop / ms[1] * 1e-9, ms[1] / ms[0]);
  }
#else
  GTEST_SKIP() << "no CUDA build";
#endif
}

// ---- video layout -----------------------------------------------------------------------------------

TEST_F(CudaOps, PatchifyUnpatchify) {
  const int F = 3, C = 16, H = 16, W = 20, ph = 2, pw = 2;
  Pair x = rnd(Shape{F, C, H, W}, DType::F32);
  Pair t = out(Shape{F * (H / ph) * (W / pw), C * ph * pw}, DType::BF16);
  cpu->patchify(x.c.t, ph, pw, t.c.t);
  gpu->patchify(x.g.t, ph, pw, t.g.t);
  check(t, "patchify");
  Pair tok = rnd(Shape{F * (H / ph) * (W / pw), ph * pw * C}, DType::BF16);
  Pair y = out(Shape{F, C, H, W}, DType::F32);
  cpu->unpatchify(tok.c.t, ph, pw, y.c.t);
  gpu->unpatchify(tok.g.t, ph, pw, y.g.t);
  check(y, "unpatchify");
}

TEST_F(CudaOps, Conv2d) {
  struct Case {
    int N, Cin, Cout, H, W, k, stride, pad;
    bool bias;
    Activation act;
    DType xt, yt;
    const char* name;
  };
  const Case cases[] = {
      {3, 64, 64, 32, 32, 3, 1, 1, true, Activation::Relu, DType::BF16, DType::BF16, "conv2d 3x3 s1 relu"},
      {2, 16, 128, 128, 128, 3, 1, 1, true, Activation::None, DType::BF16, DType::BF16, "conv2d 3x3 16->128 128px"},
      {2, 128, 64, 33, 31, 3, 2, 1, false, Activation::None, DType::BF16, DType::F32, "conv2d 3x3 s2"},
      {4, 64, 128, 16, 16, 1, 1, 0, false, Activation::None, DType::BF16, DType::BF16, "conv2d 1x1"},
      {2, 32, 3, 40, 24, 3, 1, 1, true, Activation::None, DType::F32, DType::F32, "conv2d 3x3 f32 x to rgb"},
  };
  for (const Case& c : cases) {
    Pair x = rnd(Shape{c.N, c.Cin, c.H, c.W}, c.xt);
    const float ws = 1.f / std::sqrt(float(c.Cin * c.k * c.k));
    Pair w = rnd(Shape{c.Cout, c.Cin, c.k, c.k}, DType::BF16, -ws, ws);
    Pair b = rnd(Shape{c.Cout}, DType::BF16);
    const int Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1, Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    Pair y = out(Shape{c.N, c.Cout, Ho, Wo}, c.yt);
    cpu->conv2d(x.c.t, w.c.t, c.bias ? b.c.t : kNone, y.c.t, c.stride, c.pad, c.act);
    gpu->conv2d(x.g.t, w.g.t, c.bias ? b.g.t : kNone, y.g.t, c.stride, c.pad, c.act);
    check(y, c.name);
  }
}

TEST_F(CudaOps, Upsample2x) {
  Pair x = rnd(Shape{2, 24, 13, 17}, DType::BF16);
  Pair y = out(Shape{2, 24, 26, 34}, DType::BF16);
  cpu->upsample2x(x.c.t, y.c.t);
  gpu->upsample2x(x.g.t, y.g.t);
  check(y, "upsample2x");
}

TEST_F(CudaOps, Embedding) {
  const int V = 500, D = 128, n = 300;  // more ids than one launch carries
  Pair table = rnd(Shape{V, D}, DType::BF16);
  std::vector<int32_t> ids(n);
  std::uniform_int_distribution<int> u(0, V - 1);
  for (auto& i : ids) i = u(rng);
  Pair o = out(Shape{n, D}, DType::BF16);
  cpu->embedding(table.c.t, ids.data(), n, o.c.t);
  gpu->embedding(table.g.t, ids.data(), n, o.g.t);
  check(o, "embedding");
  int32_t bad = V;
  EXPECT_ANY_THROW(gpu->embedding(table.g.t, &bad, 1, o.g.t.rows_slice(0, 1)));
}

TEST_F(CudaOps, ToRgb8) {
  const int F = 4, H = 24, W = 40;
  Pair x = rnd(Shape{F, 3, H, W}, DType::F32, -0.2f, 1.2f);
  OwnedTensor rc = cpu->alloc(Shape{F, H, W, 3}, DType::U8);
  OwnedTensor rg = gpu->alloc(Shape{F, H, W, 3}, DType::U8);
  gpu->fill(rg.t, 7.f);  // a poison value; the CPU reference's U8 output is not poisoned
  cpu->to_rgb8(x.c.t, rc.t);
  gpu->to_rgb8(x.g.t, rg.t);
  std::vector<uint8_t> hc(size_t(rc.t.numel())), hg(hc.size());
  cpu->download(rc.t, hc.data(), DType::U8);
  gpu->download(rg.t, hg.data(), DType::U8);
  int maxdiff = 0;
  for (size_t i = 0; i < hc.size(); ++i) maxdiff = std::max(maxdiff, std::abs(int(hc[i]) - int(hg[i])));
  error_table()["to_rgb8 (max abs diff, levels)"] = maxdiff;
  EXPECT_LE(maxdiff, 1);
}

}  // namespace
}  // namespace vmla
