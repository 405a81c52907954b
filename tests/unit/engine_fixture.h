#pragma once
// A small random model shared by the engine tests: every code path of the tiny model at a size the
// CPU runs in milliseconds.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/model/model.h"

namespace vmla::test {

inline std::string small_config_json(const std::string& attention, int sink = 1, int window = 2) {
  std::string mla = attention == "mla" ? R"("mla": {"kv_latent": 16, "q_latent": 32, "nope_dim": 24, "rope_dim": 8},)" : "";
  return std::string(R"({"name": "test-small", "dim": 64, "ffn_dim": 128, "layers": 2, "heads": 2, "head_dim": 32,
    "in_channels": 16, "out_channels": 16, "patch": [1, 2, 2], "freq_dim": 32, "text_dim": 32, "text_len": 16,
    "eps": 1e-6, "qk_norm": true, "cross_attn_norm": true, "attention": ")") + attention + R"(", )" + mla + R"(
    "rope": {"theta": 10000.0, "axis_dims": [12, 10, 10], "mla_pairs": [2, 1, 1]},
    "video": {"width": 64, "height": 64, "fps": 16, "temporal_stride": 4, "spatial_stride": 8, "latent_channels": 16},
    "stream": {"chunk_frames": 3, "sink_frames": )" + std::to_string(sink) + R"(, "window_frames": )" + std::to_string(window) + R"(},
    "sampler": {"kind": "renoise", "timesteps": [1000, 750, 500, 250], "shift": 5.0, "context_t": 0},
    "text_encoder": {"vocab_size": 0, "dim": 32, "layers": 1, "heads": 2, "ffn_dim": 64, "eps": 1e-5},
    "decoder": {"channels": [16, 8, 8, 8], "blocks_per_stage": 1, "time_upscale": [false, true, true], "space_upscale": [true, true, true]},
    "encoder": {"channels": 8, "blocks_per_stage": 1, "time_downscale": [true, true, false]}})";
}

inline std::vector<std::string> test_vocabulary() {
  return load_vocabulary_file(std::string(VMLA_SOURCE_DIR) + "/resources/vocab/tiny-words.txt");
}

inline std::shared_ptr<Model> small_model(const std::string& attention, uint64_t seed = 3) {
  static std::shared_ptr<Backend> cpu = create_cpu_backend();
  return Model::random(ModelConfig::from_json(small_config_json(attention), "test"), test_vocabulary(), seed, cpu);
}

// Sets an environment variable while it lives (for switches read when something is built, e.g.
// VMLA_FUSED_PROJECTIONS when a model is), then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) {
      had_ = true;
      old_ = v;
    }
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace vmla::test
