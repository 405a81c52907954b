#pragma once
// The tiny word-level transformer text encoder (docs/MODEL.md section 6).
#include <vector>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace vmla {

class TextEncoder {
 public:
  TextEncoder(const ModelConfig& cfg, WeightLoader& wl);
  // ids (at most text_len) -> out [text_len, text_dim]; rows past ids.size() are zero.
  void encode(Backend& be, const std::vector<int32_t>& ids, Tensor out, Arena& arena) const;
  int64_t params() const { return params_; }

 private:
  struct Block {
    OwnedTensor norm1_w, norm1_b, norm2_w, norm2_b;
    Linear qkv, o, ffn0, ffn2;
  };
  ModelConfig cfg_;
  OwnedTensor token_embedding, position_embedding, norm_w, norm_b;
  std::vector<Block> blocks_;
  int64_t params_ = 0;
};

}  // namespace vmla
