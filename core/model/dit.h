#pragma once
// The VMLA-DiT of docs/MODEL.md section 3: blocks named exactly as the checkpoint keys.
#include <memory>
#include <vector>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace vmla {

struct DitBlock {
  OwnedTensor modulation;  // [6*dim] F32
  // self-attention, MHA
  Linear q, k, v;
  OwnedTensor norm_q, norm_k;
  // self-attention, MLA
  Linear q_down, q_up, q_rope, kv_down, k_up, v_up, k_rope;
  OwnedTensor q_norm, kv_norm;
  // Fused projections (Dit::fused_projections()), built on the device from the checkpoint's tensors
  // above, which are then released: one GEMM instead of several over the same input.
  //   in_proj: the projections of the normalised block input. MLA [kv_down; k_rope; q_down]
  //            [d_c + rope + d_q, dim]; MHA [q; k; v] [3*dim, dim] with the biases concatenated.
  //   q_proj:  MLA, the projections of c_q, rows per head [q_up_h; q_rope_h] [H*(nope + rope), d_q],
  //            so that its output is the per-head query layout [q_nope_h | q_r_h] of attention.
  Linear in_proj, q_proj;
  Linear o;
  OwnedTensor norm3_w, norm3_b;
  Linear cq, ck, cv, co;  // cross_attn.{q,k,v,o}
  OwnedTensor cnorm_q, cnorm_k;
  Linear ffn0, ffn2;
};

// Cross-attention K/V of one prompt, per layer: k, v [text_len, dim].
struct CrossKV {
  std::vector<OwnedTensor> k, v;
};

// The cache as one pass sees it. Per layer, `a`/`b` are the cache tensors ([slots*tpf, width]; MLA:
// c_kv and k_r, MHA: k and v). `read_slots` lists the frame slots of the attention context in order
// (window-local positions 0..N-1); `write_slots[i]` is where chunk frame i goes (-1: not written).
struct CacheView {
  std::vector<Tensor> a, b;
  std::vector<int> read_slots;
  std::vector<int> write_slots;
};

struct PassArgs {
  Tensor x;                       // [F, C, H, W] F32 latent input
  std::vector<double> t;          // model time per latent frame (1000 * sigma)
  const CrossKV* context = nullptr;
  const CacheView* cache = nullptr;
  bool absorbed = true;           // MLA path
  Tensor v_out;                   // [F, C, H, W] F32; empty for a cache-only pass
  // Where the pass's ops may be recorded and replayed (CUDA graphs); null: issued op by op.
  PassGraphs* graphs = nullptr;
};

class Dit {
 public:
  // Fuses the self-attention projections that share an input (DitBlock::in_proj, q_proj) unless
  // the environment variable VMLA_FUSED_PROJECTIONS is 0 (read here, once per model; the separate
  // projections are kept for comparisons).
  Dit(const ModelConfig& cfg, Backend& be, WeightLoader& wl);
  const ModelConfig& config() const { return cfg_; }
  int64_t params() const { return params_; }
  bool fused_projections() const { return fused_; }

  // text [text_len, text_dim] -> per-layer cross-attention K/V (computed once per prompt).
  CrossKV cross_kv(Backend& be, Tensor text, Arena& arena) const;
  // One pass over a chunk. Reads the cache's context; writes the chunk's entries where write_slots
  // says so (after the layer's attention has read the old entries). Uploads the timesteps' sinusoid
  // and the positions, then runs the ops through args.graphs when given, keyed by everything their
  // launches depend on.
  void forward(Backend& be, const PassArgs& args, Arena& arena) const;
  // FLOPs of one pass with `ctx_frames` context frames and `frames` chunk frames (for metrics).
  double pass_flops(int ctx_frames, int frames, bool absorbed) const;

 private:
  // The pass's ops after its uploads (sinus [F, freq_dim], pos_all [context + chunk tokens, 3]):
  // they only enqueue work, no host transfer or synchronisation.
  void run(Backend& be, const PassArgs& args, Tensor sinus, Tensor pos_all, Arena& arena) const;
  void self_attention(Backend& be, const DitBlock& blk, int layer, Tensor xn, Tensor out, const PassArgs& args,
                      Tensor pos_all, int64_t T, Arena& arena) const;

  ModelConfig cfg_;
  Linear patch_embedding, text0, text2, time0, time2, time_proj, head;
  OwnedTensor head_modulation;  // [2*dim] F32
  std::vector<DitBlock> blocks_;
  OwnedTensor dense_freqs_, dense_axes_, mla_freqs_, mla_axes_;
  OwnedTensor rope_eye_;  // [rope_dim, rope_dim] identity (MLA): broadcasts the shared rope key
  RopeSpec dense_rope_, mla_rope_;
  int64_t params_ = 0;
  bool fused_ = true;
};

// Host helpers shared with tests.
std::vector<float> timestep_sinusoid(const std::vector<double>& t, int freq_dim);  // [F, freq_dim]
// Rope tables: dense (whole head) and MLA (highest frequencies per axis).
void rope_tables(const ModelConfig& cfg, bool mla, std::vector<float>* freqs, std::vector<int32_t>* axes);

}  // namespace vmla
