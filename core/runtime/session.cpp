#include "core/runtime/session.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/model/autoencoder.h"
#include "core/model/dit.h"
#include "core/model/text_encoder.h"
#include "core/runtime/kv_cache.h"
#include "core/runtime/noise.h"
#include "core/runtime/sampler.h"

namespace vmla {

const char* attn_path_name(AttnPath p) {
  switch (p) {
    case AttnPath::Auto: return "auto";
    case AttnPath::Expanded: return "expanded";
    case AttnPath::Absorbed: return "absorbed";
  }
  return "?";
}

AttnPath parse_attn_path(const std::string& s) {
  if (s == "auto") return AttnPath::Auto;
  if (s == "expanded") return AttnPath::Expanded;
  if (s == "absorbed") return AttnPath::Absorbed;
  throw Error("unknown attention path '" + s + "' (expected auto, expanded or absorbed)");
}

using Latent = std::shared_ptr<const std::vector<float>>;

class Snapshot {
 public:
  KvCache::Saved cache;
  std::vector<OwnedTensor> decoder_memory;
  bool decoder_started = false;
  std::string prompt;
  bool has_prompt = false;
  std::vector<int64_t> slot_frame;
  std::vector<Latent> latents;  // clean latents of chunks [0, chunk)
  std::vector<ChunkRecord> records;
  std::vector<std::shared_ptr<const Snapshot>> boundaries;  // the boundaries before this one
  size_t bytes() const {
    size_t n = cache.bytes();
    for (const auto& m : decoder_memory) n += m.t.bytes();
    return n;
  }
};

size_t snapshot_bytes(const Snapshot& s) { return s.bytes(); }

struct SessionWorkspace::Buffers {
  Arena arena;
  OwnedTensor x, x0, v, noise, rgb, rgb8;
  std::vector<uint8_t> host_rgb;
  std::atomic<const void*> user{nullptr};  // the session inside extend/restore now

  explicit Buffers(const Model& model) : arena(&model.backend(), size_t(16) << 20) {
    Backend& be = model.backend();
    const ModelConfig& cfg = model.config();
    const int64_t F = cfg.chunk_frames;
    const Shape lat{F, cfg.in_channels, cfg.latent_h(), cfg.latent_w()};
    x = be.alloc(lat, DType::F32);
    x0 = be.alloc(lat, DType::F32);
    v = be.alloc(lat, DType::F32);
    noise = be.alloc(lat, DType::F32);
    if (model.has_decoder()) {
      const int64_t N = F * cfg.temporal_stride;
      rgb = be.alloc(Shape{N, 3, cfg.height, cfg.width}, be.act_dtype());
      rgb8 = be.alloc(Shape{N, cfg.height, cfg.width, 3}, DType::U8);
      host_rgb.resize(size_t(rgb8.t.numel()));
    }
  }
};

SessionWorkspace::SessionWorkspace(std::shared_ptr<Model> model) : model_(std::move(model)) {
  if (!model_) throw Error("session workspace needs a model");
  b_ = std::make_unique<Buffers>(*model_);
}

SessionWorkspace::~SessionWorkspace() = default;

size_t SessionWorkspace::arena_bytes() const { return b_->arena.capacity(); }

size_t SessionWorkspace::staging_bytes() const {
  size_t n = 0;
  for (const OwnedTensor* t : {&b_->x, &b_->x0, &b_->v, &b_->noise, &b_->rgb, &b_->rgb8}) n += t->buf.bytes();
  return n;
}

size_t SessionWorkspace::bytes() const { return arena_bytes() + staging_bytes(); }

namespace {

// Marks a shared workspace as used by one session for the duration of a call; nested calls of the
// same session (extend -> undo -> restore) pass through.
class WorkspaceLease {
 public:
  WorkspaceLease(SessionWorkspace::Buffers& b, const void* who) : b_(b) {
    const void* expected = nullptr;
    if (b_.user.compare_exchange_strong(expected, who)) {
      owner_ = true;
    } else if (expected != who) {
      throw Error("session workspace is in use by another session (a shared workspace serves one session at a time)");
    }
  }
  ~WorkspaceLease() {
    if (owner_) b_.user.store(nullptr);
  }
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;

