// Engine tests on the CPU backend: noise, sampler, cache ring, MLA paths, fused projections, sessions
// (determinism, snapshots, rewind, cancel, prompt switch), start-up warm-up, streaming decoder,
// tokenizer and configuration errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/model/autoencoder.h"
#include "core/model/dit.h"
#include "core/runtime/kv_cache.h"
#include "core/runtime/noise.h"
#include "core/runtime/sampler.h"
#include "core/runtime/session.h"
#include "core/runtime/warm_up.h"
#include "tests/unit/engine_fixture.h"

using namespace vmla;
using vmla::test::rel_err;
using vmla::test::small_model;

TEST(Noise, Philox4x32KnownAnswers) {
  auto r = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
  r = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(r[0], 0x408f276du);
  EXPECT_EQ(r[1], 0x41c83b0eu);
  EXPECT_EQ(r[2], 0xa20bc7c6u);
  EXPECT_EQ(r[3], 0x6d5451fdu);
}

TEST(Noise, SameSeedSameBytesOtherChunkOtherNoise) {
  auto a = chunk_noise(1234, 5, 0, 10001);
  auto b = chunk_noise(1234, 5, 0, 10001);
  ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  auto c = chunk_noise(1234, 6, 0, 10001);
  auto d = chunk_noise(1234, 5, 1, 10001);
  auto e = chunk_noise(1235, 5, 0, 10001);
  EXPECT_NE(0, std::memcmp(a.data(), c.data(), a.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.data(), d.data(), a.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(a.data(), e.data(), a.size() * sizeof(float)));
  double mean = 0, var = 0;
  for (float x : a) mean += x;
  mean /= double(a.size());
  for (float x : a) var += (x - mean) * (x - mean);
  var /= double(a.size());
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(var, 1.0, 0.05);
}

TEST(Noise, AheadGivesTheSameBytesPrefetchedOrNot) {
  auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  NoiseAhead ahead;
  ahead.prefetch(9, 2, 1, 5001);
  EXPECT_TRUE(same(ahead.take(9, 2, 1, 5001), chunk_noise(9, 2, 1, 5001)));  // from the prefetch
  EXPECT_EQ(ahead.counts().prefetched, 1);
  ahead.prefetch(9, 3, 0, 5001);
  // A rewind asks for another chunk: computed on the spot, the stale prefetch is dropped.
  EXPECT_TRUE(same(ahead.take(9, 1, 0, 5001), chunk_noise(9, 1, 0, 5001)));
  EXPECT_TRUE(same(ahead.take(9, 3, 0, 5001), chunk_noise(9, 3, 0, 5001)));
  EXPECT_EQ(ahead.counts().prefetched, 1);
  EXPECT_EQ(ahead.counts().on_the_spot, 2);
  ahead.prefetch(9, 4, 0, 5001);  // left pending: the destructor waits for it

  NoiseAhead off(false);
  off.prefetch(9, 2, 1, 5001);
  EXPECT_TRUE(same(off.take(9, 2, 1, 5001), chunk_noise(9, 2, 1, 5001)));
  EXPECT_EQ(off.counts().prefetched, 0);
  EXPECT_EQ(off.counts().on_the_spot, 1);
}

TEST(Sampler, ShiftWarpMatchesWan) {
  ModelConfig c = ModelConfig::from_json(test::small_config_json("mla"), "t");
  auto s = chunk_sigmas(c, -1);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_NEAR(s[0], 1.0, 1e-12);
  EXPECT_NEAR(s[1], 0.9375, 1e-12);
  EXPECT_NEAR(s[2], 0.833333333333, 1e-9);
  EXPECT_NEAR(s[3], 0.625, 1e-12);
  EXPECT_EQ(chunk_sigmas(c, 4), s);  // N evenly spaced steps reproduce the default list
}

TEST(KvCache, SinkKeptAndFifoEviction) {
  auto be = create_cpu_backend(1);
  ModelConfig c = ModelConfig::from_json(test::small_config_json("mla"), "t");
  KvCache cache(*be, c, 1, 4);
  CacheState st;
  auto slots = cache.plan_append(3, &st);  // frames 0,1,2
  EXPECT_EQ(slots, (std::vector<int>{0, 1, 2}));
  cache.set_state(st);
  EXPECT_EQ(cache.read_slots(), (std::vector<int>{0, 1, 2}));
  slots = cache.plan_append(3, &st);  // frames 3,4,5: ring holds 1,2,3,4 then 5 evicts 1
  EXPECT_EQ(slots, (std::vector<int>{3, 4, 1}));
  cache.set_state(st);
  EXPECT_EQ(cache.sink_slots(), (std::vector<int>{0}));
  EXPECT_EQ(cache.window_slots(), (std::vector<int>{2, 3, 4, 1}));  // frames 2,3,4,5 oldest first
  slots = cache.plan_append(3, &st);  // frames 6,7,8 evict 2,3,4
  EXPECT_EQ(slots, (std::vector<int>{2, 3, 4}));
  cache.set_state(st);
  EXPECT_EQ(cache.read_slots(), (std::vector<int>{0, 1, 2, 3, 4}));  // sink, then frames 5,6,7,8
  EXPECT_EQ(cache.frames(), 5);
  EXPECT_EQ(cache.bytes_per_frame() * 128, cache.mha_bytes_per_frame() * 24);  // 24 vs 128 values per token
}

TEST(KvCache, MlaStoresD_cPlusRopePerToken) {
  ModelConfig c = ModelConfig::from_json(test::small_config_json("mla"), "t");
  EXPECT_EQ(c.cache_values_per_token(), 16 + 8);
  EXPECT_EQ(c.mha_cache_values_per_token(), 2 * 64);
  ModelConfig tiny = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/tiny.json");
  EXPECT_EQ(tiny.cache_values_per_token() * 768, 56 * tiny.mha_cache_values_per_token());
  ModelConfig wan = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/wan1.3b-mla.json");
  EXPECT_EQ(wan.cache_values_per_token(), 224);
  EXPECT_EQ(wan.mha_cache_values_per_token(), 3072);
}

namespace {

std::vector<std::vector<float>> run_chunks(Session& s, const std::vector<ChunkSpec>& specs,
                                           std::vector<std::vector<uint8_t>>* frames = nullptr) {
  std::vector<std::vector<float>> lat;
  SessionCallbacks cb;
  cb.on_frames = [&](const FrameBatch& fb) {
    if (frames) frames->emplace_back(fb.rgb, fb.rgb + size_t(fb.count) * fb.width * fb.height * 3);
  };
  for (const auto& spec : specs) {
    s.extend(spec, cb);
    lat.push_back(s.latent(s.chunks() - 1));
  }
  return lat;
}

const ChunkSpec kBall{"a red ball bouncing on the beach at sunset", 11, false};
const ChunkSpec kFish{"a blue fish swimming in the sea at night", 11, false};

}  // namespace

TEST(Session, SameSeedSameFrames) {
  auto m = small_model("mla");
  Session a(m), b(m);
  std::vector<std::vector<uint8_t>> fa, fb;
  run_chunks(a, {kBall, kBall, kBall}, &fa);
  run_chunks(b, {kBall, kBall, kBall}, &fb);
  ASSERT_EQ(fa.size(), 3u);
  for (size_t i = 0; i < fa.size(); ++i) EXPECT_EQ(fa[i], fb[i]) << "chunk " << i;
  ChunkSpec other = kBall;
  other.seed = 12;
  Session c(m);
  auto lc = run_chunks(c, {other});
  EXPECT_GT(rel_err(lc[0], a.latent(0)), 1e-3);
}

TEST(Session, MlaExpandedEqualsAbsorbed) {
  auto m = small_model("mla");
  SessionOptions ex, ab;
  ex.attn_path = AttnPath::Expanded;
  ab.attn_path = AttnPath::Absorbed;
  Session se(m, ex), sa(m, ab);
  EXPECT_EQ(se.attn_path(), AttnPath::Expanded);
  EXPECT_EQ(sa.attn_path(), AttnPath::Absorbed);
  auto le = run_chunks(se, {kBall, kBall, kFish, kFish});
  auto la = run_chunks(sa, {kBall, kBall, kFish, kFish});
  for (size_t i = 0; i < le.size(); ++i) EXPECT_LT(rel_err(la[i], le[i]), 1e-5) << "chunk " << i;
}

// The fused projections (DitBlock::in_proj, q_proj; the default) against the checkpoint's separate
// ones (VMLA_FUSED_PROJECTIONS=0), same weights: latents and every layer's cache entries (the last
// layer's come from the cache pass's write-only step) after each chunk, through window eviction
// and a re-cache pass, on both MLA paths and MHA, the small test model and the tiny configurations.
namespace {

std::shared_ptr<Model> model_with_projections(const ModelConfig& cfg, bool fused) {
  static std::shared_ptr<Backend> cpu = create_cpu_backend();
  test::ScopedEnv env("VMLA_FUSED_PROJECTIONS", fused ? "1" : "0");
  return Model::random(cfg, test::test_vocabulary(), 5, cpu);
}

}  // namespace

TEST(FusedProjections, SameOutputsAndCacheAsSeparateProjections) {
  const std::string configs = std::string(VMLA_SOURCE_DIR) + "/resources/configs/";
  std::vector<std::pair<std::string, ModelConfig>> cases = {
      {"small mla", ModelConfig::from_json(test::small_config_json("mla"), "t")},
      {"small mha", ModelConfig::from_json(test::small_config_json("mha"), "t")},
      {"tiny", ModelConfig::from_file(configs + "tiny.json")},
      {"tiny-mha", ModelConfig::from_file(configs + "tiny-mha.json")},
      {"small mha without qk_norm", ModelConfig::from_json(test::small_config_json("mha"), "t")}};
  cases.back().second.qk_norm = false;  // keys and queries read straight from the fused output
  ChunkSpec fish_recache = kFish;
  fish_recache.recache = true;
  const std::vector<ChunkSpec> script = {kBall, kBall, kBall, fish_recache};
  for (const auto& [name, cfg] : cases) {
    auto fused = model_with_projections(cfg, true), separate = model_with_projections(cfg, false);
    ASSERT_TRUE(fused->dit().fused_projections());
    ASSERT_FALSE(separate->dit().fused_projections());
    const bool mla = cfg.attention == AttentionKind::MLA;
    for (AttnPath path : mla ? std::vector<AttnPath>{AttnPath::Expanded, AttnPath::Absorbed} : std::vector<AttnPath>{AttnPath::Auto}) {
      SessionOptions so;
      so.attn_path = path;
      so.decode = false;  // the latents are compared
      so.keep_snapshots = false;
      Session a(fused, so), b(separate, so);
      const std::string what = name + " " + (mla ? attn_path_name(path) : "dense");
      double worst = 0;
      for (size_t c = 0; c < script.size(); ++c) {
        a.extend(script[c]);
        b.extend(script[c]);
        const double e = rel_err(a.latent(int(c)), b.latent(int(c)));
        worst = std::max(worst, e);
        EXPECT_LT(e, 1e-5) << what << ", latent of chunk " << c;
        for (int layer = 0; layer < cfg.layers; ++layer)
          for (int comp : {0, 1}) {
            const double ec = rel_err(a.cache_contents(layer, comp), b.cache_contents(layer, comp));
            worst = std::max(worst, ec);
            EXPECT_LT(ec, 1e-5) << what << ", chunk " << c << ", cache of layer " << layer << " part " << comp;
          }
      }
      std::printf("[fused projections] %s: worst normalised difference %.2e\n", what.c_str(), worst);
    }
  }
}

TEST(Session, ExtendByNChunksReportsMetrics) {
  auto m = small_model("mla");
  Session s(m);
  int reports = 0;
  SessionCallbacks cb;
  cb.on_metrics = [&](const Metrics& mt) {
    ++reports;
    EXPECT_EQ(mt.chunks, reports);
    EXPECT_GT(mt.ms_last_chunk, 0.0);
    EXPECT_GT(mt.fps, 0.0);
    EXPECT_EQ(mt.mha_cache_bytes * 24, mt.cache_bytes * 128);  // 16 + 8 vs 2 * 64 values per token
    if (reports == 1) {
      EXPECT_GT(mt.ms_last_prompt, 0.0);  // encoded once, with the first chunk
    } else {
      EXPECT_EQ(mt.ms_last_prompt, 0.0);
    }
  };
  s.extend(kBall, 3, cb);
  EXPECT_EQ(s.chunks(), 3);
  EXPECT_EQ(reports, 3);
  EXPECT_EQ(s.frames(), 36);
  EXPECT_EQ(s.metrics().cached_tokens, 3 * 16);  // sink 1 + window 2 frames of 16 tokens
}

// Every pass goes through the session's PassGraphs; the CPU backend's runs each one op by op.
TEST(Session, CpuPassesRunOpByOp) {
  auto m = small_model("mla");
  Session s(m);
  int64_t passes = 0;
  SessionCallbacks cb;
  cb.on_progress = [&](const Progress&) { ++passes; };
  s.extend(kBall, 3, cb);
  const PassGraphs::Stats g = s.pass_graphs();
  EXPECT_FALSE(m->backend().pass_graphs_enabled());
  EXPECT_EQ(g.eager, passes);
  EXPECT_EQ(g.captured + g.updated + g.replayed + g.failed + g.graphs, 0);
}

TEST(Session, MhaModelRuns) {
  auto m = small_model("mha");
  Session s(m);
  auto l = run_chunks(s, {kBall, kBall, kBall});
  for (const auto& c : l)
    for (float v : c) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(s.metrics().cache_bytes, s.metrics().mha_cache_bytes);
}

TEST(Session, SnapshotRewindReproducesAndRerolls) {
  auto m = small_model("mla");
  Session s(m);
  std::vector<std::vector<uint8_t>> frames;
  auto lat = run_chunks(s, {kBall, kBall, kBall}, &frames);
  EXPECT_EQ(s.chunks(), 3);
  s.rewind(1);
  EXPECT_EQ(s.chunks(), 1);
  std::vector<std::vector<uint8_t>> again;
  auto lat2 = run_chunks(s, {kBall, kBall}, &again);
  ASSERT_EQ(lat2.size(), 2u);
  EXPECT_EQ(0, std::memcmp(lat2[0].data(), lat[1].data(), lat[1].size() * 4)) << "same seed after rewind must be bit-exact";
  EXPECT_EQ(again[0], frames[1]);
  EXPECT_EQ(again[1], frames[2]);
  s.rewind(1);
  ChunkSpec reroll = kBall;
  reroll.seed = 99;
  auto lat3 = run_chunks(s, {reroll});
  EXPECT_GT(rel_err(lat3[0], lat[1]), 1e-3);
  // A branch tip restores exactly.
  auto tip = s.snapshot();
  run_chunks(s, {kBall});
  s.restore(tip);
  EXPECT_EQ(s.chunks(), 2);
  auto lat4 = run_chunks(s, {kBall});
  s.restore(tip);
  auto lat5 = run_chunks(s, {kBall});
  EXPECT_EQ(0, std::memcmp(lat4[0].data(), lat5[0].data(), lat4[0].size() * 4));
  EXPECT_GT(s.metrics().snapshot_bytes, 0u);
  EXPECT_GT(snapshot_bytes(*tip), 0u);
  EXPECT_LE(snapshot_bytes(*tip), s.metrics().snapshot_bytes);
}

// Every noise draw but a run's first is computed ahead on a worker thread, also when the seed counts
// up from chunk to chunk (the studio's default); after a rewind the next draw is computed on the spot.
// The frames are those of draws computed when needed (VMLA_NOISE_PREFETCH=0).
TEST(Session, NoiseDrawsComputedAhead) {
  auto m = small_model("mla");
  ASSERT_EQ(m->config().sampler, SamplerKind::Renoise);
  const int64_t draws = int64_t(m->config().timesteps.size());  // renoise: one per denoising step
  std::vector<ChunkSpec> counting_up(3, kBall);
  for (size_t i = 0; i < counting_up.size(); ++i) counting_up[i].seed = kBall.seed + i;

  Session s(m);
  std::vector<std::vector<uint8_t>> frames;
  run_chunks(s, counting_up, &frames);
  // Computed on the spot: chunk 0's first draw, and chunk 1's (the seed's step is known from chunk 1 on).
  EXPECT_EQ(s.noise_draws().on_the_spot, 2);
  EXPECT_EQ(s.noise_draws().prefetched, 3 * draws - 2);

  setenv("VMLA_NOISE_PREFETCH", "0", 1);
  Session off(m);
  unsetenv("VMLA_NOISE_PREFETCH");
  std::vector<std::vector<uint8_t>> frames_off;
  run_chunks(off, counting_up, &frames_off);
  EXPECT_EQ(off.noise_draws().prefetched, 0);
  EXPECT_EQ(off.noise_draws().on_the_spot, 3 * draws);
  EXPECT_EQ(frames_off, frames);

  s.rewind(1);  // chunk 1 again: the prefetch was for chunk 3
  std::vector<std::vector<uint8_t>> again;
  run_chunks(s, {counting_up[1]}, &again);
  EXPECT_EQ(s.noise_draws().on_the_spot, 3);
  EXPECT_EQ(again[0], frames[1]);
}

TEST(Session, CancelLeavesTheBoundaryUntouched) {
  auto m = small_model("mla");
  Session ref(m);
  auto want = run_chunks(ref, {kBall, kBall});
  Session s(m);
  run_chunks(s, {kBall});
  int passes = 0;
  SessionCallbacks cb;
  cb.on_progress = [&](const Progress&) { ++passes; };
  cb.cancel_requested = [&] { return passes >= 2; };
  EXPECT_THROW(s.extend(kBall, cb), Cancelled);
  EXPECT_EQ(s.chunks(), 1);
  auto got = run_chunks(s, {kBall});
  EXPECT_EQ(0, std::memcmp(got[0].data(), want[1].data(), got[0].size() * 4));
}

TEST(Session, PromptSwitchHardCutAndRecache) {
  auto m = small_model("mla");
  Session same(m), cut(m), smooth(m);
  auto a = run_chunks(same, {kBall, kBall, kBall});
  auto b = run_chunks(cut, {kBall, kBall, kFish});
  ChunkSpec fish_recache = kFish;
  fish_recache.recache = true;
  int passes = 0;
  SessionCallbacks cb;
  cb.on_progress = [&](const Progress& p) { passes = p.passes; };
  run_chunks(smooth, {kBall, kBall});
  smooth.extend(fish_recache, cb);
  EXPECT_EQ(passes, 4 + 1 + 1);  // steps, cache pass, re-cache pass
  auto c = smooth.latent(2);
  EXPECT_EQ(0, std::memcmp(a[1].data(), b[1].data(), a[1].size() * 4));
  EXPECT_GT(rel_err(b[2], a[2]), 1e-3);  // the prompt matters
  EXPECT_GT(rel_err(c, b[2]), 1e-4);     // re-caching changes the continuation
}

// The warm-up changes no result: sessions after a (forced) warm-up of the same model, on their own
// workspace or on the one the warm-up grew, give the bytes of a session run before it.
TEST(WarmUp, ForcedWarmUpLeavesLaterFramesBitIdentical) {
  auto m = small_model("mla");
  Session cold(m);
  std::vector<std::vector<uint8_t>> want;
  auto want_lat = run_chunks(cold, {kBall, kBall, kFish}, &want);
  WarmUpOptions o;
  o.force = true;
  const WarmUpReport r = warm_up(m, o);
  EXPECT_TRUE(r.ran);
  EXPECT_FALSE(r.cancelled);
  EXPECT_EQ(r.chunks, 2);
  EXPECT_GT(r.seconds, 0.0);
  ASSERT_TRUE(r.workspace);
  EXPECT_GT(r.workspace->arena_bytes(), 0u);
  for (bool shared : {false, true}) {
    SessionOptions so;
    if (shared) so.workspace = r.workspace;
    Session warm(m, so);
    std::vector<std::vector<uint8_t>> got;
    auto got_lat = run_chunks(warm, {kBall, kBall, kFish}, &got);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i], want[i]) << "frames of chunk " << i << (shared ? " (warm-up's workspace)" : "");
      EXPECT_EQ(0, std::memcmp(got_lat[i].data(), want_lat[i].data(), want_lat[i].size() * 4)) << "latent of chunk " << i;
    }
  }
}

