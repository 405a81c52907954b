// Whole-chunk parity: the CUDA backend (bf16 storage, fp32 accumulation) against the CPU backend (fp32)
// for the tiny model and 2-layer Wan-1.3B MLA/MHA configurations with the same random weights; the
// fused self-attention projections against the separate ones on CUDA; the start-up warm-up on
// CUDA changes no frame; and passes replayed as CUDA graphs give the bits of passes run op by op.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/model/dit.h"
#include "core/model/model.h"
#include "core/runtime/session.h"
#include "core/runtime/warm_up.h"
#include "tests/unit/engine_fixture.h"

using namespace vmla;

namespace {

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

bool have_cuda() {
#ifdef VMLA_WITH_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

// The shipped configuration `name`, with `layers` layers (> 0) instead of its own, and the vocabulary
// its text encoder needs.
ModelConfig config_named(const std::string& name, int layers, std::vector<std::string>* vocab) {
  ModelConfig cfg = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/" + name + ".json");
  if (layers > 0) cfg.layers = layers;
  if (cfg.text_encoder.present) *vocab = load_vocabulary_file(std::string(VMLA_SOURCE_DIR) + "/resources/vocab/tiny-words.txt");
  return cfg;
}

void parity(const std::string& name, int layers, int chunks, AttnPath path) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::string> vocab;
  const ModelConfig cfg = config_named(name, layers, &vocab);
  std::shared_ptr<Backend> cpu = create_cpu_backend();
  std::shared_ptr<Backend> gpu = create_backend("cuda");
  auto mc = Model::random(cfg, vocab, 42, cpu);
  auto mg = Model::random(cfg, vocab, 42, gpu);
  SessionOptions so;
  so.keep_snapshots = false;
  so.attn_path = path;
  Session sc(mc, so), sg(mg, so);
  std::vector<uint8_t> fc, fg;
  SessionCallbacks cbc, cbg;
  cbc.on_frames = [&](const FrameBatch& b) { fc.assign(b.rgb, b.rgb + size_t(b.count) * b.width * b.height * 3); };
  cbg.on_frames = [&](const FrameBatch& b) { fg.assign(b.rgb, b.rgb + size_t(b.count) * b.width * b.height * 3); };
  for (int c = 0; c < chunks; ++c) {
    ChunkSpec spec{"a red ball bouncing on the beach at sunset", 7, false};
    sc.extend(spec, cbc);
    sg.extend(spec, cbg);
    const double e = rel_err(sg.latent(c), sc.latent(c));
    std::printf("[parity] %s layers=%d path=%s chunk %d: latent normalised error %.3e (cpu %.1f ms, cuda %.1f ms)\n",
                name.c_str(), cfg.layers, attn_path_name(sg.attn_path()), c, e, sc.metrics().ms_last_chunk,
                sg.metrics().ms_last_chunk);
    EXPECT_LT(e, 1e-2) << name << " chunk " << c;
    if (!fc.empty()) {
      double diff = 0;
      for (size_t i = 0; i < fc.size(); ++i) diff += std::abs(int(fc[i]) - int(fg[i]));
      diff /= double(fc.size());
      std::printf("[parity] %s chunk %d: frames mean |difference| %.3f levels of 255\n", name.c_str(), c, diff);
      EXPECT_LT(diff, 3.0);
    }
  }
}

// The fused projections (the default) against the separate ones (VMLA_FUSED_PROJECTIONS=0, read when
// the model is built) on one CUDA backend, same weights: latents of `chunks` chunks, each followed by
// its cache pass, so later chunks also compare the cache entries.
void fused_vs_separate(const std::string& name, int layers, int chunks, AttnPath path) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::string> vocab;
  const ModelConfig cfg = config_named(name, layers, &vocab);
  std::shared_ptr<Backend> gpu = create_backend("cuda");
  auto build = [&](const char* fused) {
    test::ScopedEnv env("VMLA_FUSED_PROJECTIONS", fused);
    return Model::random(cfg, vocab, 42, gpu);
  };
  auto mf = build("1"), ms = build("0");
  ASSERT_TRUE(mf->dit().fused_projections());
  ASSERT_FALSE(ms->dit().fused_projections());
  SessionOptions so;
  so.keep_snapshots = false;
  so.decode = false;
  so.attn_path = path;
  Session sf(mf, so), ss(ms, so);
  for (int c = 0; c < chunks; ++c) {
    ChunkSpec spec{"a red ball bouncing on the beach at sunset", 7, false};
    sf.extend(spec);
    ss.extend(spec);
    const double e = rel_err(sf.latent(c), ss.latent(c));
    std::printf("[fused projections] %s layers=%d path=%s chunk %d: latent normalised difference %.3e "
                "(fused %.1f ms, separate %.1f ms)\n",
                name.c_str(), cfg.layers, attn_path_name(sf.attn_path()), c, e, sf.metrics().ms_last_chunk,
                ss.metrics().ms_last_chunk);
    EXPECT_LT(e, 1e-2) << name << " chunk " << c;
  }
}

}  // namespace