 private:
  SessionWorkspace::Buffers& b_;
  bool owner_ = false;
};

std::shared_ptr<SessionWorkspace> workspace_for(const std::shared_ptr<Model>& model, const SessionOptions& o) {
  if (!o.workspace) return std::make_shared<SessionWorkspace>(model);
  if (&o.workspace->model() != model.get())
    throw Error("session workspace belongs to another model (share a workspace only between sessions of one Model)");
  return o.workspace;
}

bool noise_prefetch_enabled() {
  const char* env = std::getenv("VMLA_NOISE_PREFETCH");
  return !(env && std::string(env) == "0");
}

}  // namespace

struct Session::Impl {
  std::shared_ptr<Model> model;
  Backend& be;
  const ModelConfig& cfg;
  std::shared_ptr<SessionWorkspace> ws;
  bool own_ws;
  SessionWorkspace::Buffers& wsb;
  // Per chunk scratch and staging, from the (possibly shared) workspace.
  Arena& arena;
  OwnedTensor &x, &x0, &v, &noise, &rgb, &rgb8;
  std::vector<uint8_t>& host_rgb;
  KvCache cache;
  AutoencoderState dec_state;
  std::unique_ptr<CrossKV> ctx;
  std::string prompt;
  bool has_prompt = false;
  std::vector<int64_t> slot_frame;  // global frame index held by each cache slot (-1: empty)
  std::vector<Latent> latents;
  bool absorbed = true;
  NoiseAhead noise_ahead{noise_prefetch_enabled()};
  // The seeds of the last chunk and the step from the one before: the next chunk is expected to
  // continue it (the studio's fixed and increment seed modes; a random seed is computed on the spot).
  uint64_t last_seed = 0, seed_step = 0;
  double pass_ms_total = 0, chunk_ms_total = 0;
  int64_t passes_total = 0;
  // Recorded passes (CUDA graphs where the backend makes them), keyed per pass by Dit::forward.
  // Declared last: destroyed before the cache and workspace its graphs name.
  std::unique_ptr<PassGraphs> graphs;

  Impl(std::shared_ptr<Model> m, const SessionOptions& o)
      : model(std::move(m)),
        be(model->backend()),
        cfg(model->config()),
        ws(workspace_for(model, o)),
        own_ws(!o.workspace),
        wsb(ws->buffers()),
        arena(wsb.arena),
        x(wsb.x),
        x0(wsb.x0),
        v(wsb.v),
        noise(wsb.noise),
        rgb(wsb.rgb),
        rgb8(wsb.rgb8),
        host_rgb(wsb.host_rgb),
        cache(be, cfg, o.sink_frames >= 0 ? o.sink_frames : cfg.sink_frames,
              o.window_frames >= 0 ? o.window_frames : cfg.window_frames) {
    graphs = be.new_pass_graphs();
    slot_frame.assign(size_t(cache.sink_frames() + cache.window_frames()), -1);
    const int64_t F = cfg.chunk_frames;
    if (model->has_decoder()) dec_state = model->decoder()->new_state(be);
    // Auto: the path with fewer FLOPs for a full window (absorbed wins for small heads and short
    // contexts; at Wan scale its 224/192-d shared head costs more arithmetic than per-head K/V).
    if (o.attn_path == AttnPath::Auto) {
      const int ctx = cache.sink_frames() + cache.window_frames();
      absorbed = model->dit().pass_flops(ctx, int(F), true) <= model->dit().pass_flops(ctx, int(F), false);
    } else {
      absorbed = o.attn_path == AttnPath::Absorbed;
    }
  }

