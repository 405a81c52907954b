#pragma once
// CUDA backend: bf16 storage, fp32 arithmetic, every op enqueued on one stream owned by the backend
// (stream-ordered, no host synchronisation inside ops). Kernels live in kernels/, GEMMs in cuBLAS
// (cuBLASLt where a bias/activation epilogue is fused).
// Include only from core/backend/cuda (and tools that need the stream, e.g. GL interop).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <tuple>
#include <vector>

#include "core/tensor/backend.h"

namespace vmla {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  Device device() const override { return Device::CUDA; }
  DType act_dtype() const override { return DType::BF16; }
  MemoryInfo memory_info() const override;
  bool benefits_from_warm_up() const override { return true; }
  std::string diagnostics() const override;  // the GEMM tuning summary (see gemm_tuning())
  bool pass_graphs_enabled() const override { return graphs_; }
  std::unique_ptr<PassGraphs> new_pass_graphs() override;  // cuda_graphs.cpp

  Buffer alloc_bytes(size_t bytes) override;
  void free_bytes(void* p, size_t bytes) override;
  void upload(const void* host, DType host_dtype, Tensor dst) override;
  void download(Tensor src, void* host, DType host_dtype) override;
  void synchronize() override;

  void copy(Tensor src, Tensor dst) override;
  void copy_rows(Tensor src, int64_t src_row, Tensor dst, int64_t dst_row, int64_t n,
                 int64_t src_col = kAllColumns) override;
  void fill(Tensor dst, float value) override;
  void concat_heads(Tensor a, int da, Tensor b, int db, int heads, Tensor out) override;
  void concat_channels(Tensor a, Tensor b, Tensor out) override;

  void axpby(float alpha, Tensor x, float beta, Tensor y, Tensor out) override;
  void activation(Tensor x, Tensor out, Activation act) override;
  void tanh_clamp(Tensor x, Tensor out, float c) override;
  void add_modulation(Tensor src, Tensor table, Tensor out) override;

  void linear(Tensor x, Tensor w, Tensor b, Tensor y, Activation act = Activation::None) override;
  void gemm_batched(const GemmBatched& p) override;

  void layer_norm(Tensor x, Tensor w, Tensor b, Tensor y, float eps) override;
  void rms_norm(Tensor x, Tensor w, Tensor y, float eps, int64_t x_col = kAllColumns) override;
  void ln_modulate(Tensor x, Tensor mod, int shift_idx, int scale_idx, int64_t rows_per_frame, Tensor y,
                   float eps) override;
  void gated_residual(Tensor x, Tensor y, Tensor mod, int gate_idx, int64_t rows_per_frame) override;

  void rope(Tensor x, int heads, int head_stride, int offset, const RopeSpec& spec, Tensor pos) override;
  void rope_copy(Tensor src, Tensor dst, int heads, int head_stride, int offset, const RopeSpec& spec,
                 Tensor pos, int64_t src_col = kAllColumns) override;
  void rms_norm_rope(Tensor x, Tensor w, Tensor y, float eps, int heads, int head_dim, const RopeSpec& spec, Tensor pos,
                     int64_t x_col = kAllColumns) override;
  void attention(Tensor q, Tensor k, Tensor v, Tensor out, int heads, int kv_heads, int dk, int dv,
                 float scale) override;

  void patchify(Tensor x, int ph, int pw, Tensor tokens) override;
  void unpatchify(Tensor tokens, int ph, int pw, Tensor x) override;
  void conv2d(Tensor x, Tensor w, Tensor b, Tensor y, int stride, int pad,
              Activation act = Activation::None) override;
  void upsample2x(Tensor x, Tensor y) override;
  void embedding(Tensor table, const int32_t* ids, int64_t n, Tensor out) override;
  void to_rgb8(Tensor x, Tensor rgb) override;

  int device_index() const { return device_; }
  cudaStream_t stream() const { return stream_; }