TEST(CudaFusedProjections, TinyAbsorbed) { fused_vs_separate("tiny", -1, 3, AttnPath::Absorbed); }
TEST(CudaFusedProjections, TinyExpanded) { fused_vs_separate("tiny", -1, 3, AttnPath::Expanded); }
TEST(CudaFusedProjections, TinyMha) { fused_vs_separate("tiny-mha", -1, 3, AttnPath::Auto); }
TEST(CudaFusedProjections, Wan13bMlaAbsorbed2Layers) { fused_vs_separate("wan1.3b-mla", 2, 2, AttnPath::Absorbed); }
TEST(CudaFusedProjections, Wan13bMlaExpanded2Layers) { fused_vs_separate("wan1.3b-mla", 2, 2, AttnPath::Expanded); }
TEST(CudaFusedProjections, Wan13bMha2Layers) { fused_vs_separate("wan1.3b-mha", 2, 2, AttnPath::Auto); }

TEST(CudaModelParity, TinyAbsorbed) { parity("tiny", -1, 3, AttnPath::Absorbed); }
TEST(CudaModelParity, TinyExpanded) { parity("tiny", -1, 2, AttnPath::Expanded); }
TEST(CudaModelParity, TinyMha) { parity("tiny-mha", -1, 2, AttnPath::Auto); }
TEST(CudaModelParity, Wan13bMla2Layers) { parity("wan1.3b-mla", 2, 2, AttnPath::Absorbed); }
TEST(CudaModelParity, Wan13bMlaExpanded2Layers) { parity("wan1.3b-mla", 2, 1, AttnPath::Expanded); }
TEST(CudaModelParity, Wan13bMha2Layers) { parity("wan1.3b-mha", 2, 2, AttnPath::Auto); }

// The warm-up (not forced: the CUDA backend asks for it) leaves the frames of later sessions
// bit-identical to those of a session on a backend that had none. Each run gets a backend of its own,
// so the warmed one starts without GEMM plans or scratch, as a process does.
TEST(CudaWarmUp, FramesBitIdenticalWithAndWithoutWarmUp) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  ModelConfig cfg = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/tiny.json");
  const auto vocab = load_vocabulary_file(std::string(VMLA_SOURCE_DIR) + "/resources/vocab/tiny-words.txt");
  auto run = [&](bool warm) {
    auto m = Model::random(cfg, vocab, 42, std::shared_ptr<Backend>(create_backend("cuda")));
    SessionOptions so;
    so.keep_snapshots = false;
    if (warm) {
      WarmUpOptions o;
      o.session = so;
      const WarmUpReport r = warm_up(m, o);
      EXPECT_TRUE(r.ran);
      EXPECT_EQ(r.chunks, 2);
      std::printf("[warm-up] tiny on cuda: %.3f s, %d chunks\n", r.seconds, r.chunks);
      so.workspace = r.workspace;
    }
    Session s(m, so);
    std::vector<std::vector<uint8_t>> frames;
    SessionCallbacks cb;
    cb.on_frames = [&](const FrameBatch& b) { frames.emplace_back(b.rgb, b.rgb + size_t(b.count) * b.width * b.height * 3); };
    for (int c = 0; c < 4; ++c) s.extend({"a red ball bouncing on the beach at sunset", 7, false}, cb);
    return frames;
  };
  const auto cold = run(false), warm = run(true);
  ASSERT_EQ(cold.size(), 4u);
  ASSERT_EQ(warm.size(), cold.size());
  for (size_t i = 0; i < cold.size(); ++i) EXPECT_TRUE(warm[i] == cold[i]) << "chunk " << i;
}

namespace {

// One chunk's observable state: frames, clean latent, every cache entry (all layers, both components).
struct ChunkState {
  std::vector<uint8_t> frames;
  std::vector<float> latent;
  std::vector<std::vector<float>> cache;
  double ms = 0;
};

template <class T>
std::string first_difference(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size());
  size_t n = 0, first = a.size();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      if (first == a.size()) first = i;
      ++n;
      worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    }
  if (n == 0) return "";
  return std::to_string(n) + " of " + std::to_string(a.size()) + " elements differ (first at " + std::to_string(first) +
         ", largest |difference| " + std::to_string(worst) + ")";
}

