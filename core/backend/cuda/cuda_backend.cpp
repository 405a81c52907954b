#include "core/backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/attention.cuh"
#include "kernels/conv.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/layout.cuh"
#include "kernels/norm.cuh"
#include "kernels/rope.cuh"

namespace vmla {

namespace k = vmla::kernels;

namespace {

std::string mib(size_t bytes) { return std::to_string((bytes + (size_t(1) << 19)) >> 20) + " MiB"; }

[[noreturn]] void cuda_fail(const char* op, const char* what, cudaError_t e) {
  throw DeviceError(std::string("CUDA ") + op + ": " + what + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
}

void check(cudaError_t e, const char* op, const char* what) {
  if (e != cudaSuccess) cuda_fail(op, what, e);
}

void check_blas(cublasStatus_t s, const char* op, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw DeviceError(std::string("CUDA ") + op + ": cuBLAS " + what + " failed: " + cublasGetStatusName(s) + " (" +
                      cublasGetStatusString(s) + ")");
}

// Every tensor argument must live on the GPU and have a usable dtype.
void need_dev(const Tensor& t, const char* op, const char* what) {
  if (t.empty() && t.numel() > 0) throw ShapeError(std::string(op) + ": " + what + " has no data");
  if (t.device != Device::CUDA)
    throw DeviceError(std::string(op) + ": " + what + " is a host tensor; the CUDA backend needs device tensors");
}
void need_float(const Tensor& t, const char* op, const char* what) {
  need_dev(t, op, what);
  if (!is_float(t.dtype))
    throw ShapeError(std::string(op) + ": " + what + " must be F32, F16 or BF16, got " + std::string(dtype_name(t.dtype)));
}
void need_dtype(const Tensor& t, DType dt, const char* op, const char* what) {
  need_dev(t, op, what);
  if (t.dtype != dt)
    throw ShapeError(std::string(op) + ": " + what + " must be " + std::string(dtype_name(dt)) + ", got " +
                     std::string(dtype_name(t.dtype)));
}
void need(bool ok, const char* op, const std::string& msg) {
  if (!ok) throw ShapeError(std::string(op) + ": " + msg);
}
void need_shape(const Tensor& t, const Shape& s, const char* op, const char* what) {
  if (!(t.shape == s))
    throw ShapeError(std::string(op) + ": " + what + " expected " + s.str() + ", got " + t.shape.str());
}
void need_numel(const Tensor& a, const Tensor& b, const char* op, const char* wa, const char* wb) {
  if (a.numel() != b.numel())
    throw ShapeError(std::string(op) + ": " + wa + " " + a.shape.str() + " and " + wb + " " + b.shape.str() +
                     " differ in element count");
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

// Host-side conversion for upload/download.
void convert_host(const void* src, DType st, void* dst, DType dt, size_t n, const char* op) {
  if (st == dt) {
    std::memcpy(dst, src, n * dtype_size(st));
    return;
  }
  auto rd = [&](size_t i) -> float {
    switch (st) {
      case DType::F32: return static_cast<const float*>(src)[i];
      case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      case DType::I32: return float(static_cast<const int32_t*>(src)[i]);
      case DType::U8: return float(static_cast<const uint8_t*>(src)[i]);
      case DType::I8: return float(static_cast<const int8_t*>(src)[i]);
    }
    return 0.f;
  };
  switch (dt) {
    case DType::F32:
      for (size_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = rd(i);
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_f16(rd(i));
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(rd(i));
      return;
    default:
      break;
  }
  throw ShapeError(std::string(op) + ": cannot convert " + std::string(dtype_name(st)) + " to " +
                   std::string(dtype_name(dt)));
}

// Tensor::cols()/rows() with the rank bounded explicitly (GCC 12 otherwise reports a spurious
// -Warray-bounds through Shape::operator[] when these inline).
int64_t cols_of(const Tensor& t) {
  const int n = t.shape.ndim;
  return (n > 0 && n <= kMaxDims) ? t.shape.d[size_t(n - 1)] : 1;
}
int64_t rows_of(const Tensor& t) {
  const int64_t c = cols_of(t);
  return c ? t.numel() / c : 0;
}

size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

// The first column of `t` that an op reads for `width` columns, given its column-window argument
// (core/tensor/backend.h): kAllColumns needs t to be `width` wide.
int64_t window_col(const char* op, const char* name, const Tensor& t, int64_t col, int64_t width) {
  if (col == kAllColumns) {
    need(cols_of(t) == width, op, std::string(name) + " " + t.shape.str() + " must have " + std::to_string(width) + " columns");
    return 0;
  }
  need(col >= 0 && col + width <= cols_of(t), op,
       "columns [" + std::to_string(col) + ", +" + std::to_string(width) + ") outside " + name + " " + t.shape.str());
  return col;
}

// Whether the byte ranges [a, a + an) and [b, b + bn) are disjoint.
bool disjoint(const void* a, size_t an, const void* b, size_t bn) {
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  return pa + an <= pb || pb + bn <= pa;
}

char* byte_offset(const void* p, int64_t elems, DType t) {
  return static_cast<char*>(const_cast<void*>(p)) + size_t(elems) * dtype_size(t);
}

}  // namespace

// ---- lifetime -------------------------------------------------------------------------------------

CudaBackend::CudaBackend(int device) : device_(device) {
  const char* op = "backend init";
  int count = cuda_device_count();
  if (device < 0 || device >= count)
    throw DeviceError("CUDA device " + std::to_string(device) + " requested but " + std::to_string(count) +
                      " device(s) are available");
  check(cudaSetDevice(device_), op, "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), op, "cudaGetDeviceProperties");
  device_name_ = prop.name;
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), op, "cudaStreamCreate");
  check_blas(cublasCreate(&cublas_), op, "cublasCreate");
  check_blas(cublasSetStream(cublas_, stream_), op, "cublasSetStream");
  // A fixed workspace keeps cuBLAS from allocating inside ops (and makes GEMMs graph-capturable).
  const size_t ws = size_t(32) << 20;
  check(cudaMalloc(&cublas_workspace_, ws), op, "cudaMalloc (cuBLAS workspace)");
  cublas_workspace_bytes_ = ws;
  check_blas(cublasSetWorkspace(cublas_, cublas_workspace_, ws), op, "cublasSetWorkspace");
  check_blas(cublasLtCreate(&lt_), op, "cublasLtCreate");
  auto env_is = [](const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, value) == 0;
  };
  tensor_core_attention_ = !env_is("VMLA_CUDA_SIMPLE_ATTENTION", "1");
  sm90_attention_ = !env_is("VMLA_CUDA_SM90_ATTENTION", "0");
  fused_linear_ = !env_is("VMLA_CUDA_FUSED_LINEAR", "0");
  fused_norm_rope_ = !env_is("VMLA_CUDA_FUSED_NORM_ROPE", "0");
  gemm_tune_ = env_is("VMLA_GEMM_TUNE", "1");
  profile_ = env_is("VMLA_CUDA_PROFILE", "1");
  graphs_ = env_is("VMLA_CUDA_GRAPHS", "1") && !profile_;
}

CudaBackend::~CudaBackend() {
  // Destructors never throw: errors here only lose memory the process is about to release anyway.
  cudaSetDevice(device_);
  if (profile_) {
    if (stream_) cudaStreamSynchronize(stream_);
    profile_flush();
    std::vector<std::pair<std::string, ProfStat>> rows(prof_stats_.begin(), prof_stats_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (const auto& r : rows) total += r.second.ms;
    std::fprintf(stderr, "\nCUDA op profile (GPU time between op starts, VMLA_CUDA_PROFILE=1): %.1f ms in all\n",
                 total);
    std::fprintf(stderr, "%-24s %10s %12s %12s %7s\n", "op", "calls", "total ms", "us/call", "share");
    for (const auto& [name, st] : rows)
      std::fprintf(stderr, "%-24s %10lld %12.2f %12.2f %6.1f%%\n", name.c_str(), static_cast<long long>(st.calls),
                   st.ms, st.calls ? 1e3 * st.ms / double(st.calls) : 0.0, total > 0 ? 100.0 * st.ms / total : 0.0);
    for (cudaEvent_t e : prof_pool_) cudaEventDestroy(e);
    prof_pool_.clear();
  }
  for (Scratch* s : {&scratch_op_, &scratch_gemm_})
    if (s->p) cudaFreeAsync(s->p, stream_);
  if (stream_) cudaStreamSynchronize(stream_);
  for (Staging& s : staging_) {
    if (s.host) cudaFreeHost(s.host);
    if (s.done) cudaEventDestroy(s.done);
  }
  for (auto& [key, plan] : lt_plans_) {
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.b) cublasLtMatrixLayoutDestroy(plan.b);
    if (plan.c) cublasLtMatrixLayoutDestroy(plan.c);
    if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
  }
  if (lt_) cublasLtDestroy(lt_);
  if (cublas_) cublasDestroy(cublas_);
  if (cublas_workspace_) cudaFree(cublas_workspace_);
  if (stream_) cudaStreamDestroy(stream_);
  cudaGetLastError();
}

void CudaBackend::enter(const char* op) const {
  check(cudaSetDevice(device_), op, "cudaSetDevice");
  if (profile_ && std::strcmp(op, "alloc") != 0 && std::strcmp(op, "synchronize") != 0) profile_mark(op);
}

void CudaBackend::not_capturing(const char* op) const {
  if (capturing_)
    throw DeviceError(std::string(op) + " while a pass is being recorded as a CUDA graph (a recorded pass may only "
                      "enqueue ops; it is run op by op instead)");
}

void CudaBackend::profile_mark(const char* op) const {
  cudaEvent_t ev = nullptr;
  if (!prof_pool_.empty()) {
    ev = prof_pool_.back();
    prof_pool_.pop_back();
  } else if (cudaEventCreate(&ev) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  if (cudaEventRecord(ev, stream_) != cudaSuccess) {
    cudaGetLastError();
    prof_pool_.push_back(ev);
    return;
  }
  prof_chain_.push_back({ev, op});
  if (prof_chain_.size() > 100000) profile_flush();
}

void CudaBackend::profile_flush() const {
  if (prof_chain_.empty()) return;
  profile_mark("(end)");  // closes the last op's interval
  cudaEventSynchronize(prof_chain_.back().ev);
  for (size_t i = 0; i + 1 < prof_chain_.size(); ++i) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, prof_chain_[i].ev, prof_chain_[i + 1].ev) == cudaSuccess) {
      ProfStat& st = prof_stats_[prof_chain_[i].op];
      st.ms += ms;
      ++st.calls;
    }
  }
  cudaGetLastError();
  for (const ProfMark& m : prof_chain_) prof_pool_.push_back(m.ev);
  prof_chain_.clear();
}

