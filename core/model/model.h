#pragma once
// Model: a loaded VMLA-DiT (docs/MODEL.md) with its text encoder and autoencoder, weights resident on
// one backend. Immutable after load; shared by sessions.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/model/tokenizer.h"
#include "core/tensor/backend.h"

namespace vmla {

namespace io { class SafeTensors; }

struct ModelInfo {
  std::string path;             // empty for in-memory random models
  bool trained = false;
  std::string description;
  std::string format;
  int64_t params_total = 0, params_dit = 0, params_text = 0, params_decoder = 0, params_encoder = 0;
  std::map<std::string, std::string> metadata;
};

class Dit;
class TextEncoder;
class VideoDecoder;
class VideoEncoder;

class Model {
 public:
  // Loads a .safetensors model file onto `backend` (weights converted to backend->act_dtype()).
  // Throws IoError / FormatError naming the file, the tensor and what was wrong.
  static std::shared_ptr<Model> load(const std::string& path, std::shared_ptr<Backend> backend);
  // Random weights (seeded, deterministic) for benchmarks and the untrained default model.
  static std::shared_ptr<Model> random(const ModelConfig& cfg, const std::vector<std::string>& vocabulary,
                                       uint64_t seed, std::shared_ptr<Backend> backend);
  // Writes a random-weight model file (BF16 or F32) labelled untrained.
  static void write_random(const ModelConfig& cfg, const std::vector<std::string>& vocabulary, uint64_t seed,
                           DType dtype, const std::string& path, const std::string& description);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  const ModelInfo& info() const { return info_; }
  Backend& backend() const { return *backend_; }
  std::shared_ptr<Backend> backend_ptr() const { return backend_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  bool has_text_encoder() const { return text_ != nullptr; }
  bool has_decoder() const { return decoder_ != nullptr; }
  bool has_encoder() const { return encoder_ != nullptr; }

  Dit& dit() const { return *dit_; }
  TextEncoder* text_encoder() const { return text_.get(); }
  VideoDecoder* decoder() const { return decoder_.get(); }
  VideoEncoder* encoder() const { return encoder_.get(); }

 private:
  Model() = default;
  void build(const std::function<std::vector<float>(const std::string&, const Shape&)>& read, bool has_text,
             bool has_decoder, bool has_encoder);

  ModelConfig cfg_;
  ModelInfo info_;
  std::shared_ptr<Backend> backend_;
  Tokenizer tokenizer_;
  std::unique_ptr<Dit> dit_;
  std::unique_ptr<TextEncoder> text_;
  std::unique_ptr<VideoDecoder> decoder_;
  std::unique_ptr<VideoEncoder> encoder_;
};

// The default model: $VMLA_MODEL, the installed share/videomla/models/, the source tree's trained
// resources/models/, then the build tree's generated (untrained) one. Throws IoError listing the paths.
std::string default_model_path();
std::vector<std::string> default_model_search_paths();
// Folder with configs/ and vocab/ (installed share/videomla or the source tree's resources/).
std::string default_resource_dir();
// One word per line.
std::vector<std::string> load_vocabulary_file(const std::string& path);

}  // namespace vmla
