#include "core/runtime/stream_sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace vmla {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Independent streams: other prompts (cross-attention K/V of their own) and other seeds.
const char* const kPrompts[] = {
    "a red ball bouncing on the beach at sunset",
    "a blue cube rolling across green grass",
    "a white bird flying over the sea",
    "a yellow car driving through the city at night",
};

}  // namespace

int64_t streams_that_fit(double budget_bytes, size_t shared_bytes, size_t per_stream_bytes) {
  if (per_stream_bytes == 0) throw Error("streams_that_fit: a stream of 0 bytes");
  if (!(budget_bytes > double(shared_bytes))) return 0;
  return int64_t(std::floor((budget_bytes - double(shared_bytes)) / double(per_stream_bytes)));
}

int64_t StreamSweepResult::streams_in(double budget_bytes) const {
  return streams_that_fit(budget_bytes, shared_bytes(), per_stream_bytes);
}

StreamSweepResult run_stream_sweep(const std::shared_ptr<Model>& model, const StreamSweepOptions& o) {
  using clock = std::chrono::steady_clock;
  if (!model) throw Error("stream sweep needs a model");
  if (o.streams < 1 || o.rounds < 1) throw Error("stream sweep: streams and rounds must be >= 1");
  Backend& be = model->backend();
  const ModelConfig& cfg = model->config();
  StreamSweepResult r;
  r.streams = o.streams;

  be.synchronize();
  const MemoryInfo m0 = be.memory_info();
  r.baseline_bytes = m0.allocated_by_engine;
  r.device_used_before = m0.device_used;
  r.device_total = m0.device_total;
  r.peak_engine_bytes = m0.allocated_by_engine;
  r.peak_device_used = m0.device_used;
  auto sample = [&] {
    const MemoryInfo mi = be.memory_info();
    r.peak_engine_bytes = std::max(r.peak_engine_bytes, mi.allocated_by_engine);
    r.peak_device_used = std::max(r.peak_device_used, mi.device_used);
  };

  std::shared_ptr<SessionWorkspace> ws = o.share_workspace ? std::make_shared<SessionWorkspace>(model) : nullptr;
  SessionOptions so = o.session;
  so.workspace = ws;
  so.keep_snapshots = false;  // a server keeps none; rewind is a studio feature
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < o.streams; ++i) sessions.push_back(std::make_unique<Session>(model, so));
  sample();

  r.sink_frames = so.sink_frames >= 0 ? so.sink_frames : cfg.sink_frames;
  r.window_frames = so.window_frames >= 0 ? so.window_frames : cfg.window_frames;
  r.path = sessions[0]->attn_path();
  const int ctx_frames = r.sink_frames + r.window_frames;
  const int fill = (ctx_frames + cfg.chunk_frames - 1) / cfg.chunk_frames;
  const int warmup = o.warmup >= 0 ? o.warmup : fill;
  r.warmup_chunks = warmup;
  r.fill_chunks = fill;

  SessionCallbacks cb;
  cb.on_progress = [&](const Progress&) { sample(); };
  auto spec = [&](int i) {
    const size_t n = sizeof(kPrompts) / sizeof(kPrompts[0]);
    return ChunkSpec{kPrompts[size_t(i) % n], o.seed + uint64_t(i), false};
  };
  for (int c = 0; c < warmup; ++c)
    for (int i = 0; i < o.streams; ++i) sessions[size_t(i)]->extend(spec(i), cb);
  for (int round = 0; round < o.rounds; ++round) {
    const auto t0 = clock::now();
    for (int i = 0; i < o.streams; ++i) {
      Session& s = *sessions[size_t(i)];
      s.extend(spec(i), cb);
      r.chunk_ms.push_back(s.metrics().ms_last_chunk);
      r.chunk_dit_ms.push_back(s.metrics().ms_last_chunk - s.metrics().ms_last_decode);
    }
    be.synchronize();
    r.round_ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  sample();

  for (const auto& s : sessions) {
    const SessionMemory m = s->memory();
    if (m.total() > r.per_stream.total()) r.per_stream = m;
  }
  r.per_stream_bytes = r.per_stream.total();
  r.cache_in_use_bytes = sessions[0]->metrics().cache_bytes;
  r.mha_cache_in_use_bytes = sessions[0]->metrics().mha_cache_bytes;
  const double token_layers = double(cfg.layers) * double(ctx_frames) * double(cfg.tokens_per_frame());
  if (token_layers > 0) {
    r.cache_bytes_per_token_layer = double(r.per_stream.cache) / token_layers;
    r.cache_values_per_token_layer = r.cache_bytes_per_token_layer / double(dtype_size(be.act_dtype()));
  }
  if (ws) {
    r.workspace_bytes = ws->bytes();
    r.workspace_arena_bytes = ws->arena_bytes();
    r.workspace_staging_bytes = ws->staging_bytes();
  }
  const size_t explained = r.baseline_bytes + r.workspace_bytes + size_t(o.streams) * r.per_stream_bytes;
  r.unaccounted_bytes = r.peak_engine_bytes > explained ? r.peak_engine_bytes - explained : 0;
  if (be.device() != Device::CPU && r.peak_device_used > r.device_used_before) {
    const size_t device_growth = r.peak_device_used - r.device_used_before;
    const size_t engine_growth = r.peak_engine_bytes - r.baseline_bytes;
    r.device_extra_bytes = device_growth > engine_growth ? device_growth - engine_growth : 0;
  }

  r.ms_per_chunk = median(r.chunk_ms);
  r.ms_per_chunk_dit = median(r.chunk_dit_ms);
  r.ms_per_round = median(r.round_ms);
  const double frames = double(cfg.frames_per_chunk());
  if (r.ms_per_round > 0) r.fps_aggregate = frames * o.streams / (r.ms_per_round / 1e3);
  r.fps_per_stream = r.fps_aggregate / o.streams;
  return r;
}

}  // namespace vmla