  void set_prompt(const std::string& p) {
    auto mk = arena.mark();
    Tensor text = arena.tensor(Shape{cfg.text_len, cfg.text_dim}, be.act_dtype());
    if (model->has_text_encoder()) {
      Tokenized tok = model->tokenizer().encode(p);
      model->text_encoder()->encode(be, tok.ids, text, arena);
    } else {
      // Benchmark models carry no text encoder: a seeded stand-in embedding per prompt.
      uint64_t h = 1469598103934665603ull;
      for (unsigned char c : p) h = (h ^ c) * 1099511628211ull;
      std::vector<float> host = chunk_noise(h, 0, 0, text.numel());
      be.upload(host.data(), DType::F32, text);
    }
    ctx = std::make_unique<CrossKV>(model->dit().cross_kv(be, text, arena));
    arena.release(mk);
    prompt = p;
    has_prompt = true;
  }

  // One DiT pass over latent frames x, all at model time t; v_out empty for a cache-only pass.
  void pass(Tensor x, double t, const CacheView& view, Tensor v_out = Tensor{}) {
    PassArgs a;
    a.x = x;
    a.t.assign(size_t(x.dim(0)), t);
    a.context = ctx.get();
    a.cache = &view;
    a.absorbed = absorbed;
    a.v_out = v_out;
    a.graphs = graphs.get();
    model->dit().forward(be, a, arena);
  }

