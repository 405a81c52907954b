// videomla info, init, convert.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/io/name_map.h"
#include "core/io/safetensors.h"
#include "core/model/model.h"

namespace vmla::cli {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

namespace {

std::string human_count(double n) {
  char buf[32];
  if (n >= 1e9) std::snprintf(buf, sizeof buf, "%.3f B", n / 1e9);
  else if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof buf, "%.1f K", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

// Resolves a configuration name (tiny, wan1.3b-mla, ...) or a path to a JSON file.
}  // namespace

ModelConfig config_by_name(const std::string& name) {
  if (std::filesystem::exists(name)) return ModelConfig::from_file(name);
  const std::string p = default_resource_dir() + "/configs/" + name + ".json";
  if (!std::filesystem::exists(p))
    throw UsageError("unknown configuration '" + name + "' (expected tiny, tiny-mha, wan1.3b-mha, wan1.3b-mla or a .json file)");
  return ModelConfig::from_file(p);
}

namespace {

void print_config(const ModelConfig& c) {
  const bool mla = c.attention == AttentionKind::MLA;
  std::printf("configuration     %s\n", c.name.c_str());
  std::printf("  DiT             dim %d, ffn %d, %d layers, %d heads x %d\n", c.dim, c.ffn_dim, c.layers, c.heads, c.head_dim);
  if (mla)
    std::printf("  attention       MLA: d_c %d, d_q %d, %d + %d per head (nope + rope), rope pairs t/h/w %d/%d/%d\n",
                c.kv_latent, c.q_latent, c.nope_dim, c.rope_dim, c.mla_pairs[0], c.mla_pairs[1], c.mla_pairs[2]);
  else
    std::printf("  attention       MHA (Wan-exact), rope axes %d/%d/%d\n", c.axis_dims[0], c.axis_dims[1], c.axis_dims[2]);
  std::printf("  video           %dx%d at %d fps; latent %dx%dx%d (stride %d time, %d space); %d tokens per latent frame\n",
              c.width, c.height, c.fps, c.latent_channels, c.latent_h(), c.latent_w(), c.temporal_stride,
              c.spatial_stride, c.tokens_per_frame());
  std::printf("  stream          chunk %d latent frames (%d video frames, %.2f s), sink %d, window %d\n", c.chunk_frames,
              c.frames_per_chunk(), double(c.frames_per_chunk()) / c.fps, c.sink_frames, c.window_frames);
  std::string ts;
  for (double t : c.timesteps) ts += (ts.empty() ? "" : ", ") + std::to_string(int(t));
  std::printf("  sampler         %s [%s], shift %.2f\n", c.sampler == SamplerKind::Renoise ? "renoise" : "euler",
              ts.c_str(), c.shift);
  std::printf("  text            %s, text_len %d, text_dim %d\n",
              c.text_encoder.present ? "tiny word-level encoder" : "external (none in file)", c.text_len, c.text_dim);
  const double per_tok = c.cache_values_per_token(), mha_tok = c.mha_cache_values_per_token();
  std::printf("cache per token   %d values per layer (MHA layout: %d) = %.1f%% less, %.2fx smaller\n",
              c.cache_values_per_token(), c.mha_cache_values_per_token(), 100.0 * (1 - per_tok / mha_tok), mha_tok / per_tok);
  const double frame_bf16 = per_tok * c.layers * c.tokens_per_frame() * 2;
  const double frame_mha = mha_tok * c.layers * c.tokens_per_frame() * 2;
  const int win = c.sink_frames + c.window_frames;
  std::printf("cache per frame   %s bf16 (MHA %s); sink+window of %d frames: %s (MHA %s)\n", human_bytes(frame_bf16).c_str(),
              human_bytes(frame_mha).c_str(), win, human_bytes(frame_bf16 * win).c_str(), human_bytes(frame_mha * win).c_str());
}

const std::vector<OptionSpec> kInfoOptions = {
    {"config", 'c', true, "NAME", "describe a configuration (tiny, wan1.3b-mla, ... or a .json) instead of a file"},
    {"tensors", 't', false, "", "list every tensor with dtype and shape"},
    {"json", 0, false, "", "print the configuration as JSON"},
    {"help", 'h', false, "", "show this help"},
};

}  // namespace

int cmd_info(const std::vector<std::string>& argv) {
  Args a(kInfoOptions, argv);
  if (a.flag("help")) {
    std::printf("usage: videomla info [MODEL.safetensors | --config NAME] [--tensors]\n"
                "Without arguments, describes the embedded default model.\n\n%s",
                Args::help_text(kInfoOptions).c_str());
    return 0;
  }
  if (auto c = a.get("config")) {
    ModelConfig cfg = config_by_name(*c);
    if (a.flag("json")) std::printf("%s\n", cfg.to_json().c_str());
    else print_config(cfg);
    return 0;
  }
  const std::string path = a.positional().empty() ? default_model_path() : a.positional()[0];
  io::SafeTensors f = io::SafeTensors::open(path);
  io::NameMap map = io::NameMap::detect(f.names());
  f.apply_name_map(map);
  auto cfg_text = f.meta("config");
  std::printf("file              %s (%s, %zu tensors)\n", path.c_str(), human_bytes(double(f.file_size())).c_str(),
              f.tensor_count());
  std::printf("naming            %s\n", map.convention().c_str());
  if (!cfg_text) {
    std::printf("no VideoMLA configuration in the metadata: convert it with `videomla convert`\n");
  } else {
    ModelConfig cfg = ModelConfig::from_json(*cfg_text, path);
    const std::string trained = f.meta("trained").value_or("false");
    std::printf("format            %s, %s\n", f.meta("format").value_or("?").c_str(),
                trained == "true" ? "trained" : "UNTRAINED (random weights)");
    if (auto d = f.meta("description")) std::printf("description       %s\n", d->c_str());
    if (a.flag("json")) std::printf("%s\n", cfg.to_json().c_str());
    else print_config(cfg);
    if (auto v = f.meta("vocabulary")) {
      auto j = nlohmann::json::parse(*v, nullptr, false);
      if (j.is_array()) std::printf("vocabulary        %zu words\n", j.size());
    }
  }
  double total = 0;
  std::map<std::string, double> groups, stored;  // parameters per group, per storage dtype
  for (const auto& n : f.names()) {
    if (f.is_quant_scale(n)) continue;  // part of its int8 tensor
    const io::TensorInfo& ti = f.info(n);
    const double c = double(ti.shape.numel());
    total += c;
    std::string g = n.substr(0, n.find('.'));
    if (g == "blocks" || g == "patch_embedding" || g == "text_embedding" || g == "time_embedding" ||
        g == "time_projection" || g == "head")
      g = "dit";
    groups[g] += c;
    stored[std::string(dtype_name(ti.dtype))] += c;
  }
  std::printf("parameters        %s total", human_count(total).c_str());
  for (const auto& [g, c] : groups) std::printf(", %s %s", g.c_str(), human_count(c).c_str());
  std::printf("\nstored as        ");
  for (auto it = stored.begin(); it != stored.end(); ++it)
    std::printf("%s%s %s%s", it == stored.begin() ? " " : ", ", human_count(it->second).c_str(), it->first.c_str(),
                it->first == "I8" ? " (with group scales)" : "");
  std::printf("\n");
  if (a.flag("tensors"))
    for (const auto& n : f.names()) {
      const auto& ti = f.info(n);
      std::printf("  %-60s %-5s %s\n", n.c_str(), std::string(dtype_name(ti.dtype)).c_str(), ti.shape.str().c_str());
    }
  return 0;
}

namespace {
const std::vector<OptionSpec> kInitOptions = {
    {"config", 'c', true, "NAME", "configuration name or .json (default tiny)"},
    {"seed", 0, true, "N", "weight seed (default 0)"},
    {"dtype", 0, true, "TYPE", "bf16 or f32 (default bf16)"},
    {"vocab", 0, true, "FILE", "vocabulary, one word per line (default resources/vocab/tiny-words.txt)"},
    {"output", 'o', true, "FILE", "output .safetensors (required)"},
    {"help", 'h', false, "", "show this help"},
};
const std::vector<OptionSpec> kConvertOptions = {
    {"config", 'c', true, "NAME", "configuration to embed when the source has none (name or .json)"},
    {"dtype", 0, true, "TYPE",
     "bf16, f16, f32, or int8 (the DiT blocks' linear weights int8 with group scales, the rest bf16; "
     "docs/MODEL.md) (default: keep each tensor's)"},
    {"output", 'o', true, "FILE", "output .safetensors (required)"},
    {"help", 'h', false, "", "show this help"},
};
}  // namespace

int cmd_init(const std::vector<std::string>& argv) {
  Args a(kInitOptions, argv);
  if (a.flag("help")) {
    std::printf("usage: videomla init -o model.safetensors [--config tiny] [--seed 0]\n"
                "Writes a random-weight model, labelled untrained in its metadata.\n\n%s",
                Args::help_text(kInitOptions).c_str());
    return 0;
  }
  auto out = a.get("output");
  if (!out) throw UsageError("--output is required");
  ModelConfig cfg = config_by_name(a.get_or("config", "tiny"));
  const std::string dt = a.get_or("dtype", "bf16");
  if (dt != "bf16" && dt != "f32") throw UsageError("--dtype must be bf16 or f32");
  std::vector<std::string> vocab;
  if (cfg.text_encoder.present)
    vocab = load_vocabulary_file(a.get_or("vocab", default_resource_dir() + "/vocab/tiny-words.txt"));
  const uint64_t seed = a.get_u64("seed", 0);
  std::error_code ec;
  if (auto parent = std::filesystem::path(*out).parent_path(); !parent.empty()) std::filesystem::create_directories(parent, ec);
  try {
    Model::write_random(cfg, vocab, seed, dt == "bf16" ? DType::BF16 : DType::F32, *out,
                        "UNTRAINED random-weight " + cfg.name + " (seed " + std::to_string(seed) +
                            "); replace with a trained model");
  } catch (const IoError& e) {
    throw OutputError(e.what());
  }
  std::printf("wrote %s (%s, untrained, seed %llu)\n", out->c_str(), cfg.name.c_str(), (unsigned long long)seed);
  return 0;
}

int cmd_convert(const std::vector<std::string>& argv) {
  Args a(kConvertOptions, argv);
  if (a.flag("help") || a.positional().size() != 1) {
    std::printf("usage: videomla convert SOURCE.safetensors -o OUT.safetensors [--config NAME] [--dtype bf16]\n"
                "Renames tensors to Wan-native names (diffusers, model./generator. prefixes), converts dtypes\n"
                "and embeds the configuration so the engine can load the file.\n\n%s",
                Args::help_text(kConvertOptions).c_str());
    return a.flag("help") ? 0 : 2;
  }
  auto out = a.get("output");
  if (!out) throw UsageError("--output is required");
  io::SafeTensors src = io::SafeTensors::open(a.positional()[0]);
  io::NameMap map = io::NameMap::detect(src.names());
  std::map<std::string, std::string> meta = src.metadata();
  if (auto c = a.get("config")) meta["config"] = config_by_name(*c).to_json();
  if (!meta.count("config")) throw UsageError("the source has no configuration: pass --config NAME");
  ModelConfig::from_json(meta["config"], a.positional()[0]);  // validates
  meta["format"] = "vmla-dit/1";
  if (!meta.count("trained")) meta["trained"] = "true";
  const std::string dt = a.get_or("dtype", "keep");
  if (dt != "keep" && dt != "bf16" && dt != "f16" && dt != "f32" && dt != "int8")
    throw UsageError("--dtype must be bf16, f16, f32 or int8");
  std::vector<std::vector<uint16_t>> half;
  std::vector<std::vector<float>> full;
  std::vector<std::vector<int8_t>> quant;
  std::vector<io::TensorData> tensors;
  const io::SafeTensors& file = src;
  size_t skipped = 0;
  for (const auto& n : file.names()) {
    const auto& ti = file.info(n);
    io::TensorData t;
    t.name = map.map(n);
    // Tensors the map leaves under a wrapper (e.g. the non-EMA generator next to generator_ema)
    // are not part of the model that was chosen.
    if (t.name.rfind("generator.", 0) == 0 || t.name.rfind("generator_ema.", 0) == 0 ||
        t.name.rfind("model.", 0) == 0 || t.name.rfind("module.", 0) == 0) {
      ++skipped;
      continue;
    }
    // Converting to a float dtype dequantizes int8 tensors; their scales are then not needed.
    if (dt != "keep" && file.is_quant_scale(n)) continue;
    t.shape = ti.shape;
    if (dt == "keep") {
      t.dtype = ti.dtype;
      t.data = file.data(n);
    } else {
      std::vector<float> v = file.read_f32(n);
      if (dt == "f32") {
        full.push_back(std::move(v));
        t.dtype = DType::F32;
        t.data = full.back().data();
      } else if (dt == "int8" && io::int8_candidate(t.name, t.shape)) {
        std::vector<int8_t> qv(v.size());
        std::vector<uint16_t> sv(v.size() / size_t(io::kInt8Group));
        io::quantize_int8_groups(v.data(), t.shape[0], t.shape[1], io::kInt8Group, qv.data(), sv.data());
        quant.push_back(std::move(qv));
        half.push_back(std::move(sv));
        t.dtype = DType::I8;
        t.data = quant.back().data();
        io::TensorData sc;
        sc.name = t.name + io::kQuantScaleSuffix;
        sc.dtype = DType::F16;
        sc.shape = Shape{t.shape[0], t.shape[1] / io::kInt8Group};
        sc.data = half.back().data();
        tensors.push_back(t);
        tensors.push_back(sc);
        continue;
      } else {
        std::vector<uint16_t> h(v.size());
        for (size_t i = 0; i < v.size(); ++i) h[i] = dt == "f16" ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
        half.push_back(std::move(h));
        t.dtype = dt == "f16" ? DType::F16 : DType::BF16;
        t.data = half.back().data();
      }
    }
    tensors.push_back(t);
  }
  try {
    io::write_safetensors(*out, tensors, meta);
  } catch (const IoError& e) {
    throw OutputError(e.what());
  }
  std::printf("wrote %s: %zu tensors (%s naming mapped to Wan-native)", out->c_str(), tensors.size(), map.convention().c_str());
  if (skipped) std::printf("; %zu tensors outside the chosen weights were left out", skipped);
  std::printf("\n");
  return 0;
}

}  // namespace vmla::cli
