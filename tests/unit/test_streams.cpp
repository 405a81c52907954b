// Concurrent streams (CPU): a workspace shared by several sessions gives bit-identical results, the
// per-stream memory is the sessions' real buffers and matches the formulas (MLA/MHA cache per token
// per layer = (d_c + rope) / (2 * heads * head_dim) exactly), and the stream-count projection.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/model/autoencoder.h"
#include "core/runtime/stream_sweep.h"
#include "tests/unit/engine_fixture.h"
#include "tests/unit/stream_scripts.h"

using namespace vmla;
using namespace vmla::test;

namespace {

std::shared_ptr<Model> config_model(const std::string& name) {
  // A backend of its own, so that the sweep's baseline is exactly this model.
  std::shared_ptr<Backend> be = create_cpu_backend();
  const ModelConfig cfg = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/" + name + ".json");
  return Model::random(cfg, vmla::test::test_vocabulary(), 42, be);
}

}  // namespace

TEST(Streams, SharedWorkspaceIsBitIdenticalToSeparateSessions) {
  for (const char* attention : {"mla", "mha"}) {
    SCOPED_TRACE(attention);
    auto m = small_model(attention);
    const size_t n = kScripts.size();
    // Separate sessions, one after the other, each with its own workspace.
    std::vector<StreamRun> alone(n);
    for (size_t i = 0; i < n; ++i) {
      Session s(m);
      EXPECT_GT(s.memory().workspace, 0u);
      for (size_t c = 0; c < kScripts[i].size(); ++c) run_script(s, i, c, alone[i]);
    }
    // The same streams interleaved chunk by chunk on one shared workspace.
    SessionOptions so;
    so.workspace = std::make_shared<SessionWorkspace>(m);
    std::vector<std::unique_ptr<Session>> sessions;
    for (size_t i = 0; i < n; ++i) sessions.push_back(std::make_unique<Session>(m, so));
    std::vector<StreamRun> shared(n);
    for (size_t c = 0; c < kScripts[0].size(); ++c)
      for (size_t i = 0; i < n; ++i) run_script(*sessions[i], i, c, shared[i]);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(&sessions[i]->workspace(), so.workspace.get());
      EXPECT_EQ(sessions[i]->memory().workspace, 0u);
      ASSERT_EQ(shared[i].latents.size(), alone[i].latents.size());
      ASSERT_EQ(shared[i].frames.size(), alone[i].frames.size());
      for (size_t c = 0; c < alone[i].latents.size(); ++c) {
        ASSERT_EQ(shared[i].latents[c].size(), alone[i].latents[c].size());
        EXPECT_EQ(0, std::memcmp(shared[i].latents[c].data(), alone[i].latents[c].data(), alone[i].latents[c].size() * 4))
            << "stream " << i << " chunk " << c;
        EXPECT_EQ(shared[i].frames[c], alone[i].frames[c]) << "stream " << i << " chunk " << c;
      }
    }
  }
}

TEST(Streams, SharedWorkspaceServesOneSessionAtATime) {
  auto m = small_model("mla");
  SessionOptions so;
  so.workspace = std::make_shared<SessionWorkspace>(m);
  Session a(m, so), b(m, so);
  bool tried = false;
  SessionCallbacks cb;
  cb.on_progress = [&](const Progress&) {
    if (tried) return;
    tried = true;
    EXPECT_THROW(b.extend(kBall), Error);
  };
  a.extend(kBall, cb);
  EXPECT_TRUE(tried);
  EXPECT_EQ(b.chunks(), 0);
  b.extend(kBall);  // free again once a's chunk is done
  EXPECT_EQ(b.chunks(), 1);
  // A workspace belongs to one model.
  SessionOptions other;
  other.workspace = std::make_shared<SessionWorkspace>(small_model("mla", 4));
  EXPECT_THROW(std::make_unique<Session>(m, other), Error);
}

TEST(Streams, ProjectedStreamCount) {
  EXPECT_EQ(streams_that_fit(100, 10, 30), 3);  // floor(90 / 30)
  EXPECT_EQ(streams_that_fit(100, 10, 31), 2);
  EXPECT_EQ(streams_that_fit(100, 100, 1), 0);
  EXPECT_EQ(streams_that_fit(100, 200, 1), 0);
  const size_t MiB = size_t(1) << 20, GiB = size_t(1) << 30;
  // 80 GB budget, 3 GiB shared, 90 MiB per stream: (80e9 - 3221225472) / 94371840 = 813.6
  EXPECT_EQ(streams_that_fit(80e9, 3 * GiB, 90 * MiB), 813);
  StreamSweepResult r;
  r.baseline_bytes = 2 * GiB;
  r.workspace_bytes = GiB - 5;
  r.unaccounted_bytes = 3;
  r.device_extra_bytes = 2;
  r.per_stream_bytes = 90 * MiB;
  EXPECT_EQ(r.shared_bytes(), 3 * GiB);
  EXPECT_EQ(r.streams_in(80e9), 813);
  EXPECT_THROW(streams_that_fit(1, 0, 0), Error);
}

