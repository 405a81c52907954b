// The CPU backend: fp32 reference for every op. This file checks shapes and dtypes, converts
// non-F32 operands, and runs the elementwise, norm and layout ops; GEMM-based kernels live in
// cpu_gemm.cpp, attention and RoPE in cpu_attention.cpp.
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/backend/cpu/cpu_kernels.h"
#include "core/backend/cpu/cpu_math.h"
#include "core/backend/cpu/thread_pool.h"
#include "core/tensor/backend.h"

namespace vmla {
namespace cpu {
namespace {

// ---- errors and checks ----------------------------------------------------------------------

[[noreturn]] void fail(const char* op, const std::string& msg) {
  throw ShapeError(std::string("cpu ") + op + ": " + msg);
}

std::string desc(const char* name, const Tensor& t) {
  return std::string(name) + " " + t.shape.str() + " " + std::string(dtype_name(t.dtype));
}

// A tensor this backend can read: on the host, and with memory unless it has no elements.
void check_host(const char* op, const char* name, const Tensor& t) {
  if (t.device != Device::CPU)
    throw DeviceError(std::string("cpu ") + op + ": " + name + " " + t.shape.str() +
                      " lives on a CUDA device; the CPU backend only reads host tensors");
  if (t.data == nullptr && t.numel() > 0) fail(op, std::string(name) + " " + t.shape.str() + " has no memory");
}

void need_float(const char* op, const char* name, const Tensor& t) {
  check_host(op, name, t);
  if (!is_float(t.dtype)) fail(op, desc(name, t) + ": expected a float tensor (F32, F16 or BF16)");
}

void need_dtype(const char* op, const char* name, const Tensor& t, DType dt) {
  check_host(op, name, t);
  if (t.dtype != dt)
    fail(op, desc(name, t) + ": expected dtype " + std::string(dtype_name(dt)));
}

bool present(const Tensor& t) { return t.data != nullptr; }

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!present(a) || !present(b)) return false;
  auto a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
  return a0 < b0 + b.bytes() && b0 < a0 + a.bytes();
}

void no_overlap(const char* op, const char* oname, const Tensor& out, const char* iname, const Tensor& in) {
  if (overlaps(out, in)) fail(op, desc(oname, out) + " overlaps the input " + desc(iname, in));
}

// The first column of `t` that an op reads for `width` columns, given its column-window argument
// (core/tensor/backend.h): kAllColumns needs t to be `width` wide.
int64_t window_col(const char* op, const std::string& shapes, const char* name, const Tensor& t, int64_t col,
                   int64_t width) {
  if (col == kAllColumns) {
    if (t.cols() != width) fail(op, shapes + ": " + name + " must have " + std::to_string(width) + " columns");
    return 0;
  }
  if (col < 0 || col + width > t.cols())
    fail(op, shapes + ": columns [" + std::to_string(col) + ", " + std::to_string(col + width) + ") outside " + name);
  return col;
}

// ---- dtype conversion ---------------------------------------------------------------------------

void load_f32(const void* src, DType dt, float* dst, int64_t n) {
  switch (dt) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::F16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
    } break;
    case DType::BF16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
    } break;
    case DType::I32: {
      auto s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
    } break;
    case DType::U8: {
      auto s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
    } break;
    case DType::I8: {
      auto s = static_cast<const int8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
    } break;
  }
}

// Integers: round to nearest (even), saturate, NaN -> 0.
void store_f32(const float* src, void* dst, DType dt, int64_t n) {
  switch (dt) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::F16: {
      auto d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
    } break;
    case DType::BF16: {
      auto d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
    } break;
    case DType::I32: {
      auto d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        float v = src[i];
        d[i] = std::isnan(v) ? 0 : v >= 2147483520.0f ? INT32_MAX : v <= -2147483648.0f ? INT32_MIN : int32_t(std::nearbyint(v));
      }
    } break;
    case DType::U8: {
      auto d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        float v = src[i];
        d[i] = std::isnan(v) ? 0 : v >= 255.0f ? 255 : v <= 0.0f ? 0 : uint8_t(std::nearbyint(v));
      }
    } break;
    case DType::I8: {
      auto d = static_cast<int8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) {
        float v = src[i];
        d[i] = std::isnan(v) ? 0 : v >= 127.0f ? 127 : v <= -128.0f ? -128 : int8_t(std::nearbyint(v));
      }
    } break;
  }
}

// n elements from src (sd) to dst (dd); exact between equal dtypes and between integer types.
void convert(ThreadPool& pool, const void* src, DType sd, void* dst, DType dd, int64_t n) {
  if (n <= 0) return;
  if (sd == dd) {
    std::memmove(dst, src, size_t(n) * dtype_size(sd));
    return;
  }
  const size_t ss = dtype_size(sd), ds = dtype_size(dd);
  if (sd == DType::I32 && dd == DType::U8) {
    auto s = static_cast<const int32_t*>(src);
    auto d = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = uint8_t(std::clamp<int32_t>(s[i], 0, 255));
    return;
  }
  if (sd == DType::U8 && dd == DType::I32) {
    auto s = static_cast<const uint8_t*>(src);
    auto d = static_cast<int32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  constexpr int64_t kChunk = 4096;
  pool.parallel_for((n + kChunk - 1) / kChunk, 16, [&](int64_t c0, int64_t c1) {
    float tmp[kChunk];
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kChunk, m = std::min(kChunk, n - i0);
      load_f32(static_cast<const char*>(src) + size_t(i0) * ss, sd, tmp, m);
      store_f32(tmp, static_cast<char*>(dst) + size_t(i0) * ds, dd, m);
    }
  });
}

// n elements from src (sd) to dst (dd) on the calling thread, through fp32 unless the dtypes match
// (one row of a strided copy; the caller parallelises over rows).
void convert_serial(const void* src, DType sd, void* dst, DType dd, int64_t n) {
  if (sd == dd) {
    std::memcpy(dst, src, size_t(n) * dtype_size(sd));
    return;
  }
  constexpr int64_t kChunk = 1024;
  float tmp[kChunk];
  const size_t ss = dtype_size(sd), ds = dtype_size(dd);
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t m = std::min(kChunk, n - i0);
    load_f32(static_cast<const char*>(src) + size_t(i0) * ss, sd, tmp, m);
    store_f32(tmp, static_cast<char*>(dst) + size_t(i0) * ds, dd, m);
  }
}