MemoryInfo CudaBackend::memory_info() const {
  MemoryInfo m;
  m.allocated_by_engine = allocated_.load();
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(device_) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    m.device_total = total_b;
    m.device_used = total_b - free_b;
  } else {
    cudaGetLastError();
  }
  return m;
}

// ---- memory ---------------------------------------------------------------------------------------

Buffer CudaBackend::alloc_bytes(size_t bytes) {
  enter("alloc");
  not_capturing("alloc");
  if (bytes == 0) return Buffer(this, nullptr, 0);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw OutOfMemory("CUDA out of memory on " + device_name_ + ": asked for " + mib(bytes) + ", " + mib(free_b) +
                      " free of " + mib(total_b) + " (the engine holds " + mib(allocated_.load()) +
                      "); use a smaller model, fewer window frames or a lower resolution");
  }
  check(e, "alloc", "cudaMalloc");
  allocated_ += bytes;
  return Buffer(this, p, bytes);
}

void CudaBackend::free_bytes(void* p, size_t bytes) {
  if (!p) return;
  cudaSetDevice(device_);
  // cudaFree waits for the device, so work still reading this memory finishes first.
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();
  allocated_ -= bytes;
}

void* CudaBackend::scratch(Scratch& s, size_t bytes, const char* op) {
  if (bytes <= s.bytes) return s.p;
  not_capturing(op);
  ++memory_epoch_;
  const size_t want = align256(std::max(bytes, s.bytes + s.bytes / 2));
  if (s.p) {
    check(cudaFreeAsync(s.p, stream_), op, "cudaFreeAsync (scratch)");
    s.p = nullptr;
    s.bytes = 0;
  }
  cudaError_t e = cudaMallocAsync(&s.p, want, stream_);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw OutOfMemory(std::string("CUDA out of memory on ") + device_name_ + " in " + op + ": scratch of " +
                      mib(want) + " requested, " + mib(free_b) + " free of " + mib(total_b));
  }
  check(e, op, "cudaMallocAsync (scratch)");
  s.bytes = want;
  return s.p;
}

CudaBackend::Staging& CudaBackend::staging_slot(const char* op) {
  Staging& s = staging_[next_staging_];
  next_staging_ ^= 1;
  if (!s.host) {
    check(cudaHostAlloc(&s.host, kStagingBytes, cudaHostAllocDefault), op, "cudaHostAlloc (staging)");
    check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), op, "cudaEventCreate");
  }
  check(cudaEventSynchronize(s.done), op, "cudaEventSynchronize (staging)");
  return s;
}

void CudaBackend::upload(const void* host, DType host_dtype, Tensor dst) {
  const char* op = "upload";
  enter(op);
  not_capturing(op);
  need_dev(dst, op, "dst");
  const size_t n = size_t(dst.numel());
  if (n == 0) return;
  if (host_dtype != dst.dtype && !(is_float(host_dtype) && is_float(dst.dtype)))
    throw ShapeError(std::string(op) + ": cannot convert host " + std::string(dtype_name(host_dtype)) + " to " +
                     std::string(dtype_name(dst.dtype)));
  const size_t hs = dtype_size(host_dtype), ds = dtype_size(dst.dtype);
  const size_t chunk = kStagingBytes / std::max(hs, ds);
  for (size_t off = 0; off < n; off += chunk) {
    const size_t cnt = std::min(chunk, n - off);
    Staging& s = staging_slot(op);
    convert_host(static_cast<const char*>(host) + off * hs, host_dtype, s.host, dst.dtype, cnt, op);
    check(cudaMemcpyAsync(static_cast<char*>(dst.data) + off * ds, s.host, cnt * ds, cudaMemcpyHostToDevice, stream_),
          op, "cudaMemcpyAsync");
    check(cudaEventRecord(s.done, stream_), op, "cudaEventRecord");
  }
}

void CudaBackend::download(Tensor src, void* host, DType host_dtype) {
  const char* op = "download";
  enter(op);
  not_capturing(op);
  need_dev(src, op, "src");
  const size_t n = size_t(src.numel());
  if (n == 0) return;
  if (host_dtype != src.dtype && !(is_float(host_dtype) && is_float(src.dtype)))
    throw ShapeError(std::string(op) + ": cannot convert " + std::string(dtype_name(src.dtype)) + " to host " +
                     std::string(dtype_name(host_dtype)));
  if (host_dtype == src.dtype) {
    check(cudaMemcpyAsync(host, src.data, src.bytes(), cudaMemcpyDeviceToHost, stream_), op, "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream_), op, "cudaStreamSynchronize");
    return;
  }
  const size_t hs = dtype_size(host_dtype), ss = dtype_size(src.dtype);
  const size_t chunk = kStagingBytes / std::max(hs, ss);
  for (size_t off = 0; off < n; off += chunk) {
    const size_t cnt = std::min(chunk, n - off);
    Staging& s = staging_slot(op);
    check(cudaMemcpyAsync(s.host, static_cast<const char*>(src.data) + off * ss, cnt * ss, cudaMemcpyDeviceToHost,
                          stream_),
          op, "cudaMemcpyAsync");
    check(cudaEventRecord(s.done, stream_), op, "cudaEventRecord");
    check(cudaEventSynchronize(s.done), op, "cudaEventSynchronize");
    convert_host(s.host, src.dtype, static_cast<char*>(host) + off * hs, host_dtype, cnt, op);
  }
}

void CudaBackend::synchronize() {
  enter("synchronize");
  not_capturing("synchronize");
  check(cudaStreamSynchronize(stream_), "synchronize", "cudaStreamSynchronize");
  if (profile_) profile_flush();
}

// ---- data movement --------------------------------------------------------------------------------

void CudaBackend::copy(Tensor src, Tensor dst) {
  const char* op = "copy";
  enter(op);
  need_dev(src, op, "src");
  need_dev(dst, op, "dst");
  need_numel(src, dst, op, "src", "dst");
  if (src.numel() == 0) return;
  if (src.dtype == dst.dtype) {
    if (src.data == dst.data) return;
    check(cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice, stream_), op, "cudaMemcpyAsync");
    return;
  }
  need(src.data != dst.data, op, "in-place dtype conversion is not supported");
  check(k::launch_convert({src.data, src.dtype, dst.data, dst.dtype, src.numel()}, stream_), op, "convert kernel");
}

