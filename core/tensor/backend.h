#pragma once
// Backend: the compute interface the model and runtime are written against.
//
// Every op takes plain Tensors (contiguous, row-major) that live on this backend's device.
// Conventions shared by all backends:
//  - Each floating tensor argument may be F32, F16 or BF16 independently; ops read any of them and
//    write the output's dtype. Arithmetic happens in fp32 (fp32 accumulation).
//  - The CPU backend only ever allocates F32; the CUDA backend stores activations in act_dtype()
//    (BF16) and keeps the residual stream and modulation tensors in F32 (the model asks for them).
//  - "rows" means the tensor seen as [rows(), cols()] (all leading dims flattened).
//  - Ops never synchronise with the host, except download() and synchronize().
//  - Shapes are checked; a mismatch throws ShapeError naming the op and both shapes.
//  - Optional tensor arguments (bias, affine weights, mod with gate_idx < 0) are absent when their
//    data is null: a default Tensor{} has shape [] and numel() 1, so never test numel() for absence.
//  - Outputs must not overlap inputs unless an op says it may alias (axpby, activation).
//  - Column windows: an op with a `*_col` argument reads, with kAllColumns (the default), the whole
//    tensor, whose shape must then match; with a column c >= 0 it reads the columns [c, c + n) of
//    each row of a tensor at least that wide (n: the other tensor's width), a strided read whose row
//    stride (the leading dimension) is the tensor's cols. That is how one slice of a fused
//    projection's output is read in place. A window never overlaps the op's output.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace vmla {

enum class Activation : uint8_t { None = 0, GeluTanh = 1, Silu = 2, Relu = 3 };

constexpr int64_t kAllColumns = -1;  // a `*_col` argument: no column window (see above)

// Owning device memory; freed through the backend that made it.
class Buffer {
 public:
  Buffer() = default;
  Buffer(class Backend* be, void* p, size_t bytes) : be_(be), p_(p), bytes_(bytes) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();
  void* data() const { return p_; }
  size_t bytes() const { return bytes_; }
  Tensor as(DType dt, Shape s) const;  // a view of the whole buffer (or its prefix)

 private:
  class Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// A tensor together with the buffer it owns (weights, caches, long-lived state).
struct OwnedTensor {
  Buffer buf;
  Tensor t;
};

// Parameters of the rotary embedding: per rotated pair p (0..npairs-1) an axis a(p) in {0,1,2}
// (t, h, w) and a frequency f(p); the pair at columns (off+2p, off+2p+1) of every head is rotated by
// angle = pos[token][a(p)] * f(p). Adjacent-element pairs (Wan convention, not rotate-half).
struct RopeSpec {
  Tensor freqs;  // [npairs] F32
  Tensor axes;   // [npairs] I32
  int npairs = 0;
};

struct MemoryInfo {
  size_t device_used = 0, device_total = 0;  // 0 when unknown
  size_t allocated_by_engine = 0;
};

// Recorded passes: a cache of op sequences that a backend can replay instead of issuing their ops one
// by one (CUDA graphs), made by Backend::new_pass_graphs() for one caller (a Session).
// run(key, body): body only enqueues ops on the backend (no upload, download, synchronize or
// allocation), and every launch it makes is a function of the key: `layout` decides the sequence of
// launches, their shapes and host-side values and the scratch addresses (e.g. the arena's state),
// `addresses` are the caller's tensors the launches name, which may differ between runs of one
// layout. Data that differs between runs of one key is read from device memory. The backend then
// either runs body or replays what an earlier body with the same layout enqueued, retargeted to the
// addresses: the same ops in the same order, the same bits.
struct PassKey {
  std::vector<uint64_t> layout;
  std::vector<uint64_t> addresses;
};

class PassGraphs {
 public:
  virtual ~PassGraphs() = default;
  virtual void run(const PassKey& key, const std::function<void()>& body) = 0;
  struct Stats {
    int64_t eager = 0;     // bodies run op by op (graphs off, first run of a key, capture failed)
    int64_t captured = 0;  // bodies recorded into a new graph (then launched)
    int64_t updated = 0;   // bodies recorded and applied to a graph of the layout in place (new addresses
                           // or moved scratch; cudaGraphExecUpdate), then launched
    int64_t replayed = 0;  // launches of a graph without running body
    int64_t failed = 0;    // recordings that failed (body then ran op by op)
    int64_t graphs = 0;    // graphs held now
    std::string last_failure;
  };
  virtual Stats stats() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;         // "cpu", "cuda"
  virtual std::string device_name() const = 0;  // "AMD EPYC ... (2 threads)", "NVIDIA H100 80GB HBM3"
  virtual Device device() const = 0;
  virtual DType act_dtype() const = 0;  // storage type for activations and weights
  virtual MemoryInfo memory_info() const = 0;
  // Whether a start-up warm-up (core/runtime/warm_up.h) pays for itself: true where the first use of
  // an op costs one-time work (CUDA: lazy module loading, GEMM plans), false where it only costs time.
  virtual bool benefits_from_warm_up() const { return false; }
  // One line on choices the backend made at run time, for benchmark logs (CUDA: the GEMM algorithm
  // tuning); empty when there is nothing to report.
  virtual std::string diagnostics() const { return {}; }
  // Whether new_pass_graphs() records and replays (CUDA with VMLA_CUDA_GRAPHS=1), for benchmark logs.
  virtual bool pass_graphs_enabled() const { return false; }
  // A pass-graph cache for one caller; the default (and the CUDA backend with graphs off) runs every
  // body op by op.
  virtual std::unique_ptr<PassGraphs> new_pass_graphs();

