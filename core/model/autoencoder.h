#pragma once
// The tiny causal autoencoder in the TAEHV style (docs/MODEL.md section 7). Decoding is streaming:
// every MemBlock carries its previous input frame across calls, so decoding a video chunk by chunk
// equals decoding it whole.
#include <vector>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace vmla {

struct MemBlock {
  Linear conv0, conv2, conv4;  // 3x3 convs stored as Linear-like (w [out, in, 3, 3], b)
  OwnedTensor skip;            // bias-free 1x1 when channels change
  int n_in = 0, n_out = 0;
};

// Streaming state: one frame of memory per MemBlock ([1, C, H, W]), zero before the first frame.
struct AutoencoderState {
  std::vector<OwnedTensor> memory;
  bool started = false;
  size_t bytes() const;
};

class VideoDecoder {
 public:
  VideoDecoder(const ModelConfig& cfg, WeightLoader& wl);
  AutoencoderState new_state(Backend& be) const;
  // z [F, C, h, w] (F32) -> rgb [F*temporal_stride, 3, H, W] (act dtype), advancing `state`.
  void decode(Backend& be, Tensor z, AutoencoderState& state, Tensor rgb, Arena& arena) const;
  int64_t params() const { return params_; }

 private:
  struct Stage {
    std::vector<MemBlock> blocks;
    OwnedTensor tgrow;     // [2C, C, 1, 1] or empty
    OwnedTensor conv_out;  // [C_next, C, 3, 3]
    int channels = 0, next = 0, h = 0, w = 0;  // resolution at the blocks
  };
  ModelConfig cfg_;
  Linear conv_in, conv_final;
  std::vector<Stage> stages_;
  int64_t params_ = 0;
};

class VideoEncoder {
 public:
  VideoEncoder(const ModelConfig& cfg, WeightLoader& wl);
  AutoencoderState new_state(Backend& be) const;
  // rgb [N, 3, H, W] (N a multiple of temporal_stride, values in [0, 1]) -> z [N/temporal_stride, C, h, w].
  void encode(Backend& be, Tensor rgb, AutoencoderState& state, Tensor z, Arena& arena) const;
  int64_t params() const { return params_; }

 private:
  struct Stage {
    OwnedTensor tpool;      // [C, 2C, 1, 1] or empty
    OwnedTensor conv_down;  // [C, C, 3, 3]
    std::vector<MemBlock> blocks;
    int h = 0, w = 0;  // resolution at the blocks
  };
  ModelConfig cfg_;
  Linear conv_in, conv_out;
  std::vector<Stage> stages_;
  int64_t params_ = 0;
};

}  // namespace vmla