void CudaBackend::copy_rows(Tensor src, int64_t src_row, Tensor dst, int64_t dst_row, int64_t n, int64_t src_col) {
  const char* op = "copy_rows";
  const int64_t C = cols_of(dst), SC = cols_of(src);
  const int64_t col = window_col(op, "src", src, src_col, C);
  need(n >= 0 && src_row >= 0 && dst_row >= 0 && src_row + n <= rows_of(src) && dst_row + n <= rows_of(dst), op,
       "rows [" + std::to_string(src_row) + ", +" + std::to_string(n) + ") of src " + src.shape.str() + " -> [" +
           std::to_string(dst_row) + ", +" + std::to_string(n) + ") of dst " + dst.shape.str() + " out of range");
  if (n == 0) return;
  if (SC == C) {
    copy(src.rows_slice(src_row, n), dst.rows_slice(dst_row, n));
    return;
  }
  // A column window of src: a 2D copy with the row strides of both tensors.
  enter(op);
  need_dev(src, op, "src");
  need_dev(dst, op, "dst");
  const char* s = byte_offset(src.data, src_row * SC + col, src.dtype);
  char* d = byte_offset(dst.data, dst_row * C, dst.dtype);
  need(disjoint(s, size_t((n - 1) * SC + C) * dtype_size(src.dtype), d, size_t(n * C) * dtype_size(dst.dtype)), op,
       "a column window of src " + src.shape.str() + " overlaps dst " + dst.shape.str());
  if (src.dtype == dst.dtype) {
    const size_t es = dtype_size(src.dtype);
    check(cudaMemcpy2DAsync(d, size_t(C) * es, s, size_t(SC) * es, size_t(C) * es, size_t(n), cudaMemcpyDeviceToDevice,
                            stream_),
          op, "cudaMemcpy2DAsync");
    return;
  }
  k::ConvertRowsParams p;
  p.src = s;
  p.src_t = src.dtype;
  p.src_ld = SC;
  p.dst = d;
  p.dst_t = dst.dtype;
  p.dst_ld = C;
  p.rows = n;
  p.cols = C;
  check(k::launch_convert_rows(p, stream_), op, "convert kernel");
}

void CudaBackend::fill(Tensor dst, float value) {
  const char* op = "fill";
  enter(op);
  need_dev(dst, op, "dst");
  if (dst.numel() == 0) return;
  if (value == 0.f && !std::signbit(value)) {
    check(cudaMemsetAsync(dst.data, 0, dst.bytes(), stream_), op, "cudaMemsetAsync");
    return;
  }
  check(k::launch_fill({dst.data, dst.dtype, dst.numel(), value}, stream_), op, "fill kernel");
}

void CudaBackend::concat_heads(Tensor a, int da, Tensor b, int db, int heads, Tensor out) {
  const char* op = "concat_heads";
  enter(op);
  need_float(a, op, "a");
  need_float(b, op, "b");
  need_float(out, op, "out");
  need(heads > 0 && da >= 0 && db >= 0, op, "heads, da, db must be positive");
  const int64_t T = rows_of(a);
  need(cols_of(a) == int64_t(heads) * da, op, "a " + a.shape.str() + " is not [T, heads*da] with heads " +
                                                std::to_string(heads) + ", da " + std::to_string(da));
  need(rows_of(b) == T && (cols_of(b) == db || cols_of(b) == int64_t(heads) * db), op,
       "b " + b.shape.str() + " is not [" + std::to_string(T) + ", db] or [" + std::to_string(T) + ", heads*db]");
  need(rows_of(out) == T && cols_of(out) == int64_t(heads) * (da + db), op,
       "out expected [" + std::to_string(T) + ", " + std::to_string(int64_t(heads) * (da + db)) + "], got " +
           out.shape.str());
  k::ConcatHeadsParams p;
  p.a = a.data;
  p.at = a.dtype;
  p.b = b.data;
  p.bt = b.dtype;
  p.out = out.data;
  p.ot = out.dtype;
  p.T = T;
  p.heads = heads;
  p.da = da;
  p.db = db;
  p.b_heads = cols_of(b) == int64_t(heads) * db ? heads : 1;
  check(k::launch_concat_heads(p, stream_), op, "kernel");
}

void CudaBackend::concat_channels(Tensor a, Tensor b, Tensor out) {
  const char* op = "concat_channels";
  enter(op);
  need_float(a, op, "a");
  need_float(b, op, "b");
  need_float(out, op, "out");
  need(a.ndim() == 4 && b.ndim() == 4, op, "a " + a.shape.str() + " and b " + b.shape.str() + " must be [N, C, H, W]");
  need(a.dim(0) == b.dim(0) && a.dim(2) == b.dim(2) && a.dim(3) == b.dim(3), op,
       "a " + a.shape.str() + " and b " + b.shape.str() + " differ outside the channel dim");
  need_shape(out, Shape{a.dim(0), a.dim(1) + b.dim(1), a.dim(2), a.dim(3)}, op, "out");
  k::ConcatChannelsParams p;
  p.a = a.data;
  p.at = a.dtype;
  p.b = b.data;
  p.bt = b.dtype;
  p.out = out.data;
  p.ot = out.dtype;
  p.N = a.dim(0);
  p.Ca = a.dim(1);
  p.Cb = b.dim(1);
  p.HW = a.dim(2) * a.dim(3);
  check(k::launch_concat_channels(p, stream_), op, "kernel");
}

// ---- elementwise ----------------------------------------------------------------------------------

void CudaBackend::axpby(float alpha, Tensor x, float beta, Tensor y, Tensor out) {
  const char* op = "axpby";
  enter(op);
  need_float(x, op, "x");
  need_float(out, op, "out");
  need_numel(x, out, op, "x", "out");
  k::AxpbyParams p;
  p.x = x.data;
  p.xt = x.dtype;
  if (!y.empty() && beta != 0.f) {
    need_float(y, op, "y");
    need_numel(y, out, op, "y", "out");
    p.y = y.data;
    p.yt = y.dtype;
  } else {
    need(beta == 0.f, op, "y is empty but beta is not 0");
  }
  p.out = out.data;
  p.ot = out.dtype;
  p.n = out.numel();
  p.alpha = alpha;
  p.beta = beta;
  check(k::launch_axpby(p, stream_), op, "kernel");
}

void CudaBackend::activation(Tensor x, Tensor out, Activation act) {
  const char* op = "activation";
  enter(op);
  need_float(x, op, "x");
  need_float(out, op, "out");
  need_numel(x, out, op, "x", "out");
  k::UnaryParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.out = out.data;
  p.ot = out.dtype;
  p.n = x.numel();
  p.op = int(act);
  check(k::launch_unary(p, stream_), op, "kernel");
}

void CudaBackend::tanh_clamp(Tensor x, Tensor out, float c) {
  const char* op = "tanh_clamp";
  enter(op);
  need_float(x, op, "x");
  need_float(out, op, "out");
  need_numel(x, out, op, "x", "out");
  need(c != 0.f, op, "c must not be 0");
  k::UnaryParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.out = out.data;
  p.ot = out.dtype;
  p.n = x.numel();
  p.op = k::kUnaryTanhClamp;
  p.c = c;
  check(k::launch_unary(p, stream_), op, "kernel");
}