  // ---- memory --------------------------------------------------------------------------------
  // Throws OutOfMemory with the size asked and what is free.
  virtual Buffer alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p, size_t bytes) = 0;
  OwnedTensor alloc(Shape s, DType dt);
  // Host <-> device. `host` holds numel elements of `host_dtype` (converted on the way).
  virtual void upload(const void* host, DType host_dtype, Tensor dst) = 0;
  virtual void download(Tensor src, void* host, DType host_dtype) = 0;  // synchronises
  virtual void synchronize() = 0;

  // ---- data movement --------------------------------------------------------------------------
  // dst = src (same numel; converts dtype).
  virtual void copy(Tensor src, Tensor dst) = 0;
  // dst rows [dst_row, dst_row+n) = src rows [src_row, src_row+n); both seen as [rows, cols] with
  // equal cols, and the rows may overlap (one tensor's rows shifted). With a column window src_col,
  // the columns [src_col, src_col + dst's cols) of each src row are copied.
  virtual void copy_rows(Tensor src, int64_t src_row, Tensor dst, int64_t dst_row, int64_t n,
                         int64_t src_col = kAllColumns) = 0;
  virtual void fill(Tensor dst, float value) = 0;
  // out [T, H*(da+db)] from a [T, H*da] and b [T, Hb*db] with Hb = 1 (broadcast to every head) or
  // H: each head of out is [a_h ; b_h].
  virtual void concat_heads(Tensor a, int da, Tensor b, int db, int heads, Tensor out) = 0;
  // out [N, Ca+Cb, H, W] = channel concat of a [N, Ca, H, W] and b [N, Cb, H, W].
  virtual void concat_channels(Tensor a, Tensor b, Tensor out) = 0;

  // ---- elementwise ---------------------------------------------------------------------------
  // out = alpha * x + beta * y (y may be empty when beta == 0). out may alias x or y.
  virtual void axpby(float alpha, Tensor x, float beta, Tensor y, Tensor out) = 0;
  virtual void activation(Tensor x, Tensor out, Activation act) = 0;
  // out = c * tanh(x / c)
  virtual void tanh_clamp(Tensor x, Tensor out, float c) = 0;
  // out [F, K*D]: out[f, k*D + d] = table[k*D + d] + src[f, (src has K*D cols) ? k*D + d : d].
  virtual void add_modulation(Tensor src, Tensor table, Tensor out) = 0;