// tiny (MLA) against tiny-mha: the same model but for the attention; two streams each.
TEST(Streams, SweepMemoryIsTheRealBuffersAndMatchesTheFormulas) {
  StreamSweepOptions o;
  o.streams = 2;
  o.rounds = 1;
  o.session.steps = 2;  // fewer passes: memory does not depend on the step count
  StreamSweepResult res[2];
  ModelConfig cfgs[2];
  const char* names[2] = {"tiny", "tiny-mha"};
  for (int k = 0; k < 2; ++k) {
    SCOPED_TRACE(names[k]);
    auto m = config_model(names[k]);
    const ModelConfig& cfg = cfgs[k] = m->config();
    const StreamSweepResult& r = res[k] = run_stream_sweep(m, o);
    EXPECT_EQ(r.streams, 2);
    EXPECT_EQ(r.chunk_ms.size(), 2u);
    EXPECT_EQ(r.round_ms.size(), 1u);
    EXPECT_GT(r.fps_aggregate, 0.0);
    const size_t slots = size_t(cfg.sink_frames + cfg.window_frames);
    const size_t f32 = 4;  // the CPU backend stores F32
    // The allocated cache against the formula: layers x slots x tokens x values per token.
    EXPECT_EQ(r.per_stream.cache, size_t(cfg.layers) * slots * size_t(cfg.tokens_per_frame()) *
                                      size_t(cfg.cache_values_per_token()) * f32);
    EXPECT_DOUBLE_EQ(r.cache_values_per_token_layer, double(cfg.cache_values_per_token()));
    EXPECT_EQ(r.cache_in_use_bytes, r.per_stream.cache);  // warm-up filled sink + window
    // Cross-attention K and V: layers x 2 x [text_len, dim].
    EXPECT_EQ(r.per_stream.cross_attention, size_t(cfg.layers) * 2 * size_t(cfg.text_len) * size_t(cfg.dim) * f32);
    EXPECT_EQ(r.per_stream.decoder_state, m->decoder()->new_state(m->backend()).bytes());
    EXPECT_EQ(r.per_stream.snapshots, 0u);
    EXPECT_EQ(r.per_stream.workspace, 0u);
    EXPECT_EQ(r.per_stream_bytes,
              r.per_stream.cache + r.per_stream.cross_attention + r.per_stream.decoder_state);
    // The CPU backend's allocation accounting is fully explained: model + workspace + 2 streams.
    EXPECT_GT(r.workspace_arena_bytes, 0u);
    EXPECT_GT(r.workspace_staging_bytes, 0u);
    EXPECT_EQ(r.workspace_bytes, r.workspace_arena_bytes + r.workspace_staging_bytes);
    EXPECT_EQ(r.unaccounted_bytes, 0u);
    EXPECT_EQ(r.device_extra_bytes, 0u);
    EXPECT_EQ(r.peak_engine_bytes, r.baseline_bytes + r.workspace_bytes + 2 * r.per_stream_bytes);
    EXPECT_EQ(r.shared_bytes(), r.baseline_bytes + r.workspace_bytes);
    EXPECT_EQ(r.streams_in(1e9), int64_t((1e9 - double(r.shared_bytes())) / double(r.per_stream_bytes)));
  }
  // MLA / MHA per token per layer, exactly: (d_c + rope) / (2 * heads * head_dim) = 56 / 768.
  const ModelConfig& mla = cfgs[0];
  ASSERT_EQ(mla.attention, AttentionKind::MLA);
  ASSERT_EQ(cfgs[1].attention, AttentionKind::MHA);
  ASSERT_EQ(mla.layers, cfgs[1].layers);
  ASSERT_EQ(mla.tokens_per_frame(), cfgs[1].tokens_per_frame());
  const size_t num = size_t(mla.kv_latent + mla.rope_dim), den = size_t(2 * mla.heads * mla.head_dim);
  EXPECT_EQ(num, 56u);
  EXPECT_EQ(den, 768u);
  EXPECT_EQ(res[0].per_stream.cache * den, res[1].per_stream.cache * num);
  EXPECT_EQ(res[0].cache_bytes_per_token_layer * double(den), res[1].cache_bytes_per_token_layer * double(num));
  // Everything else a stream holds is the same for both.
  EXPECT_EQ(res[0].per_stream.cross_attention, res[1].per_stream.cross_attention);
  EXPECT_EQ(res[0].per_stream.decoder_state, res[1].per_stream.decoder_state);
  EXPECT_LT(res[0].per_stream_bytes, res[1].per_stream_bytes);
}

TEST(Streams, SweepWithoutSharingCountsEachWorkspace) {
  auto m = small_model("mla");
  StreamSweepOptions o;
  o.streams = 2;
  o.share_workspace = false;
  o.session.steps = 1;
  const StreamSweepResult r = run_stream_sweep(m, o);
  EXPECT_EQ(r.workspace_bytes, 0u);
  EXPECT_GT(r.per_stream.workspace, 0u);
  EXPECT_EQ(r.per_stream_bytes, r.per_stream.cache + r.per_stream.cross_attention + r.per_stream.decoder_state +
                                    r.per_stream.workspace);
}

