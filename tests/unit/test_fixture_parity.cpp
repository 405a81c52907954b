// The CPU engine against the PyTorch reference (tools/vmla_ref): fixtures in tests/fixtures were
// written by tools/make_fixtures.py in float64; the fp32 engine must follow them within 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/io/project.h"
#include "core/io/safetensors.h"
#include "core/model/text_encoder.h"
#include "core/runtime/noise.h"
#include "core/runtime/session.h"

using namespace vmla;

namespace {

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

std::string fixture(const std::string& name) { return std::string(VMLA_SOURCE_DIR) + "/tests/fixtures/" + name; }

struct Step {
  int prompt;
  bool recache;
};

void check_rollout(const std::string& kind, const std::string& model_path, const std::string& rollout_path) {
  auto be = std::shared_ptr<Backend>(create_cpu_backend());
  io::SafeTensors ref = io::SafeTensors::open(rollout_path);
  if (auto sha = ref.meta("model_sha256")) {
    ASSERT_EQ(io::file_sha256(model_path), *sha)
        << model_path << " is not the model " << rollout_path
        << " was made from: after exporting a new model, run /usr/bin/python3 tools/make_fixtures.py --shipped";
  }
  auto model = Model::load(model_path, be);
  const auto prompts = nlohmann::json::parse(*ref.meta("prompts")).get<std::vector<std::string>>();
  const auto schedule = nlohmann::json::parse(*ref.meta("schedule"));
  const uint64_t seed = std::stoull(*ref.meta("seed"));
  const ModelConfig& cfg = model->config();
  const double tol = 1e-4;

  // Tokenizer and text encoder.
  Arena arena(be.get());
  for (size_t j = 0; j < prompts.size(); ++j) {
    Tokenized tok = model->tokenizer().encode(prompts[j]);
    std::vector<float> ids = ref.read_f32("text" + std::to_string(j) + ".ids");
    ASSERT_EQ(tok.ids.size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(tok.ids[i], int32_t(ids[i]));
    OwnedTensor enc = be->alloc(Shape{cfg.text_len, cfg.text_dim}, DType::F32);
    model->text_encoder()->encode(*be, tok.ids, enc.t, arena);
    std::vector<float> got(size_t(enc.t.numel()));
    be->download(enc.t, got.data(), DType::F32);
    EXPECT_LT(rel_err(got, ref.read_f32("text" + std::to_string(j) + ".encoded")), tol) << "text " << j;
  }

  SessionOptions so;
  so.attn_path = *ref.meta("attention_path") == "expanded" ? AttnPath::Expanded : AttnPath::Absorbed;
  Session s(model, so);
  std::vector<float> v0;
  std::vector<uint8_t> frames;
  SessionCallbacks cb;
  cb.on_velocity = [&](int, int step, const Tensor& v) {
    if (step == 0) {
      v0.resize(size_t(v.numel()));
      be->download(v, v0.data(), DType::F32);
    }
  };
  cb.on_frames = [&](const FrameBatch& f) { frames.assign(f.rgb, f.rgb + size_t(f.count) * f.width * f.height * 3); };
  for (size_t c = 0; c < schedule.size(); ++c) {
    const std::string p = "chunk" + std::to_string(c) + ".";
    std::vector<float> noise = chunk_noise(seed, c, 0, int64_t(v0.empty() ? ref.info(p + "noise0").shape.numel() : v0.size()));
    EXPECT_LT(rel_err(noise, ref.read_f32(p + "noise0")), 1e-7) << "Philox noise, chunk " << c;
    ChunkSpec spec{prompts[schedule[c]["prompt"].get<size_t>()], seed, schedule[c]["recache"].get<bool>()};
    s.extend(spec, cb);
    EXPECT_LT(rel_err(v0, ref.read_f32(p + "v0")), tol) << "first-pass velocity, chunk " << c;
    EXPECT_LT(rel_err(s.latent(int(c)), ref.read_f32(p + "x0")), tol) << "clean latent, chunk " << c;
    for (int l = 0; l < cfg.layers; ++l) {
      const std::string names[2] = {kind == "mla" ? "c_kv" : "k", kind == "mla" ? "k_r" : "v"};
      for (int comp = 0; comp < 2; ++comp) {
        const std::string name = p + "cache.l" + std::to_string(l) + "." + names[comp];
        if (!ref.has(name)) continue;  // the shipped model's fixture keeps the first and last layer
        EXPECT_LT(rel_err(s.cache_contents(l, comp), ref.read_f32(name)), tol)
            << "cache chunk " << c << " layer " << l << " " << names[comp];
      }
    }
    if (ref.has(p + "frames")) {
      std::vector<float> rf = ref.read_f32(p + "frames");  // [N, 3, H, W] raw
      const int64_t N = ref.info(p + "frames").shape[0], H = cfg.height, W = cfg.width;
      // All frames of the chunk, or the subset named by frame_index.
      std::vector<int64_t> index(size_t(N), 0);
      for (int64_t n = 0; n < N; ++n) index[size_t(n)] = n;
      if (ref.has(p + "frame_index")) {
        const std::vector<float> fi = ref.read_f32(p + "frame_index");
        ASSERT_EQ(fi.size(), size_t(N));
        for (int64_t n = 0; n < N; ++n) index[size_t(n)] = int64_t(fi[size_t(n)]);
      }
      const int64_t chunk_frames = cfg.chunk_frames * cfg.temporal_stride;
      ASSERT_EQ(frames.size(), size_t(chunk_frames * H * W * 3));
      int worst = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t ch = 0; ch < 3; ++ch)
          for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
              const float r = rf[size_t(((n * 3 + ch) * H + y) * W + x)];
              const int want = int(std::lround(std::min(1.f, std::max(0.f, r)) * 255.f));
              const int got = frames[size_t(((index[size_t(n)] * H + y) * W + x) * 3 + ch)];
              worst = std::max(worst, std::abs(want - got));
            }
      EXPECT_LE(worst, 1) << "decoded frames, chunk " << c;
    }
  }
}

}  // namespace

TEST(FixtureParity, MlaRolloutMatchesPyTorchReference) {
  check_rollout("mla", fixture("ref_mla_model.safetensors"), fixture("ref_mla_rollout.safetensors"));
}
TEST(FixtureParity, MhaRolloutMatchesPyTorchReference) {
  check_rollout("mha", fixture("ref_mha_model.safetensors"), fixture("ref_mha_rollout.safetensors"));
}
// The shipped default model (resources/models, bf16 widened to f32) against its reference rollout.
TEST(FixtureParity, ShippedModelRolloutMatchesPyTorchReference) {
  check_rollout("mla", std::string(VMLA_SOURCE_DIR) + "/resources/models/vmla-tiny.safetensors",
                fixture("shipped_mla_rollout.safetensors"));
}