  // Uploads the noise of (seed, chunk, step) and starts computing the next one the sampler will ask
  // for: step + 1 of this chunk while step + 1 < steps (noise draws per chunk), else step 0 of the
  // next chunk with the seed continuing the trend. VMLA_NOISE_PREFETCH=0 computes each draw when
  // it is needed.
  void upload_noise(uint64_t seed, int chunk, uint32_t step, uint32_t steps, Tensor dst) {
    const std::vector<float> n = noise_ahead.take(seed, uint64_t(chunk), step, dst.numel());
    if (step == 0) {
      seed_step = chunk > 0 ? seed - last_seed : 0;  // unsigned: wraps consistently
      last_seed = seed;
    }
    if (step + 1 < steps) noise_ahead.prefetch(seed, uint64_t(chunk), step + 1, dst.numel());
    else noise_ahead.prefetch(seed + seed_step, uint64_t(chunk) + 1, 0, dst.numel());
    be.upload(n.data(), DType::F32, dst);
  }
};

Session::Session(std::shared_ptr<Model> model, SessionOptions opts) : model_(std::move(model)), opts_(opts) {
  if (!model_) throw Error("session needs a model");
  impl_ = std::make_unique<Impl>(model_, opts_);
  if (opts_.keep_snapshots) boundaries_.push_back(snapshot());
  metrics_.cache_capacity_bytes = impl_->cache.capacity_bytes();
}

Session::~Session() = default;

AttnPath Session::attn_path() const {
  if (model_->config().attention == AttentionKind::MHA) return AttnPath::Expanded;
  return impl_->absorbed ? AttnPath::Absorbed : AttnPath::Expanded;
}

int64_t Session::frames() const { return int64_t(records_.size()) * model_->config().frames_per_chunk(); }

std::shared_ptr<const Snapshot> Session::snapshot() const {
  auto s = std::make_shared<Snapshot>();
  Impl& im = *impl_;
  s->cache = im.cache.save(im.be);
  for (const auto& m : im.dec_state.memory) {
    OwnedTensor c = im.be.alloc(m.t.shape, m.t.dtype);
    im.be.copy(m.t, c.t);
    s->decoder_memory.push_back(std::move(c));
  }
  s->decoder_started = im.dec_state.started;
  s->prompt = im.prompt;
  s->has_prompt = im.has_prompt;
  s->slot_frame = im.slot_frame;
  s->latents = im.latents;
  s->records = records_;
  s->boundaries = boundaries_;
  return s;
}

void Session::restore(const std::shared_ptr<const Snapshot>& snap) {
  if (!snap) throw Error("restore: empty snapshot");
  const std::shared_ptr<const Snapshot> s = snap;  // `snap` may live in boundaries_, which is replaced below
  Impl& im = *impl_;
  WorkspaceLease lease(im.wsb, this);
  im.cache.load(im.be, s->cache);
  if (s->decoder_memory.size() != im.dec_state.memory.size()) throw Error("snapshot is from another model");
  for (size_t i = 0; i < s->decoder_memory.size(); ++i) im.be.copy(s->decoder_memory[i].t, im.dec_state.memory[i].t);
  im.dec_state.started = s->decoder_started;
  if (s->has_prompt && (!im.has_prompt || im.prompt != s->prompt)) im.set_prompt(s->prompt);
  im.slot_frame = s->slot_frame;
  im.latents = s->latents;
  records_ = s->records;
  if (opts_.keep_snapshots) {
    boundaries_ = s->boundaries;
    boundaries_.push_back(s);
  }
  metrics_.chunks = int(records_.size());
  metrics_.frames = frames();
  metrics_.cached_tokens = im.cache.tokens();
  metrics_.cache_bytes = im.cache.bytes_in_use();
  metrics_.mha_cache_bytes = im.cache.mha_bytes_per_frame() * size_t(im.cache.frames());
}

void Session::rewind(int chunk) {
  if (chunk < 0 || chunk > chunks())
    throw Error("rewind to chunk " + std::to_string(chunk) + ": the video has " + std::to_string(chunks()) + " chunks");
  if (!opts_.keep_snapshots) throw Error("rewind needs boundary snapshots (keep_snapshots is off)");
  restore(boundaries_[size_t(chunk)]);
}

SessionMemory Session::memory() const {
  const Impl& im = *impl_;
  SessionMemory m;
  m.cache = im.cache.allocated_bytes();
  if (im.ctx) {
    for (const auto& t : im.ctx->k) m.cross_attention += t.buf.bytes();
    for (const auto& t : im.ctx->v) m.cross_attention += t.buf.bytes();
  }
  for (const auto& t : im.dec_state.memory) m.decoder_state += t.buf.bytes();
  for (const auto& b : boundaries_) m.snapshots += b->bytes();
  if (im.own_ws) m.workspace = im.ws->bytes();
  return m;
}

const SessionWorkspace& Session::workspace() const { return *impl_->ws; }

PassGraphs::Stats Session::pass_graphs() const { return impl_->graphs->stats(); }

NoiseAhead::Counts Session::noise_draws() const { return impl_->noise_ahead.counts(); }

std::vector<float> Session::latent(int chunk) const {
  if (chunk < 0 || chunk >= int(impl_->latents.size())) throw Error("no latent for chunk " + std::to_string(chunk));
  return *impl_->latents[size_t(chunk)];
}

std::vector<float> Session::cache_contents(int layer, int component) const {
  const Impl& im = *impl_;
  if (layer < 0 || layer >= im.cfg.layers || component < 0 || component > 1)
    throw Error("cache_contents: no layer " + std::to_string(layer) + " component " + std::to_string(component));
  CacheView v = im.cache.view(im.cache.read_slots(), {});
  Tensor src = component == 0 ? v.a[size_t(layer)] : v.b[size_t(layer)];
  const int64_t tpf = im.cfg.tokens_per_frame(), width = src.cols();
  std::vector<float> out(size_t(int64_t(v.read_slots.size()) * tpf * width));
  std::vector<float> all(size_t(src.numel()));
  im.be.download(src, all.data(), DType::F32);
  for (size_t i = 0; i < v.read_slots.size(); ++i)
    std::copy_n(all.begin() + int64_t(v.read_slots[i]) * tpf * width, tpf * width, out.begin() + int64_t(i) * tpf * width);
  return out;
}

void Session::extend(const ChunkSpec& spec, const SessionCallbacks& cb) {
  using clock = std::chrono::steady_clock;
  Impl& im = *impl_;
  WorkspaceLease lease(im.wsb, this);
  Backend& be = im.be;
  const ModelConfig& cfg = im.cfg;
  const int chunk = chunks();
  const int F = cfg.chunk_frames;
  const auto t_chunk = clock::now();
  auto cancelled = [&] { return cb.cancel_requested && cb.cancel_requested(); };
  auto elapsed = [&](clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); };