void CudaBackend::add_modulation(Tensor src, Tensor table, Tensor out) {
  const char* op = "add_modulation";
  enter(op);
  need_float(src, op, "src");
  need_float(table, op, "table");
  need_float(out, op, "out");
  const int64_t F = rows_of(out), KD = cols_of(out);
  need(table.numel() == KD, op, "table " + table.shape.str() + " must hold " + std::to_string(KD) + " values");
  need(rows_of(src) == F && cols_of(src) > 0 && KD % cols_of(src) == 0, op,
       "src " + src.shape.str() + " is not [" + std::to_string(F) + ", D] with D dividing " + std::to_string(KD));
  k::ModulationParams p;
  p.src = src.data;
  p.st = src.dtype;
  p.table = table.data;
  p.tt = table.dtype;
  p.out = out.data;
  p.ot = out.dtype;
  p.F = F;
  p.KD = KD;
  p.src_cols = cols_of(src);
  check(k::launch_add_modulation(p, stream_), op, "kernel");
}

// ---- linear algebra -------------------------------------------------------------------------------

// C = alpha op(A) op(B) + beta C in row-major terms, computed as the column-major product
// C^T = op(B)^T op(A)^T. Operands of differing dtypes are converted (into the GEMM scratch) to BF16
// when one of them is BF16, else to F16; an output dtype cuBLAS cannot write for that operand type
// goes through an F32 scratch.
void CudaBackend::gemm(const Gemm& g, const char* op) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  need(g.M > 0 && g.N > 0 && g.K > 0 && g.batch > 0, op,
       "GEMM sizes must be positive (M " + std::to_string(g.M) + ", N " + std::to_string(g.N) + ", K " +
           std::to_string(g.K) + ")");
  need(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.batch <= INT_MAX && g.lda <= INT_MAX &&
           g.ldb <= INT_MAX && g.ldc <= INT_MAX,
       op, "GEMM dimensions exceed 2^31");
  DType T = g.at;
  if (g.at != g.bt) T = (g.at == DType::BF16 || g.bt == DType::BF16) ? DType::BF16 : DType::F16;
  const bool c_ok = g.ct == DType::F32 || (g.ct == T && T != DType::F32);
  const int64_t rowsA = g.transA ? g.K : g.M, colsA = g.transA ? g.M : g.K;
  const int64_t rowsB = g.transB ? g.N : g.K, colsB = g.transB ? g.K : g.N;
  const int64_t extA = g.K == 0 ? 0 : (g.batch - 1) * g.strideA + (rowsA - 1) * g.lda + colsA;
  const int64_t extB = g.K == 0 ? 0 : (g.batch - 1) * g.strideB + (rowsB - 1) * g.ldb + colsB;
  const int64_t extC = (g.batch - 1) * g.strideC + (g.M - 1) * g.ldc + g.N;

  const bool convA = g.at != T, convB = g.bt != T;
  size_t need_bytes = 0;
  const size_t offA = need_bytes;
  if (convA) need_bytes += align256(size_t(extA) * dtype_size(T));
  const size_t offB = need_bytes;
  if (convB) need_bytes += align256(size_t(extB) * dtype_size(T));
  const size_t offC = need_bytes;
  if (!c_ok) need_bytes += align256(size_t(extC) * sizeof(float));
  char* base = need_bytes ? static_cast<char*>(scratch(scratch_gemm_, need_bytes, op)) : nullptr;

  const void* A = g.A;
  const void* B = g.B;
  void* C = g.C;
  DType ct = g.ct;
  if (convA) {
    check(k::launch_convert({g.A, g.at, base + offA, T, extA}, stream_), op, "convert A");
    A = base + offA;
  }
  if (convB) {
    check(k::launch_convert({g.B, g.bt, base + offB, T, extB}, stream_), op, "convert B");
    B = base + offB;
  }
  if (!c_ok) {
    // Converted in even when beta == 0: the gaps of a strided C must survive the copy back.
    check(k::launch_convert({g.C, g.ct, base + offC, DType::F32, extC}, stream_), op, "convert C");
    C = base + offC;
    ct = DType::F32;
  }
  const float alpha = g.alpha, beta = g.beta;
  const cudaDataType_t tt = cuda_type(T);
  check_blas(cublasGemmStridedBatchedEx(cublas_, g.transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                        g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(g.N), int(g.M), int(g.K), &alpha, B,
                                        tt, int(g.ldb), g.strideB, A, tt, int(g.lda), g.strideA, &beta, C,
                                        cuda_type(ct), int(g.ldc), g.strideC, int(g.batch), CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT),
             op, "cublasGemmStridedBatchedEx");
  if (!c_ok) check(k::launch_convert({C, DType::F32, g.C, g.ct, extC}, stream_), op, "convert C back");
}

void CudaBackend::linear(Tensor x, Tensor w, Tensor b, Tensor y, Activation act) {
  const char* op = "linear";
  enter(op);
  need_float(x, op, "x");
  need_float(w, op, "w");
  need_float(y, op, "y");
  need(w.ndim() == 2, op, "w must be [N, K], got " + w.shape.str());
  const int64_t M = rows_of(x), K = cols_of(x), N = w.dim(0);
  need(w.dim(1) == K, op, "x " + x.shape.str() + " and w " + w.shape.str() + " differ in K");
  need(rows_of(y) == M && cols_of(y) == N, op,
       "y expected [" + std::to_string(M) + ", " + std::to_string(N) + "], got " + y.shape.str());
  if (!b.empty()) {
    need_float(b, op, "b");
    need(b.numel() == N, op, "b expected [" + std::to_string(N) + "], got " + b.shape.str());
  }
  if (M == 0) return;
  if (linear_fused(x, w, b, y, act, op)) return;
  Gemm g;
  g.A = x.data;
  g.at = x.dtype;
  g.lda = K;
  g.B = w.data;
  g.bt = w.dtype;
  g.transB = true;
  g.ldb = K;
  g.C = y.data;
  g.ct = y.dtype;
  g.ldc = N;
  g.M = M;
  g.N = N;
  g.K = K;
  gemm(g, op);
  if (!b.empty() || act != Activation::None) {
    k::BiasActParams p;
    p.src = y.data;
    p.srct = y.dtype;
    p.bias = b.empty() ? nullptr : b.data;
    p.bt = b.dtype;
    p.y = y.data;
    p.yt = y.dtype;
    p.n = M * N;
    p.inner = 1;
    p.nb = N;
    p.act = int(act);
    check(k::launch_bias_act(p, stream_), op, "bias/activation kernel");
  }
}

namespace {

// Largest power of two (<= 256) that divides the address: the alignment cuBLASLt may assume.
unsigned alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  unsigned al = 1;
  while (al < 256 && (a & al) == 0) al <<= 1;
  return al;
}

// The tuning record's name of a fused linear: epilogue and output dtype.
std::string lt_op_name(cublasLtEpilogue_t epi, DType yt) {
  const char* e = epi == CUBLASLT_EPILOGUE_GELU_BIAS ? "bias gelu" : epi == CUBLASLT_EPILOGUE_RELU_BIAS ? "bias relu" : "bias";
  return std::string("linear ") + e + " -> " + std::string(dtype_name(yt));
}

}  // namespace

