#include "core/model/model.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "core/model/autoencoder.h"
#include "core/model/dit.h"
#include "core/model/text_encoder.h"

namespace vmla {

Model::~Model() = default;

void Model::build(const WeightReader& read, bool has_text, bool has_decoder, bool has_encoder) {
  WeightLoader wl(*backend_, read);
  dit_ = std::make_unique<Dit>(cfg_, *backend_, wl);
  info_.params_dit = dit_->params();
  if (has_text) {
    text_ = std::make_unique<TextEncoder>(cfg_, wl);
    info_.params_text = text_->params();
  }
  if (has_decoder) {
    decoder_ = std::make_unique<VideoDecoder>(cfg_, wl);
    info_.params_decoder = decoder_->params();
  }
  if (has_encoder) {
    encoder_ = std::make_unique<VideoEncoder>(cfg_, wl);
    info_.params_encoder = encoder_->params();
  }
  info_.params_total = wl.params();
}

namespace {

std::vector<std::string> parse_vocabulary(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(origin + ": __metadata__['vocabulary'] is not valid JSON (" + e.what() + ")");
  }
  if (!j.is_array()) throw FormatError(origin + ": __metadata__['vocabulary'] must be a JSON array of words");
  std::vector<std::string> v;
  for (const auto& w : j) {
    if (!w.is_string()) throw FormatError(origin + ": __metadata__['vocabulary'] holds a non-string entry");
    v.push_back(w.get<std::string>());
  }
  if (v.size() < 2 || v[0] != "<pad>" || v[1] != "<unk>")
    throw FormatError(origin + ": vocabulary must start with <pad> and <unk>");
  return v;
}

bool has_prefix(const io::SafeTensors& f, const std::string& prefix) {
  for (const auto& n : f.names())
    if (n.rfind(prefix, 0) == 0) return true;
  return false;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Deterministic random parameters: each tensor is seeded from (seed, name), so the values do not
// depend on loading order. Norm weights are one, biases and modulation tables small, matrices
// uniform with variance 1/fan_in (a stable residual stream for any depth).
std::vector<float> random_tensor(uint64_t seed, const std::string& name, const Shape& shape) {
  std::vector<float> v(size_t(shape.numel()));
  uint64_t state = seed ^ fnv1a(name);
  auto uniform = [&]() { return float(double(splitmix(state) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0); };
  const bool is_norm = name.find("norm") != std::string::npos && ends_with(name, ".weight");
  if (is_norm) {
    for (float& x : v) x = 1.f;
  } else if (ends_with(name, ".bias") || name.find("modulation") != std::string::npos) {
    for (float& x : v) x = 0.05f * uniform();
  } else if (name.find("embedding.weight") != std::string::npos && shape.ndim == 2 &&
             name.find("text_encoder") != std::string::npos) {
    for (float& x : v) x = 0.5f * uniform();
  } else {
    int64_t fan_in = shape.ndim > 1 ? shape.numel() / shape[0] : shape.numel();
    const float a = float(std::sqrt(3.0 / double(std::max<int64_t>(fan_in, 1))));
    for (float& x : v) x = a * uniform();
  }
  return v;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError("cannot open vocabulary file " + path);
  std::vector<std::string> v;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) v.push_back(line);
  return v;
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, std::shared_ptr<Backend> backend) {
  io::SafeTensors file = io::SafeTensors::open(path);
  file.apply_name_map(io::NameMap::detect(file.names()));
  auto cfg_text = file.meta("config");
  if (!cfg_text)
    throw FormatError("model file " + path +
                      " has no configuration (__metadata__['config']); it is not a VideoMLA model file. "
                      "Convert foreign checkpoints with `videomla convert`.");
  std::shared_ptr<Model> m(new Model());
  m->backend_ = std::move(backend);
  m->cfg_ = ModelConfig::from_json(*cfg_text, path);
  m->info_.path = path;
  m->info_.metadata = file.metadata();
  m->info_.trained = file.meta("trained").value_or("false") == "true";
  m->info_.description = file.meta("description").value_or("");
  m->info_.format = file.meta("format").value_or("");
  const bool has_text = m->cfg_.text_encoder.present;
  std::vector<std::string> vocab;
  if (has_text) {
    auto v = file.meta("vocabulary");
    if (!v) throw FormatError("model file " + path + " has a text encoder but no __metadata__['vocabulary']");
    vocab = parse_vocabulary(*v, path);
    if (m->cfg_.text_encoder.vocab_size == 0) m->cfg_.text_encoder.vocab_size = int(vocab.size());
    if (int(vocab.size()) != m->cfg_.text_encoder.vocab_size)
      throw FormatError("model file " + path + ": vocabulary has " + std::to_string(vocab.size()) +
                        " words but the text encoder expects " + std::to_string(m->cfg_.text_encoder.vocab_size));
    m->tokenizer_ = Tokenizer(vocab, m->cfg_.text_len);
  }
  const bool has_dec = m->cfg_.decoder.present && has_prefix(file, "decoder.");
  if (m->cfg_.decoder.present && !has_dec)
    throw FormatError("model file " + path + ": configuration has a decoder but the file holds no decoder.* tensors");
  const bool has_enc = m->cfg_.encoder.present && has_prefix(file, "encoder.");
  WeightReader read = [&file](const std::string& name, const Shape& shape) {
    const io::TensorInfo& ti = file.info(name);
    if (!(ti.shape == shape))
      throw FormatError("model file " + file.path() + ": tensor '" + name + "' has shape " + ti.shape.str() +
                        ", expected " + shape.str());
    std::vector<float> v = file.read_f32(name, shape);
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw FormatError("model file " + file.path() + ": tensor '" + name + "' contains NaN or infinity at element " +
                          std::to_string(i));
    return v;
  };
  m->build(read, has_text, has_dec, has_enc);
  return m;
}

std::shared_ptr<Model> Model::random(const ModelConfig& cfg_in, const std::vector<std::string>& vocabulary,
                                     uint64_t seed, std::shared_ptr<Backend> backend) {
  std::shared_ptr<Model> m(new Model());
  m->backend_ = std::move(backend);
  m->cfg_ = cfg_in;
  m->info_.trained = false;
  m->info_.description = "random weights (seed " + std::to_string(seed) + ")";
  if (m->cfg_.text_encoder.present) {
    if (vocabulary.size() < 2) throw Error("a random model with a text encoder needs a vocabulary");
    m->cfg_.text_encoder.vocab_size = int(vocabulary.size());
    m->tokenizer_ = Tokenizer(vocabulary, m->cfg_.text_len);
  }
  m->cfg_.validate("random model");
  WeightReader read = [seed](const std::string& name, const Shape& shape) { return random_tensor(seed, name, shape); };
  m->build(read, m->cfg_.text_encoder.present, m->cfg_.decoder.present, m->cfg_.encoder.present);
  return m;
}

void Model::write_random(const ModelConfig& cfg_in, const std::vector<std::string>& vocabulary, uint64_t seed, DType dtype,
                         const std::string& path, const std::string& description) {
  ModelConfig cfg = cfg_in;
  if (cfg.text_encoder.present) cfg.text_encoder.vocab_size = int(vocabulary.size());
  cfg.validate(path);
  // Enumerate parameters by building once on the CPU backend with a recording reader.
  struct Rec { std::string name; Shape shape; std::vector<uint16_t> half; std::vector<float> full; };
  std::vector<Rec> recs;
  WeightReader read = [&](const std::string& name, const Shape& shape) {
    Rec r;
    r.name = name;
    r.shape = shape;
    r.full = random_tensor(seed, name, shape);
    if (dtype == DType::BF16) {
      r.half.resize(r.full.size());
      for (size_t i = 0; i < r.full.size(); ++i) r.half[i] = f32_to_bf16(r.full[i]);
      std::vector<float> rounded(r.full.size());
      for (size_t i = 0; i < r.full.size(); ++i) rounded[i] = bf16_to_f32(r.half[i]);
      r.full.clear();
      recs.push_back(std::move(r));
      return rounded;
    }
    std::vector<float> copy = r.full;
    recs.push_back(std::move(r));
    return copy;
  };
  {
    std::shared_ptr<Model> m(new Model());
    m->backend_ = create_cpu_backend(1);
    m->cfg_ = cfg;
    m->build(read, cfg.text_encoder.present, cfg.decoder.present, cfg.encoder.present);
  }
  std::vector<io::TensorData> tensors;
  for (const Rec& r : recs) {
    io::TensorData t;
    t.name = r.name;
    t.shape = r.shape;
    t.dtype = dtype == DType::BF16 ? DType::BF16 : DType::F32;
    t.data = dtype == DType::BF16 ? static_cast<const void*>(r.half.data()) : static_cast<const void*>(r.full.data());
    tensors.push_back(t);
  }
  std::map<std::string, std::string> meta;
  meta["config"] = cfg.to_json();
  meta["format"] = "vmla-dit/1";
  meta["trained"] = "false";
  meta["description"] = description;
  if (cfg.text_encoder.present) meta["vocabulary"] = nlohmann::json(vocabulary).dump();
  io::write_safetensors(path, tensors, meta);
}

std::vector<std::string> load_vocabulary_file(const std::string& path) { return read_lines(path); }

static std::string exe_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  return std::filesystem::path(buf).parent_path().string();
}

std::vector<std::string> default_model_search_paths() {
  std::vector<std::string> p;
  if (const char* env = std::getenv("VMLA_MODEL"); env && *env) p.push_back(env);
  p.push_back(exe_dir() + "/../share/videomla/models/vmla-tiny.safetensors");
#ifdef VMLA_SOURCE_MODEL_DIR
  p.push_back(std::string(VMLA_SOURCE_MODEL_DIR) + "/vmla-tiny.safetensors");
#endif
#ifdef VMLA_BUILD_MODEL_DIR
  p.push_back(std::string(VMLA_BUILD_MODEL_DIR) + "/vmla-tiny.safetensors");
#endif
  return p;
}

std::string default_model_path() {
  auto paths = default_model_search_paths();
  for (const auto& p : paths)
    if (std::filesystem::exists(p)) return std::filesystem::weakly_canonical(p).string();
  std::string tried;
  for (const auto& p : paths) tried += "\n  " + p;
  throw IoError("no default model found; looked in:" + tried + "\nSet VMLA_MODEL or pass --model.");
}

std::string default_resource_dir() {
  std::vector<std::string> c = {exe_dir() + "/../share/videomla"};
#ifdef VMLA_SOURCE_RESOURCE_DIR
  c.push_back(VMLA_SOURCE_RESOURCE_DIR);
#endif
  for (const auto& d : c)
    if (std::filesystem::exists(d + "/configs")) return std::filesystem::weakly_canonical(d).string();
  throw IoError("resource folder (configs, vocabulary) not found next to the program or in the source tree");
}

}  // namespace vmla
