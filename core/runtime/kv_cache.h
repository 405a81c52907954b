#pragma once
// The streaming KV cache (docs/MODEL.md section 4): per layer, `sink` frame slots that are never
// evicted and a FIFO ring of `window` frame slots. MLA layout: a = c_kv [slots*tpf, d_c], b = k_r
// [slots*tpf, rope] (unrotated); MHA layout: a = k, b = v [slots*tpf, dim] (k unrotated).
// Slots 0..sink-1 are the sink, sink..sink+window-1 the ring.
#include <vector>

#include "core/model/config.h"
#include "core/model/dit.h"
#include "core/tensor/backend.h"

namespace vmla {

struct CacheState {
  int sink_filled = 0;  // sink slots written
  int ring_head = 0;    // ring index of the oldest frame
  int ring_count = 0;   // frames in the ring
  bool operator==(const CacheState&) const = default;
};

class KvCache {
 public:
  KvCache(Backend& be, const ModelConfig& cfg, int sink_frames, int window_frames);

  int sink_frames() const { return sink_; }
  int window_frames() const { return window_; }
  int frames() const { return state_.sink_filled + state_.ring_count; }
  const CacheState& state() const { return state_; }

  // Slots of the cached frames in attention order: sink, then the ring oldest first.
  std::vector<int> read_slots() const;
  // Slots of the window (ring) frames, oldest first.
  std::vector<int> window_slots() const;
  std::vector<int> sink_slots() const;
  // Where `n` new frames go (in order) and the state after appending them; does not change the cache.
  std::vector<int> plan_append(int n, CacheState* after) const;
  void set_state(const CacheState& s) { state_ = s; }

  // A view for a pass that reads `read` and writes `write`.
  CacheView view(std::vector<int> read, std::vector<int> write) const;

  size_t bytes_per_frame() const;        // all layers, actual storage
  size_t bytes_in_use() const { return bytes_per_frame() * size_t(frames()); }
  size_t capacity_bytes() const { return bytes_per_frame() * size_t(sink_ + window_); }
  size_t mha_bytes_per_frame() const;    // what MHA would store for a frame, same dtype
  size_t allocated_bytes() const;        // the device buffers as allocated (capacity_bytes(), counted)
  int64_t tokens() const { return int64_t(frames()) * tpf_; }

  // Device copies of every buffer plus the state.
  struct Saved {
    std::vector<OwnedTensor> a, b;
    CacheState state;
    size_t bytes() const;
  };
  Saved save(Backend& be) const;
  void load(Backend& be, const Saved& s);
  void clear() { state_ = CacheState{}; }

 private:
  const ModelConfig& cfg_;
  int sink_, window_;
  int64_t tpf_;
  std::vector<OwnedTensor> a_, b_;
  CacheState state_;
};

}  // namespace vmla