// The same session script on two CUDA backends with the same random weights: one records and replays
// its DiT passes as CUDA graphs (VMLA_CUDA_GRAPHS=1), the other runs them op by op (=0). The script
// fills the window and evicts from it (a full window cycles through its slot layouts, so graphs are
// replayed across chunks), switches the prompt with a re-cache pass, switches back without one, then
// rewinds two chunks and generates a different continuation. After every chunk the frames, the clean
// latent and the whole cache must be bit-identical. With gemm_tune, both backends time the GEMM
// algorithms (VMLA_GEMM_TUNE=1; the choice is shared by the process), never inside a recording.
void graphs_vs_eager(const std::string& name, int layers, AttnPath path, bool gemm_tune = false) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::string> vocab;
  const ModelConfig cfg = config_named(name, layers, &vocab);
  auto build = [&](const char* graphs) {
    test::ScopedEnv env("VMLA_CUDA_GRAPHS", graphs);
    test::ScopedEnv tune("VMLA_GEMM_TUNE", gemm_tune ? "1" : "0");
    return Model::random(cfg, vocab, 42, std::shared_ptr<Backend>(create_backend("cuda")));
  };
  auto mg = build("1"), me = build("0");
  ASSERT_TRUE(mg->backend().pass_graphs_enabled());
  ASSERT_FALSE(me->backend().pass_graphs_enabled());
  SessionOptions so;
  so.attn_path = path;
  so.decode = mg->has_decoder();
  Session sg(mg, so), se(me, so);

  auto run_chunk = [&](Session& s, const ChunkSpec& spec) {
    ChunkState st;
    SessionCallbacks cb;
    cb.on_frames = [&](const FrameBatch& b) { st.frames.assign(b.rgb, b.rgb + size_t(b.count) * b.width * b.height * 3); };
    s.extend(spec, cb);
    st.latent = s.latent(s.chunks() - 1);
    for (int l = 0; l < cfg.layers; ++l)
      for (int c = 0; c < 2; ++c) st.cache.push_back(s.cache_contents(l, c));
    st.ms = s.metrics().ms_last_chunk;
    return st;
  };
  const std::string a = "a red ball bouncing on the beach at sunset", b = "a blue cube in the snow";
  struct Step {
    const char* what;
    int rewind_to;  // -1: none
    ChunkSpec spec;
  };
  std::vector<Step> script;
  for (int c = 0; c < 6; ++c) script.push_back({"prompt A", -1, {a, 7, false}});
  script.push_back({"prompt B, re-cache", -1, {b, 7, true}});
  script.push_back({"prompt B", -1, {b, 7, false}});
  script.push_back({"prompt A again, no re-cache", -1, {a, 7, false}});
  script.push_back({"rewound to chunk 7, prompt A seed 8", 7, {a, 8, false}});
  script.push_back({"prompt A seed 8", -1, {a, 8, false}});

  std::printf("[graphs] %s layers=%d path=%s%s: graphs on (VMLA_CUDA_GRAPHS=1) against op by op (=0), bit for bit\n",
              name.c_str(), cfg.layers, attn_path_name(sg.attn_path()), gemm_tune ? " gemm-tune" : "");
  int differing = 0;
  for (const Step& step : script) {
    if (step.rewind_to >= 0) {
      sg.rewind(step.rewind_to);
      se.rewind(step.rewind_to);
    }
    const int chunk = sg.chunks();
    const ChunkState g = run_chunk(sg, step.spec), e = run_chunk(se, step.spec);
    const PassGraphs::Stats gs = sg.pass_graphs();
    std::printf("[graphs] %s chunk %d (%s): graphs %.2f ms, op by op %.2f ms; so far %lld passes replayed, %lld "
                "recorded, %lld updated, %lld op by op, %lld failed, %lld graphs held\n",
                name.c_str(), chunk, step.what, g.ms, e.ms, (long long)gs.replayed, (long long)gs.captured,
                (long long)gs.updated, (long long)gs.eager, (long long)gs.failed, (long long)gs.graphs);
    const std::string df = first_difference(g.frames, e.frames), dl = first_difference(g.latent, e.latent);
    EXPECT_TRUE(df.empty()) << name << " chunk " << chunk << " frames: " << df;
    EXPECT_TRUE(dl.empty()) << name << " chunk " << chunk << " latent: " << dl;
    bool same = df.empty() && dl.empty();
    for (size_t i = 0; i < g.cache.size(); ++i) {
      const std::string dc = first_difference(g.cache[i], e.cache[i]);
      EXPECT_TRUE(dc.empty()) << name << " chunk " << chunk << " cache layer " << i / 2 << " component " << i % 2
                              << ": " << dc;
      same = same && dc.empty();
    }
    differing += same ? 0 : 1;
  }
  const PassGraphs::Stats gs = sg.pass_graphs(), es = se.pass_graphs();
  std::printf("[graphs] %s layers=%d path=%s%s total: %d of %zu chunks differ (frames, latent or cache); %lld passes "
              "replayed, %lld recorded, %lld updated, %lld op by op, %lld failed\n",
              name.c_str(), cfg.layers, attn_path_name(sg.attn_path()), gemm_tune ? " gemm-tune" : "", differing,
              script.size(), (long long)gs.replayed, (long long)gs.captured, (long long)gs.updated, (long long)gs.eager,
              (long long)gs.failed);
  if (gs.failed) std::printf("[graphs] %s: last recording failure: %s\n", name.c_str(), gs.last_failure.c_str());
  EXPECT_EQ(gs.failed, 0) << gs.last_failure;
  EXPECT_GT(gs.captured, 0);
  EXPECT_GT(gs.replayed, gs.captured) << "a full window should replay more passes than it records";
  EXPECT_EQ(es.replayed + es.captured + es.updated, 0) << "VMLA_CUDA_GRAPHS=0 must run every pass op by op";
}

}  // namespace

