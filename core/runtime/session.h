#pragma once
// Session: chunk-by-chunk streaming generation on one model (docs/MODEL.md section 4).
//
// Threading: a Session is used by one thread at a time (the studio's worker, the CLI's main thread).
// cancel_requested() is polled between passes; a cancelled chunk leaves the session exactly at the
// previous chunk boundary (nothing half-written in the cache).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/runtime/noise.h"

namespace vmla {

enum class AttnPath : uint8_t { Auto, Expanded, Absorbed };
const char* attn_path_name(AttnPath p);
AttnPath parse_attn_path(const std::string& s);  // "auto" | "expanded" | "absorbed"; throws Error

// Device memory that sessions of one model can share when they are served one chunk at a time (a
// multi-user server, the studio's timelines): the per-pass scratch arena and the chunk's staging
// buffers (noisy latent, velocity, clean latent, noise, decoded frames). None of it carries state
// from one chunk to the next; what does (KV cache, cross-attention K/V, decoder state, snapshots,
// clean latents) stays in each Session. Used by one session at a time: a session that finds the
// workspace busy with another session throws Error instead of corrupting it.
class SessionWorkspace {
 public:
  explicit SessionWorkspace(std::shared_ptr<Model> model);
  ~SessionWorkspace();
  SessionWorkspace(const SessionWorkspace&) = delete;
  SessionWorkspace& operator=(const SessionWorkspace&) = delete;

  const Model& model() const { return *model_; }
  size_t bytes() const;          // device memory held now: arena blocks + staging buffers
  size_t arena_bytes() const;    // arena blocks (grow to the largest pass, then stay)
  size_t staging_bytes() const;  // chunk staging buffers (fixed by the configuration)

  struct Buffers;  // defined in session.cpp
  Buffers& buffers() const { return *b_; }