bool CudaBackend::linear_fused(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, Activation act,
                               const char* op) {
  if (!fused_linear_ || b.empty()) return false;  // nothing to fuse without a bias
  if (x.dtype != DType::BF16 || w.dtype != DType::BF16 || (y.dtype != DType::BF16 && y.dtype != DType::F32) ||
      (b.dtype != DType::BF16 && b.dtype != DType::F32))
    return false;
  cublasLtEpilogue_t epi;
  switch (act) {
    case Activation::None: epi = CUBLASLT_EPILOGUE_BIAS; break;
    case Activation::GeluTanh: epi = CUBLASLT_EPILOGUE_GELU_BIAS; break;  // cuBLASLt's GELU is the tanh form
    case Activation::Relu: epi = CUBLASLT_EPILOGUE_RELU_BIAS; break;
    default: return false;  // SiLU has no epilogue
  }
  const int64_t M = rows_of(x), K = cols_of(x), N = w.dim(0);
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX || K == 0) return false;
  LtKey key;
  key.M = M;
  key.N = N;
  key.K = K;
  key.epilogue = int(epi);
  key.yt = int(y.dtype);
  key.bt = int(b.dtype);
  key.align_x = alignment_of(x.data);
  key.align_w = alignment_of(w.data);
  key.align_y = alignment_of(y.data);
  key.align_b = alignment_of(b.data);
  auto it = lt_plans_.find(key);
  if (it == lt_plans_.end()) {
    // Row-major y [M, N] = x [M, K] w [N, K]^T is the column-major y^T [N, M] = op(A) B with A = w
    // (K x N column-major, transposed) and B = x (K x M column-major); C = D = y (N x M, ld N). The
    // bias runs along D's rows, i.e. along N. A bias whose dtype the epilogue does not take (F32
    // bias, BF16 output) is converted to BF16 per call.
    LtPlan plan;
    const cudaDataType_t yt = cuda_type(y.dtype);
    check_blas(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), op, "cublasLtMatmulDescCreate");
    const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof(tA)), op,
               "set TRANSA");
    check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof(tB)), op,
               "set TRANSB");
    check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), op,
               "set EPILOGUE");
    check_blas(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, uint64_t(K), uint64_t(N), K), op, "layout A");
    check_blas(cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, uint64_t(K), uint64_t(M), K), op, "layout B");
    check_blas(cublasLtMatrixLayoutCreate(&plan.c, yt, uint64_t(N), uint64_t(M), N), op, "layout C");
    cublasLtMatmulPreference_t pref = nullptr;
    check_blas(cublasLtMatmulPreferenceCreate(&pref), op, "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = cublas_workspace_bytes_;
    const uint32_t al_a = key.align_w, al_b = key.align_x, al_c = key.align_y;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c));
    auto try_bias_type = [&](DType bt) {
      const int32_t bias_type = int32_t(cuda_type(bt));
      // The heuristic reads the bias pointer's alignment; conversion scratch is 256-byte aligned.
      const void* bias = bt == b.dtype ? b.data : reinterpret_cast<const void*>(uintptr_t(256));
      if (cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                         sizeof(bias_type)) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)) !=
              CUBLAS_STATUS_SUCCESS)
        return false;
      // Tuning off asks for one algorithm, exactly as before tuning existed.
      cublasLtMatmulHeuristicResult_t res[kLtCandidates]{};
      int found = 0;
      const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt_, plan.desc, plan.a, plan.b, plan.c, plan.c, pref,
                                                               gemm_tune_ ? kLtCandidates : 1, res, &found);
      if (hs != CUBLAS_STATUS_SUCCESS || found < 1 || res[0].state != CUBLAS_STATUS_SUCCESS) return false;
      plan.candidates.clear();
      for (int i = 0; i < std::min(found, kLtCandidates); ++i)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) plan.candidates.push_back(res[i].algo);
      plan.algo = res[0].algo;
      return true;
    };
    plan.usable = try_bias_type(b.dtype);
    if (!plan.usable && b.dtype != y.dtype) {
      plan.bias_as = y.dtype;
      plan.usable = try_bias_type(y.dtype);
    } else {
      plan.bias_as = b.dtype;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    plan.tuning.op = lt_op_name(epi, y.dtype);
    plan.tuning.M = M;
    plan.tuning.N = N;
    plan.tuning.K = K;
    plan.tuning.candidates = int(plan.candidates.size());
    it = lt_plans_.emplace(key, plan).first;
  }
  LtPlan& plan = it->second;
  if (!plan.usable) return false;
  const void* bias = b.data;
  if (plan.bias_as != b.dtype) {
    void* conv = scratch(scratch_gemm_, size_t(N) * dtype_size(plan.bias_as), op);
    check(k::launch_convert({b.data, b.dtype, conv, plan.bias_as, N}, stream_), op, "convert bias");
    bias = conv;
  }
  check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), op,
             "set BIAS_POINTER");
  if (!plan.decided) lt_decide(key, plan, x, w, y, op);  // before the real call: timing overwrites y
  check_blas(lt_matmul(plan, plan.algo, x, w, y), op, "cublasLtMatmul");
  return true;
}

cublasStatus_t CudaBackend::lt_matmul(const LtPlan& plan, const cublasLtMatmulAlgo_t& algo, const Tensor& x,
                                      const Tensor& w, const Tensor& y) const {
  const float alpha = 1.f, beta = 0.f;
  return cublasLtMatmul(lt_, plan.desc, &alpha, w.data, plan.a, x.data, plan.b, &beta, y.data, plan.c, y.data, plan.c,
                        &algo, cublas_workspace_, cublas_workspace_bytes_, stream_);
}

CudaBackend::LtChoices& CudaBackend::lt_choices() {
  static LtChoices choices;
  return choices;
}

void CudaBackend::lt_decide(const LtKey& key, LtPlan& plan, const Tensor& x, const Tensor& w, const Tensor& y,
                            const char* op) {
  plan.algo = plan.candidates.front();
  if (gemm_tune_) {
    // Held while timing, so a key is timed once per process even with backends on several threads.
    LtChoices& shared = lt_choices();
    std::lock_guard<std::mutex> lock(shared.mutex);
    if (auto c = shared.by_key.find({device_, key}); c != shared.by_key.end()) {
      plan.algo = c->second.algo;
      plan.tuning = c->second.tuning;
      plan.tuning.tune_ms = 0;
    } else {
      // A pass being recorded leaves the choice to its op-by-op run (where the candidates are timed),
      // so that passes give the same bits with and without graphs.
      if (plan.candidates.size() > 1) not_capturing("GEMM tuning");
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      check(cudaStreamIsCapturing(stream_, &capture), op, "cudaStreamIsCapturing");
      // Under graph capture nothing can be timed: the heuristic's first choice becomes the process's.
      if (plan.candidates.size() > 1 && capture == cudaStreamCaptureStatusNone)
        plan.algo = plan.candidates[size_t(lt_time_candidates(plan, x, w, y))];
      shared.by_key[{device_, key}] = LtChoice{plan.algo, plan.tuning};
    }
  }
  plan.decided = true;
  plan.candidates = {};
}

int CudaBackend::lt_time_candidates(LtPlan& plan, const Tensor& x, const Tensor& w, const Tensor& y) const {
  GemmTuning& t = plan.tuning;
  const auto t0 = std::chrono::steady_clock::now();
  // One warm-up launch each (it also loads the candidate's kernel); a failed launch drops the candidate.
  std::vector<size_t> live;
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    if (lt_matmul(plan, plan.candidates[i], x, w, y) == CUBLAS_STATUS_SUCCESS) {
      live.push_back(i);
    } else {
      cudaGetLastError();
      ++t.failed;
    }
  }
  // Then kLtTimedCalls rounds over the live candidates, each launch between two events of one chain:
  // interleaved, so clock ramp-up or a neighbour's load does not favour whoever runs last.
  const size_t launches = size_t(kLtTimedCalls) * live.size();
  std::vector<cudaEvent_t> ev(launches + 1, nullptr);
  std::vector<bool> ok(plan.candidates.size(), true);
  // Events are an optimisation's tools: if one cannot be made, recorded or read, no timing (no error).
  bool events_ok = !live.empty();
  for (cudaEvent_t& e : ev) events_ok = events_ok && cudaEventCreate(&e) == cudaSuccess;
  events_ok = events_ok && cudaEventRecord(ev[0], stream_) == cudaSuccess;
  for (size_t k = 0; k < launches && events_ok; ++k) {
    const size_t i = live[k % live.size()];
    if (ok[i] && lt_matmul(plan, plan.candidates[i], x, w, y) != CUBLAS_STATUS_SUCCESS) {
      cudaGetLastError();
      ok[i] = false;
      ++t.failed;
    }
    events_ok = cudaEventRecord(ev[k + 1], stream_) == cudaSuccess;
  }
  events_ok = events_ok && cudaEventSynchronize(ev[launches]) == cudaSuccess;
  std::vector<std::vector<float>> ms(plan.candidates.size());
  for (size_t k = 0; k < launches && events_ok; ++k) {
    float e = 0;
    events_ok = cudaEventElapsedTime(&e, ev[k], ev[k + 1]) == cudaSuccess;
    ms[live[k % live.size()]].push_back(e);
  }
  for (cudaEvent_t e : ev)
    if (e) cudaEventDestroy(e);
  t.tune_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!events_ok) {
    cudaGetLastError();
    return 0;
  }
  // Median of each candidate's timed launches; the fastest replaces the heuristic's first only when it
  // is kLtMinGain faster (a smaller difference is within what 3 launches on hot caches can tell).
  std::vector<double> us(plan.candidates.size(), 0);
  int best = -1;
  for (size_t i : live) {
    if (!ok[i]) continue;
    std::sort(ms[i].begin(), ms[i].end());
    us[i] = 1e3 * double(ms[i][ms[i].size() / 2]);
    if (best < 0 || us[i] < us[size_t(best)]) best = int(i);
  }
  if (best < 0) return 0;
  if (us[0] > 0 && us[size_t(best)] > (1.0 - kLtMinGain) * us[0]) best = 0;
  t.measured = true;
  t.chosen = best;
  t.first_us = us[0];
  t.best_us = us[size_t(best)];
  return best;
}