TEST(CudaGraphs, TinyAbsorbedBitIdenticalToOpByOp) { graphs_vs_eager("tiny", -1, AttnPath::Absorbed); }
TEST(CudaGraphs, TinyExpandedBitIdenticalToOpByOp) { graphs_vs_eager("tiny", -1, AttnPath::Expanded); }
TEST(CudaGraphs, TinyAbsorbedGemmTuningBitIdenticalToOpByOp) { graphs_vs_eager("tiny", -1, AttnPath::Absorbed, true); }
TEST(CudaGraphs, TinyMhaBitIdenticalToOpByOp) { graphs_vs_eager("tiny-mha", -1, AttnPath::Auto); }
TEST(CudaGraphs, Wan13bMla2LayersBitIdenticalToOpByOp) { graphs_vs_eager("wan1.3b-mla", 2, AttnPath::Auto); }
TEST(CudaGraphs, Wan13bMha2LayersBitIdenticalToOpByOp) { graphs_vs_eager("wan1.3b-mha", 2, AttnPath::Auto); }

// Time of a pass (denoising and cache passes alike, the host synchronised after each as the session
// does) of the launch-bound tiny model with the window full, graphs on against off, each on a backend
// of its own: the median over 6 chunks after 3 that fill the window. Prints the numbers; asserts only
// that graphs were replayed (timings belong in docs/BENCHMARKS.md, measured with `videomla bench`).
TEST(CudaGraphs, TinyPassTimeWithAndWithoutGraphs) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::string> vocab;
  const ModelConfig cfg = config_named("tiny", -1, &vocab);
  auto median_pass_ms = [&](const char* graphs, PassGraphs::Stats* stats) {
    test::ScopedEnv env("VMLA_CUDA_GRAPHS", graphs);
    auto m = Model::random(cfg, vocab, 42, std::shared_ptr<Backend>(create_backend("cuda")));
    SessionOptions so;
    so.keep_snapshots = false;
    so.decode = false;
    Session s(m, so);
    std::vector<double> ms;
    SessionCallbacks cb;
    bool timing = false;
    cb.on_progress = [&](const Progress&) {
      if (timing) ms.push_back(s.metrics().ms_last_pass);
    };
    for (int c = 0; c < 9; ++c) {
      timing = c >= 3;
      s.extend({"a red ball bouncing on the beach at sunset", 7, false}, cb);
    }
    *stats = s.pass_graphs();
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  PassGraphs::Stats on_stats, off_stats;
  const double on = median_pass_ms("1", &on_stats), off = median_pass_ms("0", &off_stats);
  std::printf("[graphs] tiny, window full: median pass (denoising and cache passes, host synchronised after "
              "each) %.3f ms with graphs, %.3f ms op by op (%.2fx); graphs: %lld replayed, %lld recorded, %lld op by op\n",
              on, off, off / on, (long long)on_stats.replayed, (long long)on_stats.captured, (long long)on_stats.eager);
  EXPECT_GT(on_stats.replayed, 0);
}