  // ---- linear algebra ------------------------------------------------------------------------
  // y [M, N] = act(x [M, K] @ w[N, K]^T + b[N]); b may be empty.
  virtual void linear(Tensor x, Tensor w, Tensor b, Tensor y, Activation act = Activation::None) = 0;
  // Strided batched GEMM on raw views, column-major free: for i in batch,
  //   C_i [M, N] = alpha * op(A_i) @ op(B_i) + beta * C_i,
  // with op(X) = X or X^T (trans flags); A_i starts at A.data + i*strideA elements with leading
  // (row) stride lda, likewise B and C. All three tensors may be any float dtype.
  struct GemmBatched {
    Tensor A, B, C;
    bool transA = false, transB = false;
    int64_t M = 0, N = 0, K = 0;
    int64_t lda = 0, ldb = 0, ldc = 0;
    int64_t strideA = 0, strideB = 0, strideC = 0;
    int64_t batch = 1;
    float alpha = 1.f, beta = 0.f;
  };
  virtual void gemm_batched(const GemmBatched& p) = 0;

  // ---- normalisation and modulation (eps per call; statistics in fp32) ------------------------
  // y = LN(x) * w + b over the last dim; w, b may be empty (no affine).
  virtual void layer_norm(Tensor x, Tensor w, Tensor b, Tensor y, float eps) = 0;
  // y = x / rms(x) * w over the last dim; w may be empty; y may alias x. With a column window x_col,
  // y [T, D] normalises the columns [x_col, x_col + D) of each row of x.
  virtual void rms_norm(Tensor x, Tensor w, Tensor y, float eps, int64_t x_col = kAllColumns) = 0;
  // y [T, D] = LN(x)[T, D] * (1 + scale) + shift, where row i uses frame f = i / rows_per_frame and
  // shift = mod[f, shift_idx*D : (shift_idx+1)*D], scale likewise; mod is [F, K*D] (F32).
  virtual void ln_modulate(Tensor x, Tensor mod, int shift_idx, int scale_idx, int64_t rows_per_frame,
                           Tensor y, float eps) = 0;
  // x [T, D] += gate * y with gate = mod[i / rows_per_frame, gate_idx*D ...]; gate_idx < 0: no gate.
  virtual void gated_residual(Tensor x, Tensor y, Tensor mod, int gate_idx, int64_t rows_per_frame) = 0;

  // ---- attention -----------------------------------------------------------------------------
  // x [T, heads*head_stride]: rotate, in place, the pairs starting at column `offset` of each head
  // using pos [T, 3] (I32: t, h, w).
  virtual void rope(Tensor x, int heads, int head_stride, int offset, const RopeSpec& spec, Tensor pos) = 0;
  // dst = src (same shape and dtype) with rope() applied: how the attention context is gathered from
  // the cache with its keys rotated on the way. With a column window src_col, dst = the columns
  // [src_col, src_col + dst's cols) of src, rotated. The default copies, then rotates in place; the
  // CUDA backend does it in one pass where every column is rotated.
  virtual void rope_copy(Tensor src, Tensor dst, int heads, int head_stride, int offset, const RopeSpec& spec,
                         Tensor pos, int64_t src_col = kAllColumns);
  // y [T, heads*head_dim] = rope(rms_norm(x, w), heads, head_dim, 0, spec, pos): each row normalised
  // over all of y's columns (reading the column window x_col of x where given, as rms_norm), then the
  // pairs from column 0 of every head rotated. Wan's query (norm_q over the model width, then 3D
  // RoPE per head). y may alias x when there is no window. The default runs rms_norm, then rope; the
  // CUDA backend normalises and rotates in one pass over each row.
  virtual void rms_norm_rope(Tensor x, Tensor w, Tensor y, float eps, int heads, int head_dim, const RopeSpec& spec,
                             Tensor pos, int64_t x_col = kAllColumns);
  // out [Tq, H*dv] = softmax(q k^T * scale) v per head; q [Tq, H*dk], k [Tk, Hk*dk], v [Tk, Hk*dv],
  // Hk = H (MHA) or 1 (shared key/value, MQA: the absorbed MLA path). Full (non-causal) attention.
  virtual void attention(Tensor q, Tensor k, Tensor v, Tensor out, int heads, int kv_heads, int dk, int dv,
                         float scale) = 0;