  // The algorithm choice of each cuBLASLt GEMM plan (fused linear(), one per shape). With tuning on
  // (VMLA_GEMM_TUNE=1; off by default, so that runs are bit-exact) the first call of a shape times
  // every algorithm the heuristic offers (up to kLtCandidates) on that call's operands and keeps the
  // fastest, unless it beats the heuristic's first choice by less than kLtMinGain.
  struct GemmTuning {
    std::string op;  // "linear bias gelu -> BF16", ...
    int64_t M = 0, N = 0, K = 0;
    int chosen = 0;          // index in the heuristic's list; 0 is its first choice
    int candidates = 0;      // algorithms the heuristic returned
    int failed = 0;          // of those, how many failed to launch (skipped)
    bool measured = false;   // false: tuning off, a single candidate, or first called during graph capture
    double best_us = 0;      // measured time of one call with the chosen algorithm (median of its launches)
    double first_us = 0;     // the same for the heuristic's first choice (0 if it failed to launch)
    double tune_ms = 0;      // host time this backend spent timing (kernel loading and one synchronisation
                             // included; 0 where it took the process's earlier choice)
  };
  std::vector<GemmTuning> gemm_tuning() const;
  static constexpr int kLtCandidates = 8;
  static constexpr double kLtMinGain = 0.03;

  // Graph capture (cuda_graphs.cpp). capture() records what body enqueues on the stream into a
  // graph (thread-local capture mode) and returns it, or null when the recording failed: an op
  // that would allocate, synchronise or transfer (they throw while capturing), a CUDA error, any
  // exception of body; the caller then runs body op by op, which reports a real error as usual.
  // The returned graph belongs to the caller (cudaGraphDestroy). `why` gets the reason of a failure.
  cudaGraph_t capture(const std::function<void()>& body, std::string* why);
  bool capturing() const { return capturing_; }
  // Advances whenever memory that ops use without a Tensor argument moves (the scratch blocks):
  // a graph recorded at another epoch may name freed memory and is recorded again.
  uint64_t memory_epoch() const { return memory_epoch_; }

 private:
  // Row-major GEMM description (see Backend::GemmBatched), raw pointers.
  struct Gemm {
    const void* A = nullptr;
    DType at = DType::BF16;
    bool transA = false;
    int64_t lda = 0, strideA = 0;
    const void* B = nullptr;
    DType bt = DType::BF16;
    bool transB = false;
    int64_t ldb = 0, strideB = 0;
    void* C = nullptr;
    DType ct = DType::BF16;
    int64_t ldc = 0, strideC = 0;
    int64_t M = 0, N = 0, K = 0, batch = 1;
    float alpha = 1.f, beta = 0.f;
  };
  void gemm(const Gemm& g, const char* op);