TEST(WarmUp, OffOnTheCpuUnlessAskedAndACancelEndsItQuietly) {
  auto m = small_model("mla");
  EXPECT_FALSE(m->backend().benefits_from_warm_up());
  ::unsetenv("VMLA_WARMUP");
  EXPECT_FALSE(warm_up_useful(m->backend()));
  const WarmUpReport skipped = warm_up(m);
  EXPECT_FALSE(skipped.ran);
  EXPECT_FALSE(skipped.workspace);
  ::setenv("VMLA_WARMUP", "1", 1);
  EXPECT_TRUE(warm_up_useful(m->backend()));
  ::unsetenv("VMLA_WARMUP");
  WarmUpOptions o;
  o.force = true;
  int polls = 0;
  o.cancel_requested = [&] { return ++polls > 1; };
  const WarmUpReport cut = warm_up(m, o);
  EXPECT_TRUE(cut.ran);
  EXPECT_TRUE(cut.cancelled);
  EXPECT_EQ(cut.chunks, 0);
}

// What recorded passes (CUDA graphs) rely on: the same arena state and sequence of tensor() calls
// give the same addresses, also after the arena grew (blocks are appended, never moved), and an
// ArenaScope gives back what was allocated inside it.
TEST(Arena, SameStateAndSequenceGiveSameAddresses) {
  auto be = create_cpu_backend(1);
  Arena arena(be.get(), 4096);
  auto sequence = [&] {
    ArenaScope scope(arena);
    std::vector<const void*> at;
    for (int64_t n : {100, 2000, 50, 700}) at.push_back(arena.tensor(Shape{n}, DType::F32).data);
    return at;
  };
  const auto first = sequence();
  EXPECT_EQ(sequence(), first);
  const size_t before = arena.capacity();
  {
    ArenaScope scope(arena);
    arena.tensor(Shape{100000}, DType::F32);
  }
  EXPECT_GT(arena.capacity(), before);
  EXPECT_EQ(sequence(), first);
  Tensor held = arena.tensor(Shape{10}, DType::F32);  // another starting state: other addresses
  EXPECT_NE(sequence(), first);
  (void)held;
}

