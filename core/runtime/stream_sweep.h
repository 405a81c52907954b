#pragma once
// Concurrent streams on one device: N independent sessions of one model served round-robin, one
// chunk of one stream at a time (a multi-user server, the studio with several timelines). Measures
// what each stream holds, what they share, the peak memory and the time per chunk, and projects how
// many streams fit in a memory budget. `videomla bench CONFIG --streams N` prints it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/runtime/session.h"

namespace vmla {

struct StreamSweepOptions {
  SessionOptions session;       // sink, window, steps, path, decode; workspace and snapshots are set here
  int streams = 1;
  int warmup = -1;              // chunks per stream before timing; -1: enough to fill sink + window
  int rounds = 1;               // timed rounds of one chunk per stream
  bool share_workspace = true;  // one SessionWorkspace for all streams (false: one each)
  uint64_t seed = 7;            // stream i uses seed + i and prompt i (cycled)
};

struct StreamSweepResult {
  int streams = 0;
  int sink_frames = 0, window_frames = 0;
  int warmup_chunks = 0, fill_chunks = 0;  // warm-up chunks per stream; those needed to fill sink + window
  AttnPath path = AttnPath::Expanded;

  // Per stream, from the sessions' buffers (all streams hold the same; the largest is reported).
  SessionMemory per_stream;
  size_t per_stream_bytes = 0;        // per_stream.total()
  size_t cache_in_use_bytes = 0;      // of one stream after warm-up (window full)
  size_t mha_cache_in_use_bytes = 0;  // what the MHA layout would hold for the same tokens
  // Cache storage per token per layer, from the allocated buffers: bytes and values (bytes / dtype).
  double cache_bytes_per_token_layer = 0;
  double cache_values_per_token_layer = 0;

  // Shared by all streams.
  size_t baseline_bytes = 0;      // engine allocations before the sessions: weights, tables
  size_t workspace_bytes = 0;     // the shared workspace (arena + staging); 0 when not shared
  size_t workspace_arena_bytes = 0, workspace_staging_bytes = 0;
  size_t unaccounted_bytes = 0;   // peak engine allocations not explained by the above (0 expected)
  size_t device_extra_bytes = 0;  // CUDA: device memory used beyond the engine's own allocations
                                  // since the sweep began (library workspaces, scratch pools)
  size_t shared_bytes() const { return baseline_bytes + workspace_bytes + unaccounted_bytes + device_extra_bytes; }

  // Peaks, sampled after every pass (the arena keeps its blocks, so scratch peaks are included).
  size_t peak_engine_bytes = 0;  // the backend's allocation accounting
  size_t device_used_before = 0, peak_device_used = 0, device_total = 0;  // CUDA: cudaMemGetInfo

  // Timing of the timed rounds (the window full in every stream).
  std::vector<double> chunk_ms;      // every timed chunk, DiT + decoder
  std::vector<double> chunk_dit_ms;  // the same without the decoder
  std::vector<double> round_ms;      // one chunk of every stream
  double ms_per_chunk = 0, ms_per_chunk_dit = 0, ms_per_round = 0;  // medians
  double fps_aggregate = 0;          // video frames per second over all streams (median round)
  double fps_per_stream = 0;

  int64_t streams_in(double budget_bytes) const;
};

// floor((budget - shared) / per_stream); 0 when the shared part alone does not fit.
int64_t streams_that_fit(double budget_bytes, size_t shared_bytes, size_t per_stream_bytes);

// Runs the sweep on `model` (which should be the only thing on its backend, so that the baseline
// is the model). Throws Error or OutOfMemory.
StreamSweepResult run_stream_sweep(const std::shared_ptr<Model>& model, const StreamSweepOptions& o);

}  // namespace vmla