  const std::vector<double> sigmas = chunk_sigmas(cfg, opts_.steps);
  const bool switching = !im.has_prompt || im.prompt != spec.prompt;
  const bool recache = switching && spec.recache && im.has_prompt && !im.cache.window_slots().empty();
  Progress pr;
  pr.chunk = chunk;
  pr.passes = int(sigmas.size()) + 1 + (recache ? 1 : 0);
  if (cancelled()) throw Cancelled("generation cancelled before chunk " + std::to_string(chunk));

  // Everything below may be undone: a cancel restores the boundary state.
  std::shared_ptr<const Snapshot> boundary = opts_.keep_snapshots ? boundaries_.back() : nullptr;
  auto undo = [&] {
    if (boundary) restore(boundary);
  };
  auto pass_done = [&](clock::time_point t0) {
    be.synchronize();
    const double ms = elapsed(t0) * 1e3;
    metrics_.ms_last_pass = ms;
    im.pass_ms_total += ms;
    ++im.passes_total;
    metrics_.ms_avg_pass = im.pass_ms_total / double(im.passes_total);
    ++pr.pass;
    pr.chunk_elapsed_s = elapsed(t_chunk);
    if (cb.on_progress) cb.on_progress(pr);
  };

  double prompt_ms = 0;
  try {
    if (switching) {
      const auto t0 = clock::now();
      im.set_prompt(spec.prompt);
      be.synchronize();  // timed on its own (Metrics::ms_last_prompt); once per prompt
      prompt_ms = elapsed(t0) * 1e3;
    }
    if (recache) {
      // Re-run the window's clean frames under the new prompt; context = the sink only.
      const auto t0 = clock::now();
      std::vector<int> wslots = im.cache.window_slots();
      const int64_t W = int64_t(wslots.size());
      const int64_t per = im.x.t.numel() / F;
      std::vector<float> host(size_t(W * per));
      for (int64_t i = 0; i < W; ++i) {
        const int64_t g = im.slot_frame[size_t(wslots[size_t(i)])];
        const auto& lat = *im.latents[size_t(g / F)];
        std::copy_n(lat.begin() + (g % F) * per, per, host.begin() + i * per);
      }
      auto mk = im.arena.mark();
      Tensor xw = im.arena.tensor(Shape{W, cfg.in_channels, cfg.latent_h(), cfg.latent_w()}, DType::F32);
      be.upload(host.data(), DType::F32, xw);
      CacheView view = im.cache.view(im.cache.sink_slots(), wslots);
      im.pass(xw, cfg.context_t, view);
      im.arena.release(mk);
      pass_done(t0);
    }

    // Denoising passes read the cache and write nothing.
    const uint32_t draws = cfg.sampler == SamplerKind::Renoise ? uint32_t(sigmas.size()) : 1u;
    im.upload_noise(spec.seed, chunk, 0, draws, im.x.t);
    CacheView read_view = im.cache.view(im.cache.read_slots(), {});
    for (size_t i = 0; i < sigmas.size(); ++i) {
      if (cancelled()) throw Cancelled("generation cancelled in chunk " + std::to_string(chunk));
      const auto t0 = clock::now();
      im.pass(im.x.t, 1000.0 * sigmas[i], read_view, im.v.t);
      if (cb.on_velocity) cb.on_velocity(chunk, int(i), im.v.t);
      const double s = sigmas[i];
      const double s_next = i + 1 < sigmas.size() ? sigmas[i + 1] : 0.0;
      be.axpby(1.f, im.x.t, float(-s), im.v.t, im.x0.t);  // x0 = x - sigma v
      if (i + 1 < sigmas.size()) {
        if (cfg.sampler == SamplerKind::Renoise) {
          im.upload_noise(spec.seed, chunk, uint32_t(i + 1), draws, im.noise.t);
          be.axpby(float(1.0 - s_next), im.x0.t, float(s_next), im.noise.t, im.x.t);
        } else {
          be.axpby(1.f, im.x.t, float(s_next - s), im.v.t, im.x.t);
        }
      }
      pass_done(t0);
    }
    if (cancelled()) throw Cancelled("generation cancelled in chunk " + std::to_string(chunk));

    // Cache pass: the clean chunk at t = context_t appends its entries (evicting the oldest).
    {
      const auto t0 = clock::now();
      CacheState after;
      std::vector<int> slots = im.cache.plan_append(F, &after);
      CacheView view = im.cache.view(im.cache.read_slots(), slots);
      im.pass(im.x0.t, cfg.context_t, view);
      im.cache.set_state(after);
      for (int f = 0; f < F; ++f)
        if (slots[size_t(f)] >= 0) im.slot_frame[size_t(slots[size_t(f)])] = int64_t(chunk) * F + f;
      pass_done(t0);
    }
  } catch (...) {
    undo();
    throw;
  }