TEST(Decoder, ChunkedDecodingEqualsWhole) {
  auto m = small_model("mla");
  Backend& be = m->backend();
  const ModelConfig& c = m->config();
  const int64_t F = 6;
  auto z = chunk_noise(5, 0, 0, F * 16 * 8 * 8);
  OwnedTensor zt = be.alloc(Shape{F, 16, 8, 8}, DType::F32);
  be.upload(z.data(), DType::F32, zt.t);
  Arena arena(&be);
  OwnedTensor whole = be.alloc(Shape{F * 4, 3, c.height, c.width}, DType::F32);
  auto st = m->decoder()->new_state(be);
  m->decoder()->decode(be, zt.t, st, whole.t, arena);
  auto st2 = m->decoder()->new_state(be);
  OwnedTensor part = be.alloc(Shape{12, 3, c.height, c.width}, DType::F32);
  std::vector<float> w(size_t(whole.t.numel())), p(size_t(part.t.numel()));
  be.download(whole.t, w.data(), DType::F32);
  for (int k = 0; k < 2; ++k) {
    m->decoder()->decode(be, zt.t.dim0_slice(3 * k, 3), st2, part.t, arena);
    be.download(part.t, p.data(), DType::F32);
    std::vector<float> ref(w.begin() + k * int64_t(p.size()), w.begin() + (k + 1) * int64_t(p.size()));
    EXPECT_LT(rel_err(p, ref), 1e-6) << "chunk " << k;
  }
}

