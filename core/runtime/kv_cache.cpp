#include "core/runtime/kv_cache.h"

namespace vmla {

KvCache::KvCache(Backend& be, const ModelConfig& cfg, int sink_frames, int window_frames)
    : cfg_(cfg), sink_(sink_frames), window_(window_frames), tpf_(cfg.tokens_per_frame()) {
  if (sink_ < 0 || window_ < 0) throw Error("cache: sink and window sizes must be non-negative");
  const int64_t rows = std::max<int64_t>(int64_t(sink_ + window_) * tpf_, 1);
  const bool mla = cfg.attention == AttentionKind::MLA;
  const int64_t wa = mla ? cfg.kv_latent : cfg.dim;
  const int64_t wb = mla ? cfg.rope_dim : cfg.dim;
  for (int l = 0; l < cfg.layers; ++l) {
    a_.push_back(be.alloc(Shape{rows, wa}, be.act_dtype()));
    b_.push_back(be.alloc(Shape{rows, wb}, be.act_dtype()));
    be.fill(a_.back().t, 0.f);
    be.fill(b_.back().t, 0.f);
  }
}

std::vector<int> KvCache::sink_slots() const {
  std::vector<int> s;
  for (int i = 0; i < state_.sink_filled; ++i) s.push_back(i);
  return s;
}

std::vector<int> KvCache::window_slots() const {
  std::vector<int> s;
  for (int i = 0; i < state_.ring_count; ++i) s.push_back(sink_ + (state_.ring_head + i) % window_);
  return s;
}

std::vector<int> KvCache::read_slots() const {
  std::vector<int> s = sink_slots();
  for (int w : window_slots()) s.push_back(w);
  return s;
}

std::vector<int> KvCache::plan_append(int n, CacheState* after) const {
  CacheState st = state_;
  std::vector<int> slots;
  for (int i = 0; i < n; ++i) {
    if (st.sink_filled < sink_) {
      slots.push_back(st.sink_filled++);
    } else if (window_ == 0) {
      slots.push_back(-1);  // no window: the frame is not cached
    } else if (st.ring_count < window_) {
      slots.push_back(sink_ + (st.ring_head + st.ring_count) % window_);
      ++st.ring_count;
    } else {
      slots.push_back(sink_ + st.ring_head);  // evict the oldest
      st.ring_head = (st.ring_head + 1) % window_;
    }
  }
  // Frames of one chunk that evict each other within the same append: only the survivors matter,
  // and later writes to a slot win because scatter writes frames in order.
  if (after) *after = st;
  return slots;
}

CacheView KvCache::view(std::vector<int> read, std::vector<int> write) const {
  CacheView v;
  for (const auto& t : a_) v.a.push_back(t.t);
  for (const auto& t : b_) v.b.push_back(t.t);
  v.read_slots = std::move(read);
  v.write_slots = std::move(write);
  return v;
}

size_t KvCache::bytes_per_frame() const {
  return size_t(cfg_.layers) * size_t(tpf_) * size_t(cfg_.cache_values_per_token()) * dtype_size(a_.empty() ? DType::F32 : a_[0].t.dtype);
}

size_t KvCache::mha_bytes_per_frame() const {
  return size_t(cfg_.layers) * size_t(tpf_) * size_t(cfg_.mha_cache_values_per_token()) *
         dtype_size(a_.empty() ? DType::F32 : a_[0].t.dtype);
}

size_t KvCache::allocated_bytes() const {
  size_t n = 0;
  for (const auto& t : a_) n += t.buf.bytes();
  for (const auto& t : b_) n += t.buf.bytes();
  return n;
}

size_t KvCache::Saved::bytes() const {
  size_t n = 0;
  for (const auto& t : a) n += t.t.bytes();
  for (const auto& t : b) n += t.t.bytes();
  return n;
}

// A snapshot copies the whole buffers: exact, and small for MLA (that is the point of the layout).
KvCache::Saved KvCache::save(Backend& be) const {
  Saved s;
  s.state = state_;
  for (const auto& t : a_) {
    s.a.push_back(be.alloc(t.t.shape, t.t.dtype));
    be.copy(t.t, s.a.back().t);
  }
  for (const auto& t : b_) {
    s.b.push_back(be.alloc(t.t.shape, t.t.dtype));
    be.copy(t.t, s.b.back().t);
  }
  return s;
}

void KvCache::load(Backend& be, const Saved& s) {
  if (s.a.size() != a_.size()) throw Error("cache snapshot is from another model");
  for (size_t l = 0; l < a_.size(); ++l) {
    be.copy(s.a[l].t, a_[l].t);
    be.copy(s.b[l].t, b_[l].t);
  }
  state_ = s.state;
}

}  // namespace vmla
