#include "core/model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/tensor/tensor.h"

namespace vmla {

using nlohmann::json;

int ModelConfig::cache_values_per_token() const {
  return attention == AttentionKind::MLA ? kv_latent + rope_dim : mha_cache_values_per_token();
}

namespace {

template <class T>
T get(const json& j, const char* key, const std::string& origin, const char* where = "") {
  if (!j.contains(key))
    throw FormatError(origin + ": model configuration has no field '" + std::string(where) + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw FormatError(origin + ": configuration field '" + std::string(where) + key + "' has the wrong type (" +
                      e.what() + ")");
  }
}

template <class T>
T get_or(const json& j, const char* key, T def, const std::string& origin) {
  if (!j.contains(key)) return def;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw FormatError(origin + ": configuration field '" + std::string(key) + "' has the wrong type (" + e.what() + ")");
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(origin + ": model configuration is not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw FormatError(origin + ": model configuration is not a JSON object");
  ModelConfig c;
  c.name = get_or<std::string>(j, "name", "", origin);
  c.dim = get<int>(j, "dim", origin);
  c.ffn_dim = get<int>(j, "ffn_dim", origin);
  c.layers = get<int>(j, "layers", origin);
  c.heads = get<int>(j, "heads", origin);
  c.head_dim = get<int>(j, "head_dim", origin);
  c.in_channels = get<int>(j, "in_channels", origin);
  c.out_channels = get<int>(j, "out_channels", origin);
  c.patch = get<std::array<int, 3>>(j, "patch", origin);
  c.freq_dim = get<int>(j, "freq_dim", origin);
  c.text_dim = get<int>(j, "text_dim", origin);
  c.text_len = get<int>(j, "text_len", origin);
  c.eps = get_or<float>(j, "eps", 1e-6f, origin);
  c.qk_norm = get_or<bool>(j, "qk_norm", true, origin);
  c.cross_attn_norm = get_or<bool>(j, "cross_attn_norm", true, origin);
  std::string att = get<std::string>(j, "attention", origin);
  if (att == "mha") c.attention = AttentionKind::MHA;
  else if (att == "mla") c.attention = AttentionKind::MLA;
  else throw FormatError(origin + ": configuration field 'attention' is '" + att + "' (expected mha or mla)");
  if (c.attention == AttentionKind::MLA) {
    const json& m = j.contains("mla") ? j["mla"] : json::object();
    c.kv_latent = get<int>(m, "kv_latent", origin, "mla.");
    c.q_latent = get<int>(m, "q_latent", origin, "mla.");
    c.nope_dim = get<int>(m, "nope_dim", origin, "mla.");
    c.rope_dim = get<int>(m, "rope_dim", origin, "mla.");
  }
  const json& r = j.contains("rope") ? j["rope"] : json::object();
  c.rope_theta = get_or<double>(r, "theta", 10000.0, origin);
  c.axis_dims = get<std::array<int, 3>>(r, "axis_dims", origin, "rope.");
  if (c.attention == AttentionKind::MLA) c.mla_pairs = get<std::array<int, 3>>(r, "mla_pairs", origin, "rope.");
  else c.mla_pairs = get_or<std::array<int, 3>>(r, "mla_pairs", {0, 0, 0}, origin);
  const json& v = j.contains("video") ? j["video"] : json::object();
  c.width = get<int>(v, "width", origin, "video.");
  c.height = get<int>(v, "height", origin, "video.");
  c.fps = get<int>(v, "fps", origin, "video.");
  c.temporal_stride = get<int>(v, "temporal_stride", origin, "video.");
  c.spatial_stride = get<int>(v, "spatial_stride", origin, "video.");
  c.latent_channels = get<int>(v, "latent_channels", origin, "video.");
  const json& s = j.contains("stream") ? j["stream"] : json::object();
  c.chunk_frames = get<int>(s, "chunk_frames", origin, "stream.");
  c.sink_frames = get<int>(s, "sink_frames", origin, "stream.");
  c.window_frames = get<int>(s, "window_frames", origin, "stream.");
  const json& sm = j.contains("sampler") ? j["sampler"] : json::object();
  std::string kind = get_or<std::string>(sm, "kind", "renoise", origin);
  if (kind == "renoise") c.sampler = SamplerKind::Renoise;
  else if (kind == "euler") c.sampler = SamplerKind::Euler;
  else throw FormatError(origin + ": configuration field 'sampler.kind' is '" + kind + "' (expected renoise or euler)");
  c.timesteps = get_or<std::vector<double>>(sm, "timesteps", {1000, 750, 500, 250}, origin);
  c.shift = get_or<double>(sm, "shift", 5.0, origin);
  c.context_t = get_or<double>(sm, "context_t", 0.0, origin);
  if (j.contains("text_encoder") && j["text_encoder"].is_object()) {
    const json& t = j["text_encoder"];
    c.text_encoder.present = true;
    c.text_encoder.vocab_size = get_or<int>(t, "vocab_size", 0, origin);
    c.text_encoder.dim = get<int>(t, "dim", origin, "text_encoder.");
    c.text_encoder.layers = get<int>(t, "layers", origin, "text_encoder.");
    c.text_encoder.heads = get<int>(t, "heads", origin, "text_encoder.");
    c.text_encoder.ffn_dim = get<int>(t, "ffn_dim", origin, "text_encoder.");
    c.text_encoder.eps = get_or<float>(t, "eps", 1e-5f, origin);
  }
  if (j.contains("decoder") && j["decoder"].is_object()) {
    const json& d = j["decoder"];
    c.decoder.present = true;
    c.decoder.channels = get<std::array<int, 4>>(d, "channels", origin, "decoder.");
    c.decoder.blocks_per_stage = get<int>(d, "blocks_per_stage", origin, "decoder.");
    c.decoder.time_upscale = get<std::array<bool, 3>>(d, "time_upscale", origin, "decoder.");
    c.decoder.space_upscale = get<std::array<bool, 3>>(d, "space_upscale", origin, "decoder.");
  }
  if (j.contains("encoder") && j["encoder"].is_object()) {
    const json& e = j["encoder"];
    c.encoder.present = true;
    c.encoder.channels = get<int>(e, "channels", origin, "encoder.");
    c.encoder.blocks_per_stage = get<int>(e, "blocks_per_stage", origin, "encoder.");
    c.encoder.time_downscale = get<std::array<bool, 3>>(e, "time_downscale", origin, "encoder.");
  }
  c.validate(origin);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError("cannot open model configuration " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json(ss.str(), path);
}

void ModelConfig::validate(const std::string& origin) const {
  auto bad = [&](const std::string& what) { throw FormatError(origin + ": invalid model configuration: " + what); };
  if (dim <= 0 || ffn_dim <= 0 || layers <= 0 || heads <= 0 || head_dim <= 0) bad("dim, ffn_dim, layers, heads and head_dim must be positive");
  if (heads * head_dim != dim) bad("heads * head_dim (" + std::to_string(heads * head_dim) + ") must equal dim (" + std::to_string(dim) + ")");
  if (patch[0] != 1) bad("only temporal patch size 1 is supported (patch[0] = " + std::to_string(patch[0]) + ")");
  if (patch[1] <= 0 || patch[2] <= 0) bad("patch sizes must be positive");
  if (freq_dim <= 0 || freq_dim % 2) bad("freq_dim must be positive and even");
  if (text_dim <= 0 || text_len <= 0) bad("text_dim and text_len must be positive");
  if (axis_dims[0] + axis_dims[1] + axis_dims[2] != head_dim) bad("rope.axis_dims must add up to head_dim");
  for (int a : axis_dims)
    if (a <= 0 || a % 2) bad("rope.axis_dims must be positive and even");
  if (attention == AttentionKind::MLA) {
    if (kv_latent <= 0 || q_latent <= 0 || nope_dim <= 0 || rope_dim <= 0) bad("mla sizes must be positive");
    if (rope_dim % 2) bad("mla.rope_dim must be even");
    if (mla_pairs[0] + mla_pairs[1] + mla_pairs[2] != rope_dim / 2) bad("rope.mla_pairs must add up to mla.rope_dim / 2");
    for (int a = 0; a < 3; ++a)
      if (mla_pairs[size_t(a)] < 0 || 2 * mla_pairs[size_t(a)] > axis_dims[size_t(a)]) bad("rope.mla_pairs exceeds the axis' dense pairs");
  }
  if (width <= 0 || height <= 0 || fps <= 0 || spatial_stride <= 0 || temporal_stride <= 0) bad("video sizes must be positive");
  if (width % (spatial_stride * patch[2]) || height % (spatial_stride * patch[1]))
    bad("video width/height must be multiples of spatial_stride * patch");
  if (latent_channels != in_channels || out_channels != in_channels) bad("in_channels, out_channels and latent_channels must agree");
  if (chunk_frames <= 0 || sink_frames < 0 || window_frames < 0) bad("stream sizes must be non-negative (chunk_frames positive)");
  if (timesteps.empty()) bad("sampler.timesteps is empty");
  if (text_encoder.present) {
    if (text_encoder.dim != text_dim) bad("text_encoder.dim must equal text_dim");
    if (text_encoder.heads <= 0 || text_encoder.dim % text_encoder.heads) bad("text_encoder.heads must divide its dim");
  }
  if (decoder.present) {
    int t = 1, s = 1;
    for (int i = 0; i < 3; ++i) {
      t *= decoder.time_upscale[size_t(i)] ? 2 : 1;
      s *= decoder.space_upscale[size_t(i)] ? 2 : 1;
    }
    if (t != temporal_stride || s != spatial_stride) bad("decoder up-scaling must match temporal_stride and spatial_stride");
  }
}

std::string ModelConfig::to_json() const {
  json j;
  j["name"] = name;
  j["dim"] = dim;
  j["ffn_dim"] = ffn_dim;
  j["layers"] = layers;
  j["heads"] = heads;
  j["head_dim"] = head_dim;
  j["in_channels"] = in_channels;
  j["out_channels"] = out_channels;
  j["patch"] = patch;
  j["freq_dim"] = freq_dim;
  j["text_dim"] = text_dim;
  j["text_len"] = text_len;
  j["eps"] = eps;
  j["qk_norm"] = qk_norm;
  j["cross_attn_norm"] = cross_attn_norm;
  j["attention"] = attention == AttentionKind::MLA ? "mla" : "mha";
  if (attention == AttentionKind::MLA)
    j["mla"] = {{"kv_latent", kv_latent}, {"q_latent", q_latent}, {"nope_dim", nope_dim}, {"rope_dim", rope_dim}};
  j["rope"] = {{"theta", rope_theta}, {"axis_dims", axis_dims}, {"mla_pairs", mla_pairs}};
  j["video"] = {{"width", width}, {"height", height}, {"fps", fps}, {"temporal_stride", temporal_stride},
                {"spatial_stride", spatial_stride}, {"latent_channels", latent_channels}};
  j["stream"] = {{"chunk_frames", chunk_frames}, {"sink_frames", sink_frames}, {"window_frames", window_frames}};
  j["sampler"] = {{"kind", sampler == SamplerKind::Renoise ? "renoise" : "euler"}, {"timesteps", timesteps},
                  {"shift", shift}, {"context_t", context_t}};
  if (text_encoder.present)
    j["text_encoder"] = {{"vocab_size", text_encoder.vocab_size}, {"dim", text_encoder.dim}, {"layers", text_encoder.layers},
                         {"heads", text_encoder.heads}, {"ffn_dim", text_encoder.ffn_dim}, {"eps", text_encoder.eps}};
  if (decoder.present)
    j["decoder"] = {{"channels", decoder.channels}, {"blocks_per_stage", decoder.blocks_per_stage},
                    {"time_upscale", decoder.time_upscale}, {"space_upscale", decoder.space_upscale}};
  if (encoder.present)
    j["encoder"] = {{"channels", encoder.channels}, {"blocks_per_stage", encoder.blocks_per_stage},
                    {"time_downscale", encoder.time_downscale}};
  return j.dump();
}

}  // namespace vmla