// ---- fp32 views of float operands --------------------------------------------------------------

// Read-only F32 view: the tensor itself when F32, else a converted copy. Null for absent tensors.
class In {
 public:
  In(ThreadPool& pool, const Tensor& t) {
    if (!present(t)) return;
    if (t.dtype == DType::F32) {
      p_ = t.ptr<const float>();
    } else {
      tmp_.resize(size_t(t.numel()));
      convert(pool, t.data, t.dtype, tmp_.data(), DType::F32, t.numel());
      p_ = tmp_.data();
    }
  }
  const float* get() const { return p_; }

 private:
  const float* p_ = nullptr;
  std::vector<float> tmp_;
};

// Writable F32 view of an output: the tensor itself when F32, else a scratch copy that commit()
// converts back. `load` fills the scratch with the current contents (in-place ops).
class Out {
 public:
  Out(ThreadPool& pool, const Tensor& t, bool load) : pool_(pool), t_(t) {
    if (t.dtype == DType::F32) {
      p_ = t.ptr<float>();
    } else {
      tmp_.resize(size_t(t.numel()));
      if (load) convert(pool, t.data, t.dtype, tmp_.data(), DType::F32, t.numel());
      p_ = tmp_.data();
    }
  }
  float* get() const { return p_; }
  void commit() {
    if (t_.dtype != DType::F32) convert(pool_, tmp_.data(), DType::F32, t_.data, t_.dtype, t_.numel());
  }

 private:
  ThreadPool& pool_;
  Tensor t_;
  float* p_ = nullptr;
  std::vector<float> tmp_;
};

// ---- row helpers ---------------------------------------------------------------------------------

// Mean and 1/sqrt(var + eps) of one row; two passes with double partial sums.
void row_moments(const float* x, int64_t n, float eps, float& mean, float& rstd) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += x[i + j];
  for (; i < n; ++i) s[0] += x[i];
  const double mu = ((s[0] + s[1]) + (s[2] + s[3])) / double(n);
  double v[4] = {0, 0, 0, 0};
  i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) {
      const double d = double(x[i + j]) - mu;
      v[j] += d * d;
    }
  for (; i < n; ++i) {
    const double d = double(x[i]) - mu;
    v[0] += d * d;
  }
  const double var = ((v[0] + v[1]) + (v[2] + v[3])) / double(n);
  mean = float(mu);
  rstd = float(1.0 / std::sqrt(var + double(eps)));
}

float row_rstd_rms(const float* x, int64_t n, float eps) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) s[j] += double(x[i + j]) * double(x[i + j]);
  for (; i < n; ++i) s[0] += double(x[i]) * double(x[i]);
  const double ms = ((s[0] + s[1]) + (s[2] + s[3])) / double(n);
  return float(1.0 / std::sqrt(ms + double(eps)));
}

// Rows per parallel chunk so that one chunk is at least ~16k elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }
constexpr int64_t kElemGrain = 32768;

std::string read_cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      if (c != std::string::npos) {
        std::string s = line.substr(c + 1);
        s.erase(0, s.find_first_not_of(" \t"));
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
        if (!s.empty()) return s;
      }
    }
  }
  return "unknown CPU";
}

size_t mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

size_t mem_total_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : 0;
}