  // linear() through cuBLASLt with the bias (+ GELU / ReLU) fused into the GEMM's epilogue, for
  // bf16 x and w, bf16 or f32 y and bias. One plan (descriptors + heuristic algorithm) per shape,
  // epilogue, dtypes and pointer alignment, built on first use. Returns false when the case is not
  // covered (the caller falls back to GEMM + bias/activation kernel).
  struct LtKey {
    int64_t M = 0, N = 0, K = 0;
    int epilogue = 0, yt = 0, bt = 0;
    unsigned align_x = 0, align_w = 0, align_y = 0, align_b = 0;
    bool operator<(const LtKey& o) const {
      return std::tie(M, N, K, epilogue, yt, bt, align_x, align_w, align_y, align_b) <
             std::tie(o.M, o.N, o.K, o.epilogue, o.yt, o.bt, o.align_x, o.align_w, o.align_y, o.align_b);
    }
  };
  struct LtPlan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's list, kept until the choice is made
    bool decided = false;        // algo is final (chosen at the plan's first call)
    GemmTuning tuning;
    DType bias_as = DType::F32;  // dtype the epilogue reads the bias in (converted per call if it differs)
    bool usable = false;         // false: no algorithm for this case; use the fallback
  };
  bool linear_fused(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, Activation act,
                    const char* op);
  cublasStatus_t lt_matmul(const LtPlan& plan, const cublasLtMatmulAlgo_t& algo, const Tensor& x, const Tensor& w,
                           const Tensor& y) const;
  // Makes plan.algo final at the plan's first call (bias pointer already set): the process-wide
  // choice for this key if there is one, else the fastest candidate by timing (tuning on, more than
  // one candidate, stream not capturing a graph), else the heuristic's first.
  void lt_decide(const LtKey& key, LtPlan& plan, const Tensor& x, const Tensor& w, const Tensor& y, const char* op);
  // Times each candidate (1 warm-up + kLtTimedCalls launches, events on the stream); fills plan.tuning
  // and returns the index to keep (0 when nothing could be timed). Overwrites y.
  int lt_time_candidates(LtPlan& plan, const Tensor& x, const Tensor& w, const Tensor& y) const;
  static constexpr int kLtTimedCalls = 3;
  // The choice per (device, key) is shared by every CudaBackend of the process, so two backends (a
  // model reloaded in the studio, two test fixtures) give bit-identical results. Tuning off neither
  // reads nor writes it.
  struct LtChoice {
    cublasLtMatmulAlgo_t algo{};
    GemmTuning tuning;
  };
  struct LtChoices {
    std::mutex mutex;
    std::map<std::pair<int, LtKey>, LtChoice> by_key;
  };
  static LtChoices& lt_choices();

  // Grow-only device scratch. Growth frees the old block stream-ordered (cudaFreeAsync), so work
  // already enqueued keeps using it safely and nothing waits on the host. Two independent slots:
  // one for an op's own temporaries (im2col), one for the GEMM's dtype conversions.
  struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
  };
  void* scratch(Scratch& s, size_t bytes, const char* op);

  void enter(const char* op) const;  // makes this backend's device current for the calling thread
  void not_capturing(const char* op) const;  // throws DeviceError while capture() runs its body

  // Op profile (VMLA_CUDA_PROFILE=1): enter() records an event per stream op; at each host
  // synchronisation the GPU time between consecutive events is added to the op that started the
  // interval; the destructor prints the table (stderr). Off: no events, no cost.
  void profile_mark(const char* op) const;
  void profile_flush() const;
  struct ProfMark {
    cudaEvent_t ev = nullptr;
    const char* op = nullptr;
  };
  struct ProfStat {
    double ms = 0;
    int64_t calls = 0;
  };
  bool profile_ = false;
  mutable std::vector<ProfMark> prof_chain_;
  mutable std::vector<cudaEvent_t> prof_pool_;
  mutable std::map<std::string, ProfStat> prof_stats_;

  // Pinned staging for upload/download: two slots used alternately, each guarded by an event
  // recorded after its copy, so the host only waits for a slot's previous copy.
  static constexpr size_t kStagingBytes = size_t(8) << 20;
  struct Staging {
    void* host = nullptr;
    cudaEvent_t done = nullptr;
  };
  Staging& staging_slot(const char* op);

  int device_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* cublas_workspace_ = nullptr;
  size_t cublas_workspace_bytes_ = 0;
  std::map<LtKey, LtPlan> lt_plans_;
  // Switches for A/B measurements (environment, read once at construction):
  // VMLA_CUDA_SIMPLE_ATTENTION=1 keeps every attention on the simple fp32 kernel,
  // VMLA_CUDA_FUSED_LINEAR=0 keeps linear() on GEMM + bias/activation kernel,
  // VMLA_CUDA_FUSED_NORM_ROPE=0 runs rms_norm_rope() as rms_norm, then rope (two passes),
  // Off (the default) keeps every cuBLASLt plan on the heuristic's first algorithm (no timing);
  // VMLA_GEMM_TUNE=1 times the candidates.
  bool tensor_core_attention_ = true;
  bool sm90_attention_ = true;  // VMLA_CUDA_SM90_ATTENTION=0: the mma.sync kernel on sm_90 too
  bool fused_linear_ = true;
  bool fused_norm_rope_ = true;
  bool gemm_tune_ = false;
  // VMLA_CUDA_GRAPHS=1: new_pass_graphs() records passes as CUDA graphs and replays them (off by
  // default; always off with VMLA_CUDA_PROFILE=1, whose per-op events cannot be recorded).
  bool graphs_ = false;
  bool capturing_ = false;
  uint64_t memory_epoch_ = 0;
  Scratch scratch_op_, scratch_gemm_;
  Staging staging_[2];
  int next_staging_ = 0;
  std::atomic<size_t> allocated_{0};
};

}  // namespace vmla
