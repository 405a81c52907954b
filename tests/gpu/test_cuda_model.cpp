// Whole-chunk parity: the CUDA backend (bf16 storage, fp32 accumulation) against the CPU backend (fp32)
// for the tiny model and 2-layer Wan-1.3B MLA/MHA configurations with the same random weights; the
// fused self-attention projections against the separate ones on CUDA; and the start-up warm-up on
// CUDA changes no frame.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

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