std::string human_bytes(size_t b) {
  std::ostringstream s;
  s.precision(3);
  if (b >= (size_t(1) << 30))
    s << double(b) / double(size_t(1) << 30) << " GiB";
  else if (b >= (size_t(1) << 20))
    s << double(b) / double(size_t(1) << 20) << " MiB";
  else
    s << b << " bytes";
  return s.str();
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

// ---- the backend ---------------------------------------------------------------------------------

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads > 0 ? threads : default_threads()) {
    // GEMMs are split over our own pool (one OpenBLAS call per thread), so OpenBLAS must not
    // start threads of its own on top: 2 x 2 threads on 2 cores thrash.
    openblas_set_num_threads(1);
    choose_blas_core();  // the kernels of this CPU's vector features, not a generic fallback
    name_ = read_cpu_model() + " (" + std::to_string(pool_.size()) + " threads, OpenBLAS " + blas_core() + ")";
  }

  std::string name() const override { return "cpu"; }
  std::string device_name() const override { return name_; }
  Device device() const override { return Device::CPU; }
  DType act_dtype() const override { return DType::F32; }
  MemoryInfo memory_info() const override {
    MemoryInfo m;
    m.device_total = mem_total_bytes();
    size_t avail = mem_available_bytes();
    m.device_used = m.device_total > avail && avail ? m.device_total - avail : 0;
    m.allocated_by_engine = allocated_.load(std::memory_order_relaxed);
    return m;
  }

  // ---- memory ---------------------------------------------------------------------------------
  Buffer alloc_bytes(size_t bytes) override {
    constexpr size_t kAlign = 64;
    const size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) & ~(kAlign - 1);
    const size_t total = mem_total_bytes();
    void* p = (rounded < bytes || (total && rounded > total)) ? nullptr : std::aligned_alloc(kAlign, rounded);
    if (!p)
      throw OutOfMemory("cpu: out of memory allocating " + human_bytes(bytes) + " (" +
                        human_bytes(mem_available_bytes()) + " available of " + human_bytes(total) + ")");
    allocated_.fetch_add(bytes, std::memory_order_relaxed);
    return Buffer(this, p, bytes);
  }
  void free_bytes(void* p, size_t bytes) override {
    if (!p) return;
    std::free(p);
    allocated_.fetch_sub(bytes, std::memory_order_relaxed);
  }

  void upload(const void* host, DType host_dtype, Tensor dst) override {
    check_host("upload", "dst", dst);
    if (!host && dst.numel() > 0) fail("upload", "no host data for " + desc("dst", dst));
    convert(pool_, host, host_dtype, dst.data, dst.dtype, dst.numel());
  }
  void download(Tensor src, void* host, DType host_dtype) override {
    check_host("download", "src", src);
    if (!host && src.numel() > 0) fail("download", "no host buffer for " + desc("src", src));
    convert(pool_, src.data, src.dtype, host, host_dtype, src.numel());
  }
  void synchronize() override {}

  // ---- data movement --------------------------------------------------------------------------
  void copy(Tensor src, Tensor dst) override {
    check_host("copy", "src", src);
    check_host("copy", "dst", dst);
    if (src.numel() != dst.numel())
      fail("copy", desc("src", src) + " and " + desc("dst", dst) + " differ in element count");
    if (src.dtype != dst.dtype && overlaps(src, dst) && src.data != dst.data)
      fail("copy", desc("src", src) + " and " + desc("dst", dst) + " overlap with different dtypes");
    if (src.data == dst.data && src.dtype == dst.dtype) return;
    convert(pool_, src.data, src.dtype, dst.data, dst.dtype, src.numel());
  }

  void copy_rows(Tensor src, int64_t src_row, Tensor dst, int64_t dst_row, int64_t n,
                 int64_t src_col = kAllColumns) override {
    const char* op = "copy_rows";
    check_host(op, "src", src);
    check_host(op, "dst", dst);
    const std::string shapes = desc("src", src) + ", " + desc("dst", dst);
    const int64_t C = dst.cols(), SC = src.cols();
    const int64_t col = window_col(op, shapes, "src", src, src_col, C);
    if (n < 0 || src_row < 0 || dst_row < 0 || src_row + n > src.rows() || dst_row + n > dst.rows())
      fail(op, "rows [" + std::to_string(src_row) + ", " + std::to_string(src_row + n) + ") of " +
                   desc("src", src) + " to rows [" + std::to_string(dst_row) + ", " +
                   std::to_string(dst_row + n) + ") of " + desc("dst", dst) + " out of range");
    if (src.dtype != dst.dtype && src.data == dst.data) fail(op, "src and dst are the same memory with different dtypes");
    const size_t ss = dtype_size(src.dtype), ds = dtype_size(dst.dtype);
    const char* s = static_cast<const char*>(src.data) + size_t(src_row * SC + col) * ss;
    char* d = static_cast<char*>(dst.data) + size_t(dst_row * C) * ds;
    if (SC == C) {
      convert(pool_, s, src.dtype, d, dst.dtype, n * C);
      return;
    }
    // A column window: row by row.
    no_overlap(op, "dst", dst, "src", src);
    pool_.parallel_for(n, row_grain(C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        convert_serial(s + size_t(r * SC) * ss, src.dtype, d + size_t(r * C) * ds, dst.dtype, C);
    });
  }

  void fill(Tensor dst, float value) override {
    check_host("fill", "dst", dst);
    const int64_t n = dst.numel();
    if (dst.dtype == DType::F32) {
      float* p = dst.ptr<float>();
      pool_.parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) { std::fill(p + i0, p + i1, value); });
      return;
    }
    // Encode once, then replicate the element's bytes.
    unsigned char one[4];
    store_f32(&value, one, dst.dtype, 1);
    const size_t es = dtype_size(dst.dtype);
    auto* p = static_cast<unsigned char*>(dst.data);
    pool_.parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) std::memcpy(p + size_t(i) * es, one, es);
    });
  }

  void concat_heads(Tensor a, int da, Tensor b, int db, int heads, Tensor out) override {
    const char* op = "concat_heads";
    need_float(op, "a", a);
    need_float(op, "b", b);
    need_float(op, "out", out);
    if (heads < 1 || da < 0 || db < 0) fail(op, "heads, da, db must be positive");
    const int64_t T = a.rows(), H = heads;
    const std::string shapes = desc("a", a) + ", " + desc("b", b) + ", " + desc("out", out) + " (heads " +
                               std::to_string(heads) + ", da " + std::to_string(da) + ", db " + std::to_string(db) + ")";
    if (a.cols() != H * da) fail(op, shapes + ": a must have heads*da columns");
    int64_t hb;
    if (b.cols() == H * db)
      hb = H;
    else if (b.cols() == db)
      hb = 1;
    else
      fail(op, shapes + ": b must have db or heads*db columns");
    if (b.rows() != T || out.rows() != T) fail(op, shapes + ": row counts differ");
    if (out.cols() != H * (da + db)) fail(op, shapes + ": out must have heads*(da+db) columns");
    no_overlap(op, "out", out, "a", a);
    no_overlap(op, "out", out, "b", b);
    In A(pool_, a), B(pool_, b);
    Out O(pool_, out, false);
    const float *pa = A.get(), *pb = B.get();
    float* po = O.get();
    pool_.parallel_for(T, row_grain(out.cols()), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t h = 0; h < H; ++h) {
          float* o = po + t * H * (da + db) + h * (da + db);
          std::memcpy(o, pa + t * H * da + h * da, size_t(da) * 4);
          std::memcpy(o + da, pb + t * hb * db + (hb == 1 ? 0 : h) * db, size_t(db) * 4);
        }
    });
    O.commit();
  }

  void concat_channels(Tensor a, Tensor b, Tensor out) override {
    const char* op = "concat_channels";
    need_float(op, "a", a);
    need_float(op, "b", b);
    need_float(op, "out", out);
    const std::string shapes = desc("a", a) + ", " + desc("b", b) + ", " + desc("out", out);
    if (a.ndim() != 4 || b.ndim() != 4 || out.ndim() != 4) fail(op, shapes + ": expected [N, C, H, W] tensors");
    if (a.dim(0) != b.dim(0) || a.dim(2) != b.dim(2) || a.dim(3) != b.dim(3) ||
        !(out.shape == Shape{a.dim(0), a.dim(1) + b.dim(1), a.dim(2), a.dim(3)}))
      fail(op, shapes + ": expected out [N, Ca+Cb, H, W] with equal N, H, W");
    no_overlap(op, "out", out, "a", a);
    no_overlap(op, "out", out, "b", b);
    In A(pool_, a), B(pool_, b);
    Out O(pool_, out, false);
    const int64_t N = a.dim(0), na = a.numel() / std::max<int64_t>(N, 1), nb = b.numel() / std::max<int64_t>(N, 1);
    pool_.parallel_for(N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        std::memcpy(O.get() + n * (na + nb), A.get() + n * na, size_t(na) * 4);
        std::memcpy(O.get() + n * (na + nb) + na, B.get() + n * nb, size_t(nb) * 4);
      }
    });
    O.commit();
  }

  // ---- elementwise ---------------------------------------------------------------------------
  void axpby(float alpha, Tensor x, float beta, Tensor y, Tensor out) override {
    const char* op = "axpby";
    need_float(op, "x", x);
    need_float(op, "out", out);
    const bool use_y = beta != 0.0f;
    if (use_y) need_float(op, "y", y);
    if (x.numel() != out.numel() || (use_y && y.numel() != x.numel()))
      fail(op, desc("x", x) + ", " + desc("y", y) + ", " + desc("out", out) + ": element counts differ");
    In X(pool_, x);
    In Y(pool_, use_y ? y : Tensor{});
    Out O(pool_, out, false);
    const float *px = X.get(), *py = Y.get();
    float* po = O.get();
    pool_.parallel_for(x.numel(), kElemGrain, [&](int64_t i0, int64_t i1) {
      if (py)
        for (int64_t i = i0; i < i1; ++i) po[i] = alpha * px[i] + beta * py[i];
      else
        for (int64_t i = i0; i < i1; ++i) po[i] = alpha * px[i];
    });
    O.commit();
  }

  void activation(Tensor x, Tensor out, Activation act) override {
    const char* op = "activation";
    need_float(op, "x", x);
    need_float(op, "out", out);
    if (x.numel() != out.numel()) fail(op, desc("x", x) + " and " + desc("out", out) + ": element counts differ");
    In X(pool_, x);
    Out O(pool_, out, false);
    const float* px = X.get();
    float* po = O.get();
    pool_.parallel_for(x.numel(), kElemGrain / 4, [&](int64_t i0, int64_t i1) {
      if (po != px) std::memcpy(po + i0, px + i0, size_t(i1 - i0) * 4);
      bias_act_row(po + i0, nullptr, i1 - i0, act);
    });
    O.commit();
  }

  void tanh_clamp(Tensor x, Tensor out, float c) override {
    const char* op = "tanh_clamp";
    need_float(op, "x", x);
    need_float(op, "out", out);
    if (x.numel() != out.numel()) fail(op, desc("x", x) + " and " + desc("out", out) + ": element counts differ");
    if (!(c > 0.0f)) fail(op, "c must be positive, got " + std::to_string(c));
    In X(pool_, x);
    Out O(pool_, out, false);
    const float* px = X.get();
    float* po = O.get();
    const float inv = 1.0f / c;
    pool_.parallel_for(x.numel(), kElemGrain / 4, [&](int64_t i0, int64_t i1) {
      if (po != px) std::memcpy(po + i0, px + i0, size_t(i1 - i0) * 4);
      map4(po + i0, i1 - i0, [&](f4 v) { return c * tanh4(v * inv); });
    });
    O.commit();
  }

  void add_modulation(Tensor src, Tensor table, Tensor out) override {
    const char* op = "add_modulation";
    need_float(op, "src", src);
    need_float(op, "table", table);
    need_float(op, "out", out);
    const int64_t F = out.rows(), KD = out.cols(), S = src.cols();
    const std::string shapes = desc("src", src) + ", " + desc("table", table) + ", " + desc("out", out);
    if (table.numel() != KD) fail(op, shapes + ": table must hold out's column count of elements");
    if (src.rows() != F) fail(op, shapes + ": src and out differ in rows");
    if (S != KD && (S == 0 || KD % S != 0)) fail(op, shapes + ": src must have K*D or D columns");
    In Sr(pool_, src), Tb(pool_, table);
    Out O(pool_, out, true);
    const float *ps = Sr.get(), *pt = Tb.get();
    float* po = O.get();
    pool_.parallel_for(F, row_grain(KD), [&](int64_t f0, int64_t f1) {
      for (int64_t f = f0; f < f1; ++f)
        for (int64_t k = 0; k < KD; k += S)
          for (int64_t d = 0; d < S; ++d) po[f * KD + k + d] = pt[k + d] + ps[f * S + d];
    });
    O.commit();
  }

  // ---- linear algebra ------------------------------------------------------------------------
  void linear(Tensor x, Tensor w, Tensor b, Tensor y, Activation act) override {
    const char* op = "linear";
    need_float(op, "x", x);
    need_float(op, "w", w);
    need_float(op, "y", y);
    // w is [N, K], or any shape [N, ...] whose trailing dims flatten to K (a conv weight
    // [N, C, 1, ph, pw] used as a linear, as PyTorch flattens it).
    const int64_t M = x.rows(), K = x.cols(), N = w.ndim() ? w.dim(0) : 0;
    const std::string shapes = desc("x", x) + ", " + desc("w", w) + ", " + desc("b", b) + ", " + desc("y", y);
    if (w.ndim() < 2 || w.numel() != N * K) fail(op, shapes + ": w must be [N, K] with K = x's last dim");
    if (y.rows() != M || y.cols() != N) fail(op, shapes + ": y must be [rows of x, rows of w]");
    if (present(b)) {
      need_float(op, "b", b);
      if (b.numel() != N) fail(op, shapes + ": b must have N elements");
    }
    no_overlap(op, "y", y, "x", x);
    no_overlap(op, "y", y, "w", w);
    In X(pool_, x), W(pool_, w), B(pool_, b);
    Out Y(pool_, y, false);
    cpu::linear(pool_, X.get(), W.get(), B.get(), Y.get(), M, N, K, act);
    Y.commit();
  }

  void gemm_batched(const GemmBatched& p) override {
    const char* op = "gemm_batched";
    need_float(op, "A", p.A);
    need_float(op, "B", p.B);
    need_float(op, "C", p.C);
    std::ostringstream d;
    d << "A " << p.A.shape.str() << ", B " << p.B.shape.str() << ", C " << p.C.shape.str() << " (M " << p.M << ", N "
      << p.N << ", K " << p.K << ", lda " << p.lda << ", ldb " << p.ldb << ", ldc " << p.ldc << ", strides "
      << p.strideA << "/" << p.strideB << "/" << p.strideC << ", batch " << p.batch << ", trans "
      << int(p.transA) << int(p.transB) << ")";
    if (p.M < 0 || p.N < 0 || p.K < 0 || p.batch < 0) fail(op, d.str() + ": negative size");
    if (p.M == 0 || p.N == 0 || p.batch == 0) return;
    // Stored extents: op(A) [M, K] is A [M, K] or A [K, M]; op(B) [K, N] is B [K, N] or B [N, K].
    const int64_t a_rows = p.transA ? p.K : p.M, a_cols = p.transA ? p.M : p.K;
    const int64_t b_rows = p.transB ? p.N : p.K, b_cols = p.transB ? p.K : p.N;
    auto extent = [&](int64_t rows, int64_t cols, int64_t ld, int64_t stride, const char* name, const Tensor& t) {
      if (rows == 0 || cols == 0) return;
      if (ld < std::max<int64_t>(cols, 1)) fail(op, d.str() + ": ld" + name + " smaller than the row length " + std::to_string(cols));
      if (stride < 0) fail(op, d.str() + ": negative batch stride for " + name);
      const int64_t last = (p.batch - 1) * stride + (rows - 1) * ld + cols;
      if (last > t.numel())
        fail(op, d.str() + ": " + name + " needs " + std::to_string(last) + " elements, holds " + std::to_string(t.numel()));
    };
    extent(a_rows, a_cols, p.lda, p.strideA, "A", p.A);
    extent(b_rows, b_cols, p.ldb, p.strideB, "B", p.B);
    extent(p.M, p.N, p.ldc, p.strideC, "C", p.C);
    no_overlap(op, "C", p.C, "A", p.A);
    no_overlap(op, "C", p.C, "B", p.B);
    In A(pool_, p.A), B(pool_, p.B);
    Out C(pool_, p.C, true);  // only a non-F32 C is copied; its elements outside the views survive
    const float *pa = A.get(), *pb = B.get();
    float* pc = C.get();
    if (p.batch >= pool_.size() && p.batch > 1) {
      pool_.run(p.batch, [&](int64_t i, int) {
        sgemm_serial(p.transA, p.transB, p.M, p.N, p.K, p.alpha, pa + i * p.strideA, p.lda, pb + i * p.strideB, p.ldb,
                     p.beta, pc + i * p.strideC, p.ldc);
      });
    } else {
      for (int64_t i = 0; i < p.batch; ++i)
        cpu::sgemm(pool_, p.transA, p.transB, p.M, p.N, p.K, p.alpha, pa + i * p.strideA, p.lda, pb + i * p.strideB,
                   p.ldb, p.beta, pc + i * p.strideC, p.ldc);
    }
    C.commit();
  }

  // ---- normalisation and modulation ------------------------------------------------------------
  void layer_norm(Tensor x, Tensor w, Tensor b, Tensor y, float eps) override {
    const char* op = "layer_norm";
    need_float(op, "x", x);
    need_float(op, "y", y);
    const int64_t D = x.cols(), T = x.rows();
    const std::string shapes = desc("x", x) + ", " + desc("w", w) + ", " + desc("b", b) + ", " + desc("y", y);
    if (!(y.shape == x.shape) && !(y.rows() == T && y.cols() == D)) fail(op, shapes + ": y must have x's shape");
    if (present(w)) {
      need_float(op, "w", w);
      if (w.numel() != D) fail(op, shapes + ": w must have x's last dim of elements");
    }
    if (present(b)) {
      need_float(op, "b", b);
      if (b.numel() != D) fail(op, shapes + ": b must have x's last dim of elements");
    }
    In X(pool_, x), W(pool_, w), B(pool_, b);
    Out Y(pool_, y, false);
    const float *px = X.get(), *pw = W.get(), *pb = B.get();
    float* py = Y.get();
    pool_.parallel_for(T, row_grain(D), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* xr = px + t * D;
        float* yr = py + t * D;
        float mean, rstd;
        row_moments(xr, D, eps, mean, rstd);
        if (pw && pb)
          for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * pw[i] + pb[i];
        else if (pw)
          for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * pw[i];
        else if (pb)
          for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd + pb[i];
        else
          for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd;
      }
    });
    Y.commit();
  }

  void rms_norm(Tensor x, Tensor w, Tensor y, float eps, int64_t x_col = kAllColumns) override {
    const char* op = "rms_norm";
    need_float(op, "x", x);
    need_float(op, "y", y);
    const int64_t D = y.cols(), T = y.rows(), XC = x.cols();
    const std::string shapes = desc("x", x) + ", " + desc("w", w) + ", " + desc("y", y);
    if (x.rows() != T) fail(op, shapes + ": y must have x's rows");
    const int64_t col = window_col(op, shapes, "x", x, x_col, D);
    if (present(w)) {
      need_float(op, "w", w);
      if (w.numel() != D) fail(op, shapes + ": w must have y's last dim of elements");
    }
    if (x_col != kAllColumns) no_overlap(op, "y", y, "x", x);
    In X(pool_, x), W(pool_, w);
    Out Y(pool_, y, false);
    const float *px = X.get(), *pw = W.get();
    float* py = Y.get();
    pool_.parallel_for(T, row_grain(D), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* xr = px + t * XC + col;
        float* yr = py + t * D;
        const float r = row_rstd_rms(xr, D, eps);
        if (pw)
          for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * r * pw[i];
        else
          for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * r;
      }
    });
    Y.commit();
  }

  // Checks mod [F, K*D] against T rows of width D and returns F.
  int64_t check_mod(const char* op, const std::string& shapes, const Tensor& mod, int64_t T, int64_t D,
                    std::initializer_list<int> idx, int64_t rows_per_frame) {
    need_float(op, "mod", mod);
    if (rows_per_frame < 1) fail(op, shapes + ": rows_per_frame must be >= 1, got " + std::to_string(rows_per_frame));
    if (D == 0 || mod.cols() % D != 0) fail(op, shapes + ": mod's columns must be a multiple of D = " + std::to_string(D));
    const int64_t K = mod.cols() / D, F = mod.rows();
    for (int i : idx)
      if (i < 0 || i >= K)
        fail(op, shapes + ": chunk index " + std::to_string(i) + " outside mod's " + std::to_string(K) + " chunks");
    const int64_t frames = (T + rows_per_frame - 1) / rows_per_frame;
    if (frames > F)
      fail(op, shapes + ": " + std::to_string(T) + " rows at " + std::to_string(rows_per_frame) + " rows per frame need " +
                   std::to_string(frames) + " frames of mod, it has " + std::to_string(F));
    return F;
  }

  void ln_modulate(Tensor x, Tensor mod, int shift_idx, int scale_idx, int64_t rows_per_frame, Tensor y,
                   float eps) override {
    const char* op = "ln_modulate";
    need_float(op, "x", x);
    need_float(op, "y", y);
    const int64_t D = x.cols(), T = x.rows();
    const std::string shapes = desc("x", x) + ", " + desc("mod", mod) + ", " + desc("y", y);
    if (!(y.rows() == T && y.cols() == D)) fail(op, shapes + ": y must have x's shape");
    check_mod(op, shapes, mod, T, D, {shift_idx, scale_idx}, rows_per_frame);
    In X(pool_, x), Md(pool_, mod);
    Out Y(pool_, y, false);
    const float *px = X.get(), *pm = Md.get();
    float* py = Y.get();
    const int64_t MC = mod.cols();
    pool_.parallel_for(T, row_grain(D), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const float* xr = px + t * D;
        float* yr = py + t * D;
        const float* m = pm + (t / rows_per_frame) * MC;
        const float* shift = m + shift_idx * D;
        const float* scale = m + scale_idx * D;
        float mean, rstd;
        row_moments(xr, D, eps, mean, rstd);
        for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * rstd * (1.0f + scale[i]) + shift[i];
      }
    });
    Y.commit();
  }

  void gated_residual(Tensor x, Tensor y, Tensor mod, int gate_idx, int64_t rows_per_frame) override {
    const char* op = "gated_residual";
    need_float(op, "x", x);
    need_float(op, "y", y);
    const int64_t D = x.cols(), T = x.rows();
    const std::string shapes = desc("x", x) + ", " + desc("y", y) + ", " + desc("mod", mod);
    if (!(y.rows() == T && y.cols() == D)) fail(op, shapes + ": y must have x's shape");
    if (gate_idx >= 0) check_mod(op, shapes, mod, T, D, {gate_idx}, rows_per_frame);
    no_overlap(op, "x", x, "y", y);
    In Yv(pool_, y), Md(pool_, gate_idx >= 0 ? mod : Tensor{});
    Out X(pool_, x, true);
    const float *py = Yv.get(), *pm = Md.get();
    float* px = X.get();
    const int64_t MC = gate_idx >= 0 ? mod.cols() : 0;
    pool_.parallel_for(T, row_grain(D), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* xr = px + t * D;
        const float* yr = py + t * D;
        if (pm) {
          const float* g = pm + (t / rows_per_frame) * MC + gate_idx * D;
          for (int64_t i = 0; i < D; ++i) xr[i] += g[i] * yr[i];
        } else {
          for (int64_t i = 0; i < D; ++i) xr[i] += yr[i];
        }
      }
    });
    X.commit();
  }

  // ---- attention -----------------------------------------------------------------------------
  void rope(Tensor x, int heads, int head_stride, int offset, const RopeSpec& spec, Tensor pos) override {
    const char* op = "rope";
    need_float(op, "x", x);
    need_dtype(op, "pos", pos, DType::I32);
    const int64_t T = x.rows();
    std::ostringstream d;
    d << desc("x", x) << ", " << desc("pos", pos) << ", freqs " << spec.freqs.shape.str() << ", axes "
      << spec.axes.shape.str() << " (heads " << heads << ", head_stride " << head_stride << ", offset " << offset
      << ", npairs " << spec.npairs << ")";
    if (heads < 1 || head_stride < 1 || offset < 0 || spec.npairs < 0) fail(op, d.str() + ": bad head layout");
    if (x.cols() != int64_t(heads) * head_stride) fail(op, d.str() + ": x must have heads*head_stride columns");
    if (offset + 2 * int64_t(spec.npairs) > head_stride) fail(op, d.str() + ": rotated pairs run past the head");
    if (pos.rows() != T || pos.cols() != 3) fail(op, d.str() + ": pos must be [T, 3]");
    if (spec.npairs == 0 || T == 0) return;
    need_float(op, "freqs", spec.freqs);
    need_dtype(op, "axes", spec.axes, DType::I32);
    if (spec.freqs.numel() != spec.npairs || spec.axes.numel() != spec.npairs)
      fail(op, d.str() + ": freqs and axes must have npairs elements");
    const int32_t* axes = spec.axes.ptr<const int32_t>();
    for (int j = 0; j < spec.npairs; ++j)
      if (axes[j] < 0 || axes[j] > 2) fail(op, d.str() + ": axis of pair " + std::to_string(j) + " is " + std::to_string(axes[j]) + ", expected 0, 1 or 2");
    In Fq(pool_, spec.freqs);
    Out X(pool_, x, true);
    RopeParams rp{T, x.cols(), heads, head_stride, offset, spec.npairs};
    cpu::rope(pool_, rp, X.get(), Fq.get(), axes, pos.ptr<const int32_t>());
    X.commit();
  }

  void attention(Tensor q, Tensor k, Tensor v, Tensor out, int heads, int kv_heads, int dk, int dv,
                 float scale) override {
    const char* op = "attention";
    need_float(op, "q", q);
    need_float(op, "k", k);
    need_float(op, "v", v);
    need_float(op, "out", out);
    std::ostringstream d;
    d << desc("q", q) << ", " << desc("k", k) << ", " << desc("v", v) << ", " << desc("out", out) << " (heads "
      << heads << ", kv_heads " << kv_heads << ", dk " << dk << ", dv " << dv << ")";
    if (heads < 1 || dk < 1 || dv < 1) fail(op, d.str() + ": heads, dk, dv must be positive");
    if (kv_heads != heads && kv_heads != 1) fail(op, d.str() + ": kv_heads must be heads or 1");
    const int64_t Tq = q.rows(), Tk = k.rows();
    if (q.cols() != int64_t(heads) * dk) fail(op, d.str() + ": q must have heads*dk columns");
    if (k.cols() != int64_t(kv_heads) * dk) fail(op, d.str() + ": k must have kv_heads*dk columns");
    if (v.cols() != int64_t(kv_heads) * dv) fail(op, d.str() + ": v must have kv_heads*dv columns");
    if (v.rows() != Tk) fail(op, d.str() + ": k and v differ in rows");
    if (out.rows() != Tq || out.cols() != int64_t(heads) * dv) fail(op, d.str() + ": out must be [rows of q, heads*dv]");
    if (Tk == 0 && Tq > 0) fail(op, d.str() + ": no keys to attend to");
    no_overlap(op, "out", out, "q", q);
    no_overlap(op, "out", out, "k", k);
    no_overlap(op, "out", out, "v", v);
    In Q(pool_, q), K(pool_, k), V(pool_, v);
    Out O(pool_, out, false);
    AttentionParams ap{Tq, Tk, heads, kv_heads, dk, dv, scale};
    cpu::attention(pool_, ap, Q.get(), K.get(), V.get(), O.get());
    O.commit();
  }

  // ---- video layout --------------------------------------------------------------------------
  struct PatchDims {
    int64_t F, C, H, W, h, w, P;
  };
  // The checked sizes shared by patchify and unpatchify (x [F, C, H, W], tokens [F*h*w, C*ph*pw]).
  static PatchDims patch_dims(const char* op, Tensor x, Tensor tokens, int ph, int pw, const char* token_layout) {
    need_float(op, "x", x);
    need_float(op, "tokens", tokens);
    const std::string shapes = desc("x", x) + ", " + desc("tokens", tokens) + " (patch " + std::to_string(ph) + "x" + std::to_string(pw) + ")";
    if (ph < 1 || pw < 1) fail(op, shapes + ": patch sizes must be positive");
    if (x.ndim() != 4) fail(op, shapes + ": x must be [F, C, H, W]");
    PatchDims d{x.dim(0), x.dim(1), x.dim(2), x.dim(3), 0, 0, int64_t(ph) * pw};
    if (d.H % ph || d.W % pw) fail(op, shapes + ": H and W must be multiples of the patch");
    d.h = d.H / ph;
    d.w = d.W / pw;
    if (tokens.rows() != d.F * d.h * d.w || tokens.cols() != d.C * d.P)
      fail(op, shapes + ": tokens must be " + token_layout);
    return d;
  }

  void patchify(Tensor x, int ph, int pw, Tensor tokens) override {
    const char* op = "patchify";
    const PatchDims d = patch_dims(op, x, tokens, ph, pw, "[F*h*w, C*ph*pw]");
    const int64_t F = d.F, C = d.C, H = d.H, W = d.W, h = d.h, w = d.w, P = d.P;
    no_overlap(op, "tokens", tokens, "x", x);
    In X(pool_, x);
    Out Tk(pool_, tokens, false);
    const float* px = X.get();
    float* pt = Tk.get();
    pool_.parallel_for(F * h, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, w * C * P)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t f = r / h, i = r % h;
        for (int64_t j = 0; j < w; ++j) {
          float* tok = pt + (r * w + j) * C * P;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t p = 0; p < ph; ++p)
              for (int64_t q = 0; q < pw; ++q)
                tok[c * P + p * pw + q] = px[((f * C + c) * H + i * ph + p) * W + j * pw + q];
        }
      }
    });
    Tk.commit();
  }

  void unpatchify(Tensor tokens, int ph, int pw, Tensor x) override {
    const char* op = "unpatchify";
    const PatchDims d = patch_dims(op, x, tokens, ph, pw, "[F*h*w, ph*pw*C]");
    const int64_t F = d.F, C = d.C, H = d.H, W = d.W, h = d.h, w = d.w, P = d.P;
    no_overlap(op, "x", x, "tokens", tokens);
    In Tk(pool_, tokens);
    Out X(pool_, x, false);
    const float* pt = Tk.get();
    float* px = X.get();
    pool_.parallel_for(F * C, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, H * W)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t f = r / C, c = r % C;
        float* plane = px + r * H * W;
        for (int64_t y = 0; y < H; ++y) {
          const int64_t i = y / ph, p = y % ph;
          for (int64_t xx = 0; xx < W; ++xx) {
            const int64_t j = xx / pw, q = xx % pw;
            plane[y * W + xx] = pt[((f * h + i) * w + j) * C * P + (p * pw + q) * C + c];
          }
        }
      }
    });
    X.commit();
  }

  void conv2d(Tensor x, Tensor w, Tensor b, Tensor y, int stride, int pad, Activation act) override {
    const char* op = "conv2d";
    need_float(op, "x", x);
    need_float(op, "w", w);
    need_float(op, "y", y);
    const std::string shapes = desc("x", x) + ", " + desc("w", w) + ", " + desc("b", b) + ", " + desc("y", y) +
                               " (stride " + std::to_string(stride) + ", pad " + std::to_string(pad) + ")";
    if (stride < 1 || pad < 0) fail(op, shapes + ": stride must be >= 1 and pad >= 0");
    if (x.ndim() != 4 || w.ndim() != 4 || y.ndim() != 4) fail(op, shapes + ": expected 4-d x, w, y");
    ConvParams p{};
    p.N = x.dim(0), p.Cin = x.dim(1), p.H = x.dim(2), p.W = x.dim(3);
    p.Cout = w.dim(0), p.kh = w.dim(2), p.kw = w.dim(3);
    p.stride = stride, p.pad = pad, p.act = act;
    if (w.dim(1) != p.Cin) fail(op, shapes + ": w's input channels differ from x's");
    if (p.kh < 1 || p.kw < 1 || p.H + 2 * pad < p.kh || p.W + 2 * pad < p.kw) fail(op, shapes + ": kernel larger than the padded input");
    p.Ho = (p.H + 2 * pad - p.kh) / stride + 1;
    p.Wo = (p.W + 2 * pad - p.kw) / stride + 1;
    const Shape want{p.N, p.Cout, p.Ho, p.Wo};
    if (!(y.shape == want)) fail(op, shapes + ": y must be " + want.str());
    if (present(b)) {
      need_float(op, "b", b);
      if (b.numel() != p.Cout) fail(op, shapes + ": b must have Cout elements");
    }
    no_overlap(op, "y", y, "x", x);
    no_overlap(op, "y", y, "w", w);
    In X(pool_, x), Wt(pool_, w), B(pool_, b);
    Out Y(pool_, y, false);
    cpu::conv2d(pool_, p, X.get(), Wt.get(), B.get(), Y.get());
    Y.commit();
  }

  void upsample2x(Tensor x, Tensor y) override {
    const char* op = "upsample2x";
    need_float(op, "x", x);
    need_float(op, "y", y);
    const std::string shapes = desc("x", x) + ", " + desc("y", y);
    if (x.ndim() != 4) fail(op, shapes + ": x must be [N, C, H, W]");
    const int64_t H = x.dim(2), W = x.dim(3);
    if (!(y.shape == Shape{x.dim(0), x.dim(1), 2 * H, 2 * W})) fail(op, shapes + ": y must be [N, C, 2H, 2W]");
    no_overlap(op, "y", y, "x", x);
    In X(pool_, x);
    Out Y(pool_, y, false);
    const float* px = X.get();
    float* py = Y.get();
    pool_.parallel_for(x.dim(0) * x.dim(1) * H, row_grain(4 * W), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* s = px + r * W;
        float* d0 = py + r * 4 * W;  // output rows 2i and 2i+1 of the same plane are adjacent
        for (int64_t j = 0; j < W; ++j) d0[2 * j] = d0[2 * j + 1] = s[j];
        std::memcpy(d0 + 2 * W, d0, size_t(2 * W) * 4);
      }
    });
    Y.commit();
  }

  void embedding(Tensor table, const int32_t* ids, int64_t n, Tensor out) override {
    const char* op = "embedding";
    need_float(op, "table", table);
    need_float(op, "out", out);
    const int64_t V = table.rows(), D = table.cols();
    const std::string shapes = desc("table", table) + ", " + desc("out", out) + " (n " + std::to_string(n) + ")";
    if (n < 0 || out.rows() != n || out.cols() != D) fail(op, shapes + ": out must be [n, table's columns]");
    if (n > 0 && !ids) fail(op, shapes + ": no ids");
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= V)
        throw Error("cpu embedding: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                    " is outside the table of " + std::to_string(V) + " rows");
    no_overlap(op, "out", out, "table", table);
    for (int64_t i = 0; i < n; ++i) {
      const void* src = static_cast<const char*>(table.data) + size_t(ids[i] * D) * dtype_size(table.dtype);
      void* dst = static_cast<char*>(out.data) + size_t(i * D) * dtype_size(out.dtype);
      convert(pool_, src, table.dtype, dst, out.dtype, D);
    }
  }

  void to_rgb8(Tensor x, Tensor rgb) override {
    const char* op = "to_rgb8";
    need_float(op, "x", x);
    need_dtype(op, "rgb", rgb, DType::U8);
    const std::string shapes = desc("x", x) + ", " + desc("rgb", rgb);
    if (x.ndim() != 4 || x.dim(1) != 3) fail(op, shapes + ": x must be [F, 3, H, W]");
    const int64_t F = x.dim(0), H = x.dim(2), W = x.dim(3), HW = H * W;
    if (!(rgb.shape == Shape{F, H, W, 3})) fail(op, shapes + ": rgb must be [F, H, W, 3]");
    In X(pool_, x);
    const float* px = X.get();
    uint8_t* po = rgb.ptr<uint8_t>();
    pool_.parallel_for(F * H, row_grain(3 * W), [&](int64_t r0, int64_t r1) {
      alignas(16) float tmp[3][256 + 4];
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t f = r / H, yy = r % H;
        for (int64_t x0 = 0; x0 < W; x0 += 256) {
          const int64_t m = std::min<int64_t>(256, W - x0);
          for (int c = 0; c < 3; ++c) {
            const float* s = px + (f * 3 + c) * HW + yy * W + x0;
            for (int64_t i = 0; i < m; i += 4) {
              f4 v = (i + 4 <= m ? load4(s + i) : load_part(s + i, m - i)) * 255.0f;
              v = v > 0.0f ? v : splat(0.0f);  // NaN -> 0
              v = v < 255.0f ? v : splat(255.0f);
              store4(&tmp[c][i], (v + 12582912.0f) - 12582912.0f);  // round half to even
            }
          }
          uint8_t* d = po + (r * W + x0) * 3;
          for (int64_t i = 0; i < m; ++i) {
            d[3 * i] = uint8_t(tmp[0][i]);
            d[3 * i + 1] = uint8_t(tmp[1][i]);
            d[3 * i + 2] = uint8_t(tmp[2][i]);
          }
        }
      }
    });
  }

 private:
  ThreadPool pool_;
  std::string name_;
  std::atomic<size_t> allocated_{0};
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> create_cpu_backend(int threads) { return std::make_unique<cpu::CpuBackend>(threads); }

}  // namespace vmla