 private:
  std::shared_ptr<Model> model_;
  std::unique_ptr<Buffers> b_;
};

struct SessionOptions {
  int sink_frames = -1;    // latent frames; -1: the model's default
  int window_frames = -1;  // latent frames; -1: the model's default
  int steps = -1;          // denoising steps; -1: the model's timestep list; N: t_i = 1000 * (1 - i/N)
  AttnPath attn_path = AttnPath::Auto;
  bool decode = true;      // run the decoder and deliver frames
  bool keep_snapshots = true;  // keep a snapshot at every chunk boundary (rewind, branch, re-roll)
  // Shared with other sessions of the same Model (null: the session makes its own). Results are
  // bit-identical either way.
  std::shared_ptr<SessionWorkspace> workspace;
};

// Device memory held by one session, summed from its actual buffers (not from the configuration).
struct SessionMemory {
  size_t cache = 0;            // KV cache buffers: sink + window slots, all layers
  size_t cross_attention = 0;  // cross-attention K/V of the current prompt (0 before the first chunk)
  size_t decoder_state = 0;    // causal decoder memory carried across chunks
  size_t snapshots = 0;        // boundary snapshots kept (0 with keep_snapshots off)
  size_t workspace = 0;        // the session's own workspace; 0 when it uses a shared one
  size_t total() const { return cache + cross_attention + decoder_state + snapshots + workspace; }
};

struct ChunkSpec {
  std::string prompt;
  uint64_t seed = 0;
  bool recache = false;  // on a prompt change: re-run the window under the new prompt (smooth transition)
};

// Frames of one chunk, valid only during the callback.
struct FrameBatch {
  int chunk = 0;
  int64_t first_frame = 0;  // index of the first frame in the whole video
  int count = 0;
  int width = 0, height = 0;
  const uint8_t* rgb = nullptr;  // [count, height, width, 3]
  // The same bytes in the backend's device memory (CUDA), for zero-copy consumers such as the
  // CUDA-OpenGL interop preview; null on the CPU backend.
  const void* device_rgb = nullptr;
};

struct Progress {
  int chunk = 0;
  int pass = 0;    // passes finished in this chunk
  int passes = 0;  // passes per chunk (steps + 1 cache pass [+ re-cache passes])
  double chunk_elapsed_s = 0;
};

struct Metrics {
  int chunks = 0;
  int64_t frames = 0;
  int64_t cached_tokens = 0;
  size_t cache_bytes = 0;           // cache in use now, all layers, in the backend's storage type
  size_t cache_capacity_bytes = 0;  // allocated for sink + window
  size_t mha_cache_bytes = 0;       // what an MHA cache would need for the same tokens
  size_t snapshot_bytes = 0;        // all boundary snapshots kept by the session
  size_t device_used = 0, device_total = 0, engine_bytes = 0;
  double ms_last_pass = 0, ms_avg_pass = 0;
  double ms_last_chunk = 0, ms_avg_chunk = 0;  // DiT + decoder
  double ms_last_decode = 0;
  double ms_last_prompt = 0;   // prompt encoding (text encoder + cross-attention K/V); 0: prompt unchanged
  double fps = 0;              // video frames generated per second (last chunk)
  double realtime_factor = 0;  // fps / model fps
  double seconds_generated = 0;
};

struct SessionCallbacks {
  std::function<void(const FrameBatch&)> on_frames;
  std::function<void(const Progress&)> on_progress;
  std::function<bool()> cancel_requested;
  std::function<void(const Metrics&)> on_metrics;  // after every chunk
  // Inspection (tests, tools): the velocity of each denoising pass ([F, C, h, w] F32, on the
  // backend's device), valid only during the call.
  std::function<void(int chunk, int step, const Tensor& v)> on_velocity;
};

struct ChunkRecord {
  ChunkSpec spec;
  double ms = 0;
};

class Snapshot;  // opaque: cache, decoder state, recent latents and prompt state at a chunk boundary
// Device memory a snapshot holds (cache buffers and decoder memory).
size_t snapshot_bytes(const Snapshot& s);

class Session {
 public:
  explicit Session(std::shared_ptr<Model> model, SessionOptions opts = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const { return *model_; }
  const SessionOptions& options() const { return opts_; }
  AttnPath attn_path() const;  // the path in use (Auto resolved)

  // Generates one chunk after the current end. Throws Cancelled (state unchanged) or Error.
  void extend(const ChunkSpec& spec, const SessionCallbacks& cb = {});
  // n chunks with the same spec; stops at the first error or cancel (finished chunks are kept).
  void extend(const ChunkSpec& spec, int n_chunks, const SessionCallbacks& cb = {});
  int chunks() const { return int(records_.size()); }
  int64_t frames() const;
  const std::vector<ChunkRecord>& records() const { return records_; }

  // Keeps chunks [0, chunk) and restores the state at that boundary (0: empty video).
  void rewind(int chunk);
  // The state at the current boundary, and restoring one (e.g. the tip of another branch).
  std::shared_ptr<const Snapshot> snapshot() const;
  void restore(const std::shared_ptr<const Snapshot>& s);

  const Metrics& metrics() const { return metrics_; }
  SessionMemory memory() const;
  // The workspace in use (shared or the session's own).
  const SessionWorkspace& workspace() const;
  // How the session's passes ran: op by op, recorded or replayed as CUDA graphs (Backend::PassGraphs;
  // CUDA with VMLA_CUDA_GRAPHS=1), and the graphs held now.
  PassGraphs::Stats pass_graphs() const;
  // The noise draws served from the one-ahead prefetch, and those computed when needed.
  NoiseAhead::Counts noise_draws() const;
  // The clean latent of chunk i ([chunk_frames, C, h, w], F32 on the host), for tests and tools.
  std::vector<float> latent(int chunk) const;
  // The cache of `layer` in attention order (sink, then the window oldest first) as F32 on the host:
  // component 0 = c_kv (MLA) or k (MHA), 1 = k_r (MLA) or v (MHA); [frames * tokens_per_frame, width].
  std::vector<float> cache_contents(int layer, int component) const;

  struct Impl;

 private:
  std::shared_ptr<Model> model_;
  SessionOptions opts_;
  std::unique_ptr<Impl> impl_;
  std::vector<ChunkRecord> records_;
  std::vector<std::shared_ptr<const Snapshot>> boundaries_;  // boundaries_[i]: state before chunk i
  Metrics metrics_;
};

}  // namespace vmla