std::vector<CudaBackend::GemmTuning> CudaBackend::gemm_tuning() const {
  std::vector<GemmTuning> out;
  for (const auto& [key, plan] : lt_plans_)
    if (plan.usable && plan.decided) out.push_back(plan.tuning);
  return out;
}

std::string CudaBackend::diagnostics() const {
  int shapes = 0, changed = 0, unmeasured = 0;
  double first = 0, tuned = 0, tune_ms = 0;
  for (const GemmTuning& t : gemm_tuning()) {
    tune_ms += t.tune_ms;
    if (!t.measured) {
      ++unmeasured;
      continue;
    }
    ++shapes;
    changed += t.chosen != 0;
    if (t.first_us > 0) {  // the sums compare like with like: shapes whose first choice was timed
      first += t.first_us;
      tuned += t.best_us;
    }
  }
  char buf[320];
  if (!gemm_tune_)
    std::snprintf(buf, sizeof buf, "gemm tuning: off (the default; VMLA_GEMM_TUNE=1 turns it on), %d shapes on the heuristic's first algorithm",
                  unmeasured);
  else
    std::snprintf(buf, sizeof buf,
                  "gemm tuning: %d shapes, %d of them changed algorithm, sum of per-call time heuristic-first %.1f us "
                  "-> tuned %.1f us (%d more shapes not timed: one candidate or graph capture; timing took %.0f ms)",
                  shapes, changed, first, tuned, unmeasured, tune_ms);
  return buf;
}

void CudaBackend::gemm_batched(const GemmBatched& p) {
  const char* op = "gemm_batched";
  enter(op);
  need_float(p.A, op, "A");
  need_float(p.B, op, "B");
  need_float(p.C, op, "C");
  if (p.M == 0 || p.N == 0 || p.batch == 0) return;
  need(p.M > 0 && p.N > 0 && p.K >= 0 && p.batch > 0, op, "negative size");
  const int64_t rowsA = p.transA ? p.K : p.M, colsA = p.transA ? p.M : p.K;
  const int64_t rowsB = p.transB ? p.N : p.K, colsB = p.transB ? p.K : p.N;
  need(p.lda >= std::max<int64_t>(colsA, 1) && p.ldb >= std::max<int64_t>(colsB, 1) && p.ldc >= p.N, op,
       "leading dimension smaller than the row length");
  if (p.K > 0) {
    need((p.batch - 1) * p.strideA + (rowsA - 1) * p.lda + colsA <= p.A.numel(), op,
         "A " + p.A.shape.str() + " is too small for the described batch");
    need((p.batch - 1) * p.strideB + (rowsB - 1) * p.ldb + colsB <= p.B.numel(), op,
         "B " + p.B.shape.str() + " is too small for the described batch");
  }
  need((p.batch - 1) * p.strideC + (p.M - 1) * p.ldc + p.N <= p.C.numel(), op,
       "C " + p.C.shape.str() + " is too small for the described batch");
  Gemm g;
  g.A = p.A.data;
  g.at = p.A.dtype;
  g.transA = p.transA;
  g.lda = p.lda;
  g.strideA = p.strideA;
  g.B = p.B.data;
  g.bt = p.B.dtype;
  g.transB = p.transB;
  g.ldb = p.ldb;
  g.strideB = p.strideB;
  g.C = p.C.data;
  g.ct = p.C.dtype;
  g.ldc = p.ldc;
  g.strideC = p.strideC;
  g.M = p.M;
  g.N = p.N;
  g.K = p.K;
  g.batch = p.batch;
  g.alpha = p.alpha;
  g.beta = p.beta;
  gemm(g, op);
}

// ---- normalisation --------------------------------------------------------------------------------

namespace {

// The checked parameters of a LayerNorm (rms = false) or RMSNorm (rms = true) over the last dim of
// x, or over the column window x_col of x (core/tensor/backend.h; y gives its width).
k::NormParams norm_params(Tensor x, Tensor w, Tensor b, Tensor y, float eps, bool rms, const char* op,
                          int64_t x_col = kAllColumns) {
  need_float(x, op, "x");
  need_float(y, op, "y");
  need(rows_of(x) == rows_of(y), op, "x " + x.shape.str() + " and y " + y.shape.str() + " differ in rows");
  const int64_t col = window_col(op, "x", x, x_col, cols_of(y));
  if (x_col != kAllColumns) need(disjoint(x.data, x.bytes(), y.data, y.bytes()), op, "a column window of x overlaps y");
  k::NormParams p;
  p.x = byte_offset(x.data, col, x.dtype);
  p.xt = x.dtype;
  p.ldx = cols_of(x);
  p.y = y.data;
  p.yt = y.dtype;
  p.rows = rows_of(y);
  p.D = cols_of(y);
  p.eps = eps;
  p.rms = rms;
  if (!w.empty()) {
    need_float(w, op, "w");
    need(w.numel() == p.D, op, "w expected [" + std::to_string(p.D) + "], got " + w.shape.str());
    p.w = w.data;
    p.wt = w.dtype;
  }
  if (!b.empty()) {
    need_float(b, op, "b");
    need(b.numel() == p.D, op, "b expected [" + std::to_string(p.D) + "], got " + b.shape.str());
    p.b = b.data;
    p.bt = b.dtype;
  }
  return p;
}

}  // namespace

void CudaBackend::layer_norm(Tensor x, Tensor w, Tensor b, Tensor y, float eps) {
  const char* op = "layer_norm";
  enter(op);
  check(k::launch_norm(norm_params(x, w, b, y, eps, false, op), stream_), op, "kernel");
}

void CudaBackend::rms_norm(Tensor x, Tensor w, Tensor y, float eps, int64_t x_col) {
  const char* op = "rms_norm";
  enter(op);
  check(k::launch_norm(norm_params(x, w, Tensor{}, y, eps, true, op, x_col), stream_), op, "kernel");
}

void CudaBackend::ln_modulate(Tensor x, Tensor mod, int shift_idx, int scale_idx, int64_t rows_per_frame, Tensor y,
                              float eps) {
  const char* op = "ln_modulate";
  enter(op);
  need_float(x, op, "x");
  need_float(mod, op, "mod");
  need_float(y, op, "y");
  need_numel(x, y, op, "x", "y");
  need(cols_of(y) == cols_of(x), op, "x " + x.shape.str() + " and y " + y.shape.str() + " differ in the last dim");
  const int64_t T = rows_of(x), D = cols_of(x);
  need(rows_per_frame > 0, op, "rows_per_frame must be positive");
  need(shift_idx >= 0 && scale_idx >= 0 && (int64_t(std::max(shift_idx, scale_idx)) + 1) * D <= cols_of(mod), op,
       "mod " + mod.shape.str() + " has no chunks " + std::to_string(shift_idx) + " and " + std::to_string(scale_idx) +
           " of width " + std::to_string(D));
  need(rows_of(mod) >= (T + rows_per_frame - 1) / rows_per_frame, op,
       "mod " + mod.shape.str() + " has fewer frames than " + std::to_string(T) + " rows / " +
           std::to_string(rows_per_frame) + " per frame");
  k::NormParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.y = y.data;
  p.yt = y.dtype;
  p.rows = T;
  p.D = D;
  p.eps = eps;
  p.mod = mod.data;
  p.mt = mod.dtype;
  p.mod_cols = cols_of(mod);
  p.rows_per_frame = rows_per_frame;
  p.shift_idx = shift_idx;
  p.scale_idx = scale_idx;
  check(k::launch_norm(p, stream_), op, "kernel");
}