  // ---- video layout --------------------------------------------------------------------------
  // x [F, C, H, W] -> tokens [F*(H/ph)*(W/pw), C*ph*pw] (pt = 1), token order frame, row, column;
  // column index c*ph*pw + p*pw + q (matches a PyTorch conv weight [dim, C, 1, ph, pw] flattened).
  virtual void patchify(Tensor x, int ph, int pw, Tensor tokens) = 0;
  // tokens [F*h*w, ph*pw*C] with column index (p*pw + q)*C + c (Wan head layout) -> x [F, C, h*ph, w*pw].
  virtual void unpatchify(Tensor tokens, int ph, int pw, Tensor x) = 0;
  // y [N, Cout, Ho, Wo] = conv2d(x [N, Cin, H, W], w [Cout, Cin, kh, kw]) + b, zero padding `pad`.
  virtual void conv2d(Tensor x, Tensor w, Tensor b, Tensor y, int stride, int pad, Activation act = Activation::None) = 0;
  // y [N, C, 2H, 2W] nearest-neighbour.
  virtual void upsample2x(Tensor x, Tensor y) = 0;
  // Token embedding lookup: out [n, D] = table[ids[i]] (ids on the host).
  virtual void embedding(Tensor table, const int32_t* ids, int64_t n, Tensor out) = 0;
  // x [F, 3, H, W] in [0, 1] -> rgb [F, H, W, 3] U8: clamp to [0, 1], times 255, round half to even;
  // NaN gives 0. Every backend produces the same bytes for the same input.
  virtual void to_rgb8(Tensor x, Tensor rgb) = 0;
};

// "cpu", "cuda" or "auto" (CUDA when a device is present). Throws DeviceError with the reason.
std::unique_ptr<Backend> create_backend(const std::string& name);
std::unique_ptr<Backend> create_cpu_backend(int threads = 0);  // 0: all cores
#ifdef VMLA_WITH_CUDA
std::unique_ptr<Backend> create_cuda_backend(int device = 0);
int cuda_device_count();  // 0 without a driver or device; never throws
#endif
bool cuda_available();

// Per-pass scratch: bump allocation from blocks that are allocated on first use and reused after
// reset(), so steady-state passes allocate nothing.
class Arena {
 public:
  explicit Arena(Backend* be, size_t block_bytes = size_t(64) << 20) : be_(be), block_bytes_(block_bytes) {}
  Tensor tensor(Shape s, DType dt);
  void reset();
  // Scoped reuse: everything allocated after mark() is released by release(mark).
  struct Mark { size_t cur = 0, used = 0, in_use = 0; };
  Mark mark() const;
  void release(const Mark& m);
  size_t capacity() const;
  size_t high_water() const { return high_water_; }

 private:
  struct Block { Buffer buf; size_t used = 0; };
  Backend* be_;
  size_t block_bytes_;
  std::vector<Block> blocks_;
  size_t cur_ = 0, in_use_ = 0, high_water_ = 0;
};

// Releases what was allocated from an arena during its lifetime (also when an exception leaves the
// scope). Arena placement is deterministic: the same arena state and the same sequence of tensor()
// calls give the same addresses, which recorded passes rely on.
class ArenaScope {
 public:
  explicit ArenaScope(Arena& a) : a_(a), m_(a.mark()) {}
  ~ArenaScope() { a_.release(m_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena& a_;
  Arena::Mark m_;
};

}  // namespace vmla