  auto lat = std::make_shared<std::vector<float>>(size_t(im.x0.t.numel()));
  be.download(im.x0.t, lat->data(), DType::F32);
  for (float f : *lat)
    if (!std::isfinite(f)) {
      undo();
      throw Error("chunk " + std::to_string(chunk) + " produced NaN or infinite values (model weights or settings are broken); the video is unchanged");
    }
  im.latents.push_back(lat);

  double decode_ms = 0;
  if (opts_.decode && model_->has_decoder()) {
    const auto t0 = clock::now();
    model_->decoder()->decode(be, im.x0.t, im.dec_state, im.rgb.t, im.arena);
    im.dec_state.started = true;
    be.to_rgb8(im.rgb.t, im.rgb8.t);
    be.download(im.rgb8.t, im.host_rgb.data(), DType::U8);
    decode_ms = elapsed(t0) * 1e3;
    if (cb.on_frames) {
      FrameBatch fb;
      fb.chunk = chunk;
      fb.first_frame = int64_t(chunk) * cfg.frames_per_chunk();
      fb.count = cfg.frames_per_chunk();
      fb.width = cfg.width;
      fb.height = cfg.height;
      fb.rgb = im.host_rgb.data();
      if (be.device() == Device::CUDA) fb.device_rgb = im.rgb8.t.data;
      cb.on_frames(fb);
    }
  }

  const double chunk_ms = elapsed(t_chunk) * 1e3;
  ChunkRecord rec;
  rec.spec = spec;
  rec.ms = chunk_ms;
  records_.push_back(rec);
  if (opts_.keep_snapshots) boundaries_.push_back(snapshot());

  im.chunk_ms_total += chunk_ms;
  Metrics& m = metrics_;
  m.chunks = chunks();
  m.frames = frames();
  m.cached_tokens = im.cache.tokens();
  m.cache_bytes = im.cache.bytes_in_use();
  m.cache_capacity_bytes = im.cache.capacity_bytes();
  m.mha_cache_bytes = im.cache.mha_bytes_per_frame() * size_t(im.cache.frames());
  m.snapshot_bytes = 0;
  for (const auto& b : boundaries_) m.snapshot_bytes += b->bytes();
  MemoryInfo mi = be.memory_info();
  m.device_used = mi.device_used;
  m.device_total = mi.device_total;
  m.engine_bytes = mi.allocated_by_engine;
  m.ms_last_chunk = chunk_ms;
  m.ms_avg_chunk = im.chunk_ms_total / double(m.chunks);
  m.ms_last_decode = decode_ms;
  m.ms_last_prompt = prompt_ms;
  m.fps = cfg.frames_per_chunk() / (chunk_ms / 1e3);
  m.realtime_factor = m.fps / cfg.fps;
  m.seconds_generated = double(m.frames) / cfg.fps;
  if (cb.on_metrics) cb.on_metrics(m);
}

void Session::extend(const ChunkSpec& spec, int n_chunks, const SessionCallbacks& cb) {
  for (int i = 0; i < n_chunks; ++i) extend(spec, cb);
}

}  // namespace vmla