void CudaBackend::gated_residual(Tensor x, Tensor y, Tensor mod, int gate_idx, int64_t rows_per_frame) {
  const char* op = "gated_residual";
  enter(op);
  need_float(x, op, "x");
  need_float(y, op, "y");
  need_numel(x, y, op, "x", "y");
  const int64_t T = rows_of(x), D = cols_of(x);
  k::GatedResidualParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.y = y.data;
  p.yt = y.dtype;
  p.T = T;
  p.D = D;
  p.gate_idx = gate_idx;
  if (gate_idx >= 0) {
    need_float(mod, op, "mod");
    need(rows_per_frame > 0, op, "rows_per_frame must be positive");
    need((int64_t(gate_idx) + 1) * D <= cols_of(mod), op,
         "mod " + mod.shape.str() + " has no chunk " + std::to_string(gate_idx) + " of width " + std::to_string(D));
    need(rows_of(mod) >= (T + rows_per_frame - 1) / rows_per_frame, op,
         "mod " + mod.shape.str() + " has fewer frames than " + std::to_string(T) + " rows / " +
             std::to_string(rows_per_frame) + " per frame");
    p.mod = mod.data;
    p.mt = mod.dtype;
    p.mod_cols = cols_of(mod);
    p.rows_per_frame = rows_per_frame;
  }
  check(k::launch_gated_residual(p, stream_), op, "kernel");
}

// ---- attention ------------------------------------------------------------------------------------

namespace {

// Checked parameters of rope on x (in place unless the caller sets src).
k::RopeParams rope_params(const char* op, Tensor x, int heads, int head_stride, int offset, const RopeSpec& spec,
                          Tensor pos) {
  need_float(x, op, "x");
  need_dtype(pos, DType::I32, op, "pos");
  need_dtype(spec.axes, DType::I32, op, "spec.axes");
  need_float(spec.freqs, op, "spec.freqs");
  const int64_t T = rows_of(x);
  need(heads > 0 && cols_of(x) == int64_t(heads) * head_stride, op,
       "x " + x.shape.str() + " is not [T, heads*head_stride] with heads " + std::to_string(heads) +
           ", head_stride " + std::to_string(head_stride));
  need(offset >= 0 && spec.npairs >= 0 && offset + 2 * spec.npairs <= head_stride, op,
       std::to_string(spec.npairs) + " pairs from column " + std::to_string(offset) + " exceed head_stride " +
           std::to_string(head_stride));
  need(spec.freqs.numel() >= spec.npairs && spec.axes.numel() >= spec.npairs, op,
       "spec.freqs / spec.axes hold fewer than npairs = " + std::to_string(spec.npairs) + " values");
  need_shape(pos, Shape{T, 3}, op, "pos");
  k::RopeParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.T = T;
  p.heads = heads;
  p.head_stride = head_stride;
  p.offset = offset;
  p.npairs = spec.npairs;
  p.freqs = spec.freqs.data;
  p.ft = spec.freqs.dtype;
  p.axes = spec.axes.ptr<const int32_t>();
  p.pos = pos.ptr<const int32_t>();
  return p;
}

}  // namespace

void CudaBackend::rope(Tensor x, int heads, int head_stride, int offset, const RopeSpec& spec, Tensor pos) {
  const char* op = "rope";
  enter(op);
  check(k::launch_rope(rope_params(op, x, heads, head_stride, offset, spec, pos), stream_), op, "kernel");
}

void CudaBackend::rope_copy(Tensor src, Tensor dst, int heads, int head_stride, int offset, const RopeSpec& spec,
                            Tensor pos, int64_t src_col) {
  const char* op = "rope_copy";
  need(rows_of(src) == rows_of(dst) && src.dtype == dst.dtype, op,
       "src " + src.shape.str() + " " + std::string(dtype_name(src.dtype)) + " and dst " + dst.shape.str() + " " +
           std::string(dtype_name(dst.dtype)) + " differ");
  const int64_t col = window_col(op, "src", src, src_col, cols_of(dst));
  if (offset != 0 || 2 * spec.npairs != head_stride) {  // columns left as they are: copy, then rotate
    Backend::rope_copy(src, dst, heads, head_stride, offset, spec, pos, src_col);
    return;
  }
  enter(op);
  need(disjoint(src.data, src.bytes(), dst.data, dst.bytes()), op, "src and dst overlap (use rope)");
  k::RopeParams p = rope_params(op, dst, heads, head_stride, offset, spec, pos);
  p.src = byte_offset(src.data, col, src.dtype);
  p.src_ld = cols_of(src);
  check(k::launch_rope(p, stream_), op, "kernel");
}

void CudaBackend::rms_norm_rope(Tensor x, Tensor w, Tensor y, float eps, int heads, int head_dim, const RopeSpec& spec,
                                Tensor pos, int64_t x_col) {
  const char* op = "rms_norm_rope";
  if (!fused_norm_rope_ || spec.npairs > k::kNormRopeMaxPairs) {  // two passes: rms_norm, then rope
    Backend::rms_norm_rope(x, w, y, eps, heads, head_dim, spec, pos, x_col);
    return;
  }
  enter(op);
  const k::NormParams n = norm_params(x, w, Tensor{}, y, eps, true, op, x_col);
  const k::RopeParams r = rope_params(op, y, heads, head_dim, 0, spec, pos);
  k::NormRopeParams p;
  p.x = n.x;
  p.xt = n.xt;
  p.ldx = n.ldx;
  p.y = n.y;
  p.yt = n.yt;
  p.rows = n.rows;
  p.D = n.D;
  p.eps = eps;
  p.w = n.w;
  p.wt = n.wt;
  p.head_dim = head_dim;
  p.npairs = r.npairs;
  p.freqs = r.freqs;
  p.ft = r.ft;
  p.axes = r.axes;
  p.pos = r.pos;
  check(k::launch_norm_rope(p, stream_), op, "kernel");
}

void CudaBackend::attention(Tensor q, Tensor kt, Tensor v, Tensor out, int heads, int kv_heads, int dk, int dv,
                            float scale) {
  // Two names only for the op profile: self-attention over the window vs short (text) contexts.
  const char* op = rows_of(kt) >= 2048 ? "attention" : "attention (short kv)";
  enter(op);
  need_float(q, op, "q");
  need_float(kt, op, "k");
  need_float(v, op, "v");
  need_float(out, op, "out");
  need(heads > 0 && kv_heads > 0 && heads % kv_heads == 0, op,
       "kv_heads " + std::to_string(kv_heads) + " must divide heads " + std::to_string(heads));
  need(dk > 0 && dv > 0 && dk <= k::kAttentionMaxHeadDim && dv <= k::kAttentionMaxHeadDim, op,
       "dk " + std::to_string(dk) + " and dv " + std::to_string(dv) + " must be in [1, " +
           std::to_string(k::kAttentionMaxHeadDim) + "]");
  const int64_t Tq = rows_of(q), Tk = rows_of(kt);
  need(cols_of(q) == int64_t(heads) * dk, op, "q " + q.shape.str() + " is not [Tq, heads*dk]");
  need(cols_of(kt) == int64_t(kv_heads) * dk, op, "k " + kt.shape.str() + " is not [Tk, kv_heads*dk]");
  need(rows_of(v) == Tk && cols_of(v) == int64_t(kv_heads) * dv, op,
       "v " + v.shape.str() + " is not [" + std::to_string(Tk) + ", kv_heads*dv]");
  need(rows_of(out) == Tq && cols_of(out) == int64_t(heads) * dv, op,
       "out expected [" + std::to_string(Tq) + ", " + std::to_string(int64_t(heads) * dv) + "], got " +
           out.shape.str());
  need(Tk > 0 || Tq == 0, op, "no keys");
  k::AttentionParams p;
  p.q = q.data;
  p.k = kt.data;
  p.v = v.data;
  p.out = out.data;
  p.qt = q.dtype;
  p.kt = kt.dtype;
  p.vt = v.dtype;
  p.ot = out.dtype;
  p.Tq = Tq;
  p.Tk = Tk;
  p.heads = heads;
  p.kv_heads = kv_heads;
  p.dk = dk;
  p.dv = dv;
  p.scale = scale;
  p.allow_tensor_cores = tensor_core_attention_;
  p.allow_sm90 = sm90_attention_;
  check(k::launch_attention(p, stream_), op, "kernel");
}