TEST(Encoder, RoundShapes) {
  auto m = small_model("mla");
  Backend& be = m->backend();
  const ModelConfig& c = m->config();
  ASSERT_TRUE(m->has_encoder());
  OwnedTensor rgb = be.alloc(Shape{8, 3, c.height, c.width}, DType::F32);
  auto x = chunk_noise(1, 0, 0, rgb.t.numel());
  be.upload(x.data(), DType::F32, rgb.t);
  OwnedTensor z = be.alloc(Shape{2, 16, 8, 8}, DType::F32);
  Arena arena(&be);
  auto st = m->encoder()->new_state(be);
  m->encoder()->encode(be, rgb.t, st, z.t, arena);
  std::vector<float> zz(size_t(z.t.numel()));
  be.download(z.t, zz.data(), DType::F32);
  for (float v : zz) ASSERT_TRUE(std::isfinite(v));
}

TEST(Tokenizer, UnknownAndDroppedWordsAreReported) {
  Tokenizer t(test::test_vocabulary(), 4);
  Tokenized r = t.encode("A RED Ball, zorblax bouncing over the moon");
  EXPECT_EQ(r.ids.size(), 4u);
  EXPECT_EQ(r.unknown, (std::vector<std::string>{"zorblax", "moon"}));
  EXPECT_EQ(r.dropped.size(), 4u);
  EXPECT_EQ(r.words[3].word, "zorblax");
  EXPECT_FALSE(r.words[3].known);
  EXPECT_EQ(r.words[3].id, 1);
  EXPECT_TRUE(r.words[1].known);
}

TEST(Config, ErrorsNameTheField) {
  try {
    ModelConfig::from_json(R"({"dim": 64})", "x.json");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("ffn_dim"), std::string::npos) << e.what();
  }
  std::string bad = test::small_config_json("mla");
  bad.replace(bad.find("\"heads\": 2"), 10, "\"heads\": 3");
  try {
    ModelConfig::from_json(bad, "x.json");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("heads * head_dim"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ModelConfig::from_json("{not json", "x.json"), FormatError);
}
