#pragma once
// ModelConfig: the JSON configuration of docs/MODEL.md section 2, read from a model file's metadata
// or from resources/configs/*.json.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace vmla {

enum class AttentionKind : uint8_t { MHA, MLA };
enum class SamplerKind : uint8_t { Renoise, Euler };

struct TextEncoderConfig {
  bool present = false;
  int vocab_size = 0, dim = 0, layers = 0, heads = 0, ffn_dim = 0;
  float eps = 1e-5f;
};

struct DecoderConfig {
  bool present = false;
  std::array<int, 4> channels{};
  int blocks_per_stage = 0;
  std::array<bool, 3> time_upscale{}, space_upscale{};
};

struct EncoderConfig {
  bool present = false;
  int channels = 0, blocks_per_stage = 0;
  std::array<bool, 3> time_downscale{};
};

struct ModelConfig {
  std::string name;
  int dim = 0, ffn_dim = 0, layers = 0, heads = 0, head_dim = 0;
  int in_channels = 16, out_channels = 16;
  std::array<int, 3> patch{1, 2, 2};
  int freq_dim = 256, text_dim = 0, text_len = 0;
  float eps = 1e-6f;
  bool qk_norm = true, cross_attn_norm = true;
  AttentionKind attention = AttentionKind::MHA;
  int kv_latent = 0, q_latent = 0, nope_dim = 0, rope_dim = 0;  // MLA
  double rope_theta = 10000.0;
  std::array<int, 3> axis_dims{}, mla_pairs{};
  int width = 0, height = 0, fps = 16, temporal_stride = 4, spatial_stride = 8, latent_channels = 16;
  int chunk_frames = 3, sink_frames = 1, window_frames = 6;
  SamplerKind sampler = SamplerKind::Renoise;
  std::vector<double> timesteps{1000, 750, 500, 250};
  double shift = 5.0, context_t = 0.0;
  TextEncoderConfig text_encoder;
  DecoderConfig decoder;
  EncoderConfig encoder;

  // Derived sizes.
  int latent_h() const { return height / spatial_stride; }
  int latent_w() const { return width / spatial_stride; }
  int tokens_h() const { return latent_h() / patch[1]; }
  int tokens_w() const { return latent_w() / patch[2]; }
  int tokens_per_frame() const { return tokens_h() * tokens_w(); }
  int frames_per_chunk() const { return chunk_frames * temporal_stride; }  // video frames
  // Values cached per token per layer (MLA: d_c + rope; MHA: K and V of every head).
  int cache_values_per_token() const;
  int mha_cache_values_per_token() const { return 2 * heads * head_dim; }

  static ModelConfig from_json(const std::string& json_text, const std::string& origin);  // throws FormatError
  static ModelConfig from_file(const std::string& path);
  std::string to_json() const;
  void validate(const std::string& origin) const;  // throws FormatError naming the bad field
};

}  // namespace vmla