// ---- video layout ---------------------------------------------------------------------------------

namespace {

// Checked parameters of patchify (x -> tokens) and its inverse; tokens are [F*h*w, C*ph*pw] (any
// leading shape with those rows and columns).
k::PatchifyParams patch_params(Tensor x, Tensor tokens, int ph, int pw, bool inverse, const char* op) {
  need_float(x, op, "x");
  need_float(tokens, op, "tokens");
  need(x.ndim() == 4, op, "x must be [F, C, H, W], got " + x.shape.str());
  need(ph > 0 && pw > 0 && x.dim(2) % ph == 0 && x.dim(3) % pw == 0, op,
       "x " + x.shape.str() + " is not divisible into " + std::to_string(ph) + "x" + std::to_string(pw) + " patches");
  const int64_t F = x.dim(0), C = x.dim(1), h = x.dim(2) / ph, w = x.dim(3) / pw;
  need(rows_of(tokens) == F * h * w && cols_of(tokens) == C * ph * pw, op,
       "tokens expected [" + std::to_string(F * h * w) + ", " + std::to_string(C * ph * pw) + "], got " +
           tokens.shape.str());
  k::PatchifyParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.tokens = tokens.data;
  p.tt = tokens.dtype;
  p.F = F;
  p.C = C;
  p.H = x.dim(2);
  p.W = x.dim(3);
  p.ph = ph;
  p.pw = pw;
  p.inverse = inverse;
  return p;
}

}  // namespace

void CudaBackend::patchify(Tensor x, int ph, int pw, Tensor tokens) {
  const char* op = "patchify";
  enter(op);
  check(k::launch_patchify(patch_params(x, tokens, ph, pw, false, op), stream_), op, "kernel");
}

void CudaBackend::unpatchify(Tensor tokens, int ph, int pw, Tensor x) {
  const char* op = "unpatchify";
  enter(op);
  check(k::launch_patchify(patch_params(x, tokens, ph, pw, true, op), stream_), op, "kernel");
}

void CudaBackend::conv2d(Tensor x, Tensor w, Tensor b, Tensor y, int stride, int pad, Activation act) {
  const char* op = "conv2d";
  enter(op);
  need_float(x, op, "x");
  need_float(w, op, "w");
  need_float(y, op, "y");
  need(x.ndim() == 4 && w.ndim() == 4, op,
       "x " + x.shape.str() + " must be [N, Cin, H, W] and w " + w.shape.str() + " [Cout, Cin, kh, kw]");
  need(stride > 0 && pad >= 0, op, "stride must be positive and pad non-negative");
  const int64_t N = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  need(w.dim(1) == Cin, op, "x " + x.shape.str() + " has " + std::to_string(Cin) + " channels, w " +
                                w.shape.str() + " expects " + std::to_string(w.dim(1)));
  const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
  need(Ho > 0 && Wo > 0, op, "kernel larger than the padded input");
  need_shape(y, Shape{N, Cout, Ho, Wo}, op, "y");
  if (!b.empty()) {
    need_float(b, op, "b");
    need(b.numel() == Cout, op, "b expected [" + std::to_string(Cout) + "], got " + b.shape.str());
  }
  if (N == 0) return;
  const int64_t P = Ho * Wo, Kc = Cin * kh * kw;
  const DType T = w.dtype;
  Gemm g;
  g.A = w.data;
  g.at = w.dtype;
  g.lda = Kc;
  g.strideA = 0;
  g.ldb = P;
  g.strideB = Kc * P;
  g.ct = y.dtype;
  g.ldc = P;
  g.strideC = Cout * P;
  g.M = Cout;
  g.N = P;
  g.K = Kc;
  if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
    g.B = x.data;
    g.bt = x.dtype;
    g.C = y.data;
    g.batch = N;
    gemm(g, op);
  } else {
    // im2col in chunks of images so the column buffer stays bounded.
    const size_t per_image = size_t(Kc * P) * dtype_size(T);
    const size_t budget = size_t(256) << 20;
    const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(budget / std::max<size_t>(per_image, 1))));
    void* col = scratch(scratch_op_, per_image * size_t(nb), op);
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
      const int64_t cnt = std::min(nb, N - n0);
      k::Im2colParams ip;
      ip.x = byte_offset(x.data, n0 * Cin * H * W, x.dtype);
      ip.xt = x.dtype;
      ip.col = col;
      ip.ct = T;
      ip.N = cnt;
      ip.Cin = Cin;
      ip.H = H;
      ip.W = W;
      ip.Ho = Ho;
      ip.Wo = Wo;
      ip.kh = int(kh);
      ip.kw = int(kw);
      ip.stride = stride;
      ip.pad = pad;
      check(k::launch_im2col(ip, stream_), op, "im2col kernel");
      g.B = col;
      g.bt = T;
      g.C = byte_offset(y.data, n0 * Cout * P, y.dtype);
      g.batch = cnt;
      gemm(g, op);
    }
  }
  if (!b.empty() || act != Activation::None) {
    k::BiasActParams p;
    p.src = y.data;
    p.srct = y.dtype;
    p.bias = b.empty() ? nullptr : b.data;
    p.bt = b.dtype;
    p.y = y.data;
    p.yt = y.dtype;
    p.n = y.numel();
    p.inner = P;
    p.nb = Cout;
    p.act = int(act);
    check(k::launch_bias_act(p, stream_), op, "bias/activation kernel");
  }
}

void CudaBackend::upsample2x(Tensor x, Tensor y) {
  const char* op = "upsample2x";
  enter(op);
  need_float(x, op, "x");
  need_float(y, op, "y");
  need(x.ndim() == 4, op, "x must be [N, C, H, W], got " + x.shape.str());
  need_shape(y, Shape{x.dim(0), x.dim(1), 2 * x.dim(2), 2 * x.dim(3)}, op, "y");
  k::Upsample2xParams p;
  p.x = x.data;
  p.xt = x.dtype;
  p.y = y.data;
  p.yt = y.dtype;
  p.NC = x.dim(0) * x.dim(1);
  p.H = x.dim(2);
  p.W = x.dim(3);
  check(k::launch_upsample2x(p, stream_), op, "kernel");
}

void CudaBackend::embedding(Tensor table, const int32_t* ids, int64_t n, Tensor out) {
  const char* op = "embedding";
  enter(op);
  need_float(table, op, "table");
  need_float(out, op, "out");
  need(table.ndim() == 2, op, "table must be [vocab, D], got " + table.shape.str());
  const int64_t V = table.dim(0), D = table.dim(1);
  need(rows_of(out) == n && cols_of(out) == D, op,
       "out expected [" + std::to_string(n) + ", " + std::to_string(D) + "], got " + out.shape.str());
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V)
      throw Error(std::string(op) + ": token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary of " + std::to_string(V) + " entries");
  check(k::launch_embedding(table.data, table.dtype, out.data, out.dtype, D, ids, n, stream_), op, "kernel");
}

void CudaBackend::to_rgb8(Tensor x, Tensor rgb) {
  const char* op = "to_rgb8";
  enter(op);
  need_float(x, op, "x");
  need_dtype(rgb, DType::U8, op, "rgb");
  need(x.ndim() == 4 && x.dim(1) == 3, op, "x must be [F, 3, H, W], got " + x.shape.str());
  need_shape(rgb, Shape{x.dim(0), x.dim(2), x.dim(3), 3}, op, "rgb");
  k::ToRgb8Params p;
  p.x = x.data;
  p.xt = x.dtype;
  p.rgb = rgb.ptr<uint8_t>();
  p.F = x.dim(0);
  p.HW = x.dim(2) * x.dim(3);
  check(k::launch_to_rgb8(p, stream_), op, "kernel");
}

// ---- factory --------------------------------------------------------------------------------------

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver (cudaErrorInsufficientDriver) or no device: not an error here
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> create_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace vmla
