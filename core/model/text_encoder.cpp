#include "core/model/text_encoder.h"

#include <cmath>
#include <numeric>

namespace vmla {

TextEncoder::TextEncoder(const ModelConfig& cfg, WeightLoader& wl) : cfg_(cfg) {
  const TextEncoderConfig& t = cfg.text_encoder;
  const int64_t before = wl.params();
  token_embedding = wl.matrix("text_encoder.token_embedding.weight", Shape{t.vocab_size, t.dim});
  position_embedding = wl.matrix("text_encoder.position_embedding.weight", Shape{cfg.text_len, t.dim});
  for (int n = 0; n < t.layers; ++n) {
    const std::string p = "text_encoder.blocks." + std::to_string(n) + ".";
    Block b;
    b.norm1_w = wl.vector(p + "norm1.weight", Shape{t.dim});
    b.norm1_b = wl.vector(p + "norm1.bias", Shape{t.dim});
    b.qkv = wl.linear(p + "attn.qkv", t.dim, 3 * t.dim);
    b.o = wl.linear(p + "attn.o", t.dim, t.dim);
    b.norm2_w = wl.vector(p + "norm2.weight", Shape{t.dim});
    b.norm2_b = wl.vector(p + "norm2.bias", Shape{t.dim});
    b.ffn0 = wl.linear(p + "ffn.0", t.dim, t.ffn_dim);
    b.ffn2 = wl.linear(p + "ffn.2", t.ffn_dim, t.dim);
    blocks_.push_back(std::move(b));
  }
  norm_w = wl.vector("text_encoder.norm.weight", Shape{t.dim});
  norm_b = wl.vector("text_encoder.norm.bias", Shape{t.dim});
  params_ = wl.params() - before;
}

void TextEncoder::encode(Backend& be, const std::vector<int32_t>& ids, Tensor out, Arena& arena) const {
  const TextEncoderConfig& t = cfg_.text_encoder;
  const int64_t Ld = cfg_.text_len, Dt = t.dim;
  expect_shape(out, Shape{Ld, Dt}, "text encoder output");
  if (int64_t(ids.size()) > Ld) throw ShapeError("text encoder: more tokens than text_len");
  for (int32_t id : ids)
    if (id < 0 || id >= t.vocab_size) throw FormatError("text encoder: token id " + std::to_string(id) + " outside the vocabulary");
  be.fill(out, 0.f);
  const int64_t L = int64_t(ids.size());
  if (L == 0) return;
  auto mk = arena.mark();
  const DType act = be.act_dtype();
  Tensor x = arena.tensor(Shape{L, Dt}, DType::F32);
  Tensor tok = arena.tensor(Shape{L, Dt}, act);
  Tensor pos = arena.tensor(Shape{L, Dt}, act);
  std::vector<int32_t> pids(static_cast<size_t>(L));
  std::iota(pids.begin(), pids.end(), 0);
  be.embedding(token_embedding.t, ids.data(), L, tok);
  be.embedding(position_embedding.t, pids.data(), L, pos);
  be.axpby(1.f, tok, 1.f, pos, x);
  Tensor xn = arena.tensor(Shape{L, Dt}, act);
  Tensor q = arena.tensor(Shape{L, Dt}, act), k = arena.tensor(Shape{L, Dt}, act), v = arena.tensor(Shape{L, Dt}, act);
  Tensor a = arena.tensor(Shape{L, Dt}, act), y = arena.tensor(Shape{L, Dt}, act);
  Tensor f = arena.tensor(Shape{L, t.ffn_dim}, act);
  const int dh = int(Dt / t.heads);
  for (const Block& b : blocks_) {
    be.layer_norm(x, b.norm1_w.t, b.norm1_b.t, xn, t.eps);
    // attn.qkv rows are q | k | v: three row slices of one weight.
    Tensor wq = b.qkv.w.t.rows_slice(0, Dt), wk = b.qkv.w.t.rows_slice(Dt, Dt), wv = b.qkv.w.t.rows_slice(2 * Dt, Dt);
    Tensor bias = b.qkv.b.t.view(Shape{3, Dt});
    be.linear(xn, wq, bias.rows_slice(0, 1).view(Shape{Dt}), q);
    be.linear(xn, wk, bias.rows_slice(1, 1).view(Shape{Dt}), k);
    be.linear(xn, wv, bias.rows_slice(2, 1).view(Shape{Dt}), v);
    be.attention(q, k, v, a, t.heads, t.heads, dh, dh, 1.f / std::sqrt(float(dh)));
    apply(be, b.o, a, y);
    be.axpby(1.f, x, 1.f, y, x);
    be.layer_norm(x, b.norm2_w.t, b.norm2_b.t, xn, t.eps);
    apply(be, b.ffn0, xn, f, Activation::GeluTanh);
    apply(be, b.ffn2, f, y);
    be.axpby(1.f, x, 1.f, y, x);
  }
  be.layer_norm(x, norm_w.t, norm_b.t, xn, t.eps);
  be.copy_rows(xn, 0, out, 0, L);
  arena.release(mk);
}

}  // namespace vmla
