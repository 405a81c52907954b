#include "core/model/dit.h"

#include <cmath>
#include <cstdlib>
#include <string>

namespace vmla {

std::vector<float> timestep_sinusoid(const std::vector<double>& t, int freq_dim) {
  const int half = freq_dim / 2;
  std::vector<float> out(t.size() * size_t(freq_dim));
  for (size_t f = 0; f < t.size(); ++f) {
    for (int k = 0; k < half; ++k) {
      double w = std::pow(10000.0, -double(k) / double(half));
      double a = t[f] * w;
      out[f * size_t(freq_dim) + size_t(k)] = float(std::cos(a));
      out[f * size_t(freq_dim) + size_t(half + k)] = float(std::sin(a));
    }
  }
  return out;
}

void rope_tables(const ModelConfig& cfg, bool mla, std::vector<float>* freqs, std::vector<int32_t>* axes) {
  freqs->clear();
  axes->clear();
  for (int a = 0; a < 3; ++a) {
    const int dense = cfg.axis_dims[size_t(a)];
    const int n = mla ? cfg.mla_pairs[size_t(a)] : dense / 2;
    for (int j = 0; j < n; ++j) {
      freqs->push_back(float(std::pow(cfg.rope_theta, -2.0 * j / dense)));
      axes->push_back(a);
    }
  }
}

namespace {

// One Linear whose rows interleave those of `parts` in `groups` groups: group g holds rows
// [g*n_i, (g+1)*n_i) of each part i in turn, n_i = part i's outputs / groups (groups = 1: the parts
// stacked). The biases are interleaved alike (every part has one, or none does). Copied on the device.
Linear interleave_rows(Backend& be, const std::vector<const Linear*>& parts, int groups) {
  Linear f;
  f.in = parts.front()->in;
  const bool bias = parts.front()->has_bias();
  for (const Linear* p : parts) {
    if (p->in != f.in || p->out % groups != 0 || p->has_bias() != bias)
      throw ShapeError("fused projection: parts differ in inputs or bias, or do not split into " +
                       std::to_string(groups) + " groups");
    f.out += p->out;
  }
  f.w = be.alloc(Shape{f.out, f.in}, parts.front()->w.t.dtype);
  if (bias) f.b = be.alloc(Shape{f.out}, parts.front()->b.t.dtype);
  int64_t row = 0;
  for (int g = 0; g < groups; ++g)
    for (const Linear* p : parts) {
      const int64_t n = p->out / groups;
      be.copy_rows(p->w.t, g * n, f.w.t, row, n);
      if (bias) be.copy_rows(p->b.t.view(Shape{p->out, 1}), g * n, f.b.t.view(Shape{f.out, 1}), row, n);
      row += n;
    }
  return f;
}

// DitBlock::in_proj and q_proj from the checkpoint's projections, which are released.
void fuse_projections(const ModelConfig& cfg, Backend& be, DitBlock& b) {
  if (cfg.attention == AttentionKind::MLA) {
    b.in_proj = interleave_rows(be, {&b.kv_down, &b.k_rope, &b.q_down}, 1);
    b.q_proj = interleave_rows(be, {&b.q_up, &b.q_rope}, cfg.heads);
    for (Linear* l : {&b.kv_down, &b.k_rope, &b.q_down, &b.q_up, &b.q_rope}) *l = Linear{};
  } else {
    b.in_proj = interleave_rows(be, {&b.q, &b.k, &b.v}, 1);
    for (Linear* l : {&b.q, &b.k, &b.v}) *l = Linear{};
  }
}

}  // namespace

Dit::Dit(const ModelConfig& cfg, Backend& be, WeightLoader& wl) : cfg_(cfg) {
  if (const char* env = std::getenv("VMLA_FUSED_PROJECTIONS"); env && *env) fused_ = std::string(env) != "0";
  const int D = cfg.dim, C = cfg.in_channels, ph = cfg.patch[1], pw = cfg.patch[2];
  const int64_t before = wl.params();
  patch_embedding.in = C * ph * pw;
  patch_embedding.out = D;
  patch_embedding.w = wl.matrix("patch_embedding.weight", Shape{D, C, 1, ph, pw});
  patch_embedding.w.t = patch_embedding.w.t.view(Shape{D, C * ph * pw});
  patch_embedding.b = wl.vector("patch_embedding.bias", Shape{D});
  text0 = wl.linear("text_embedding.0", cfg.text_dim, D);
  text2 = wl.linear("text_embedding.2", D, D);
  time0 = wl.linear("time_embedding.0", cfg.freq_dim, D);
  time2 = wl.linear("time_embedding.2", D, D);
  time_proj = wl.linear("time_projection.1", D, 6 * D);
  const bool mla = cfg.attention == AttentionKind::MLA;
  const int H = cfg.heads, hd = cfg.head_dim;
  blocks_.resize(size_t(cfg.layers));
  for (int n = 0; n < cfg.layers; ++n) {
    DitBlock& b = blocks_[size_t(n)];
    const std::string p = "blocks." + std::to_string(n) + ".";
    b.modulation = wl.vector(p + "modulation", Shape{1, 6, D});
    b.modulation.t = b.modulation.t.view(Shape{6 * D});
    const std::string sa = p + "self_attn.";
    if (mla) {
      b.q_down = wl.linear(sa + "q_down", D, cfg.q_latent, false);
      b.q_norm = wl.vector(sa + "q_norm.weight", Shape{cfg.q_latent});
      b.q_up = wl.linear(sa + "q_up", cfg.q_latent, H * cfg.nope_dim, false);
      b.q_rope = wl.linear(sa + "q_rope", cfg.q_latent, H * cfg.rope_dim, false);
      b.kv_down = wl.linear(sa + "kv_down", D, cfg.kv_latent, false);
      b.kv_norm = wl.vector(sa + "kv_norm.weight", Shape{cfg.kv_latent});
      b.k_up = wl.linear(sa + "k_up", cfg.kv_latent, H * cfg.nope_dim, false);
      b.v_up = wl.linear(sa + "v_up", cfg.kv_latent, H * hd, false);
      b.k_rope = wl.linear(sa + "k_rope", D, cfg.rope_dim, false);
    } else {
      b.q = wl.linear(sa + "q", D, D);
      b.k = wl.linear(sa + "k", D, D);
      b.v = wl.linear(sa + "v", D, D);
      if (cfg.qk_norm) {
        b.norm_q = wl.vector(sa + "norm_q.weight", Shape{D});
        b.norm_k = wl.vector(sa + "norm_k.weight", Shape{D});
      }
    }
    b.o = wl.linear(sa + "o", D, D);
    if (cfg.cross_attn_norm) {
      b.norm3_w = wl.vector(p + "norm3.weight", Shape{D});
      b.norm3_b = wl.vector(p + "norm3.bias", Shape{D});
    }
    const std::string ca = p + "cross_attn.";
    b.cq = wl.linear(ca + "q", D, D);
    b.ck = wl.linear(ca + "k", D, D);
    b.cv = wl.linear(ca + "v", D, D);
    b.co = wl.linear(ca + "o", D, D);
    if (cfg.qk_norm) {
      b.cnorm_q = wl.vector(ca + "norm_q.weight", Shape{D});
      b.cnorm_k = wl.vector(ca + "norm_k.weight", Shape{D});
    }
    b.ffn0 = wl.linear(p + "ffn.0", D, cfg.ffn_dim);
    b.ffn2 = wl.linear(p + "ffn.2", cfg.ffn_dim, D);
    if (fused_) fuse_projections(cfg, be, b);
  }
  head_modulation = wl.vector("head.modulation", Shape{1, 2, D});
  head_modulation.t = head_modulation.t.view(Shape{2 * D});
  head = wl.linear("head.head", D, ph * pw * cfg.out_channels);
  params_ = wl.params() - before;

  // RoPE tables are constants of the configuration, uploaded once.
  auto upload_rope = [&](bool for_mla, OwnedTensor& fr, OwnedTensor& ax, RopeSpec& spec) {
    std::vector<float> f;
    std::vector<int32_t> a;
    rope_tables(cfg_, for_mla, &f, &a);
    fr = be.alloc(Shape{int64_t(f.size())}, DType::F32);
    ax = be.alloc(Shape{int64_t(a.size())}, DType::I32);
    be.upload(f.data(), DType::F32, fr.t);
    be.upload(a.data(), DType::I32, ax.t);
    spec.freqs = fr.t;
    spec.axes = ax.t;
    spec.npairs = int(f.size());
  };
  if (mla) {
    upload_rope(true, mla_freqs_, mla_axes_, mla_rope_);
    // The identity that copies the shared rope key into every head (expanded path).
    const int r = cfg.rope_dim;
    std::vector<float> eye(size_t(r) * r, 0.f);
    for (int i = 0; i < r; ++i) eye[size_t(i) * r + i] = 1.f;
    rope_eye_ = be.alloc(Shape{r, r}, be.act_dtype());
    be.upload(eye.data(), DType::F32, rope_eye_.t);
  } else {
    upload_rope(false, dense_freqs_, dense_axes_, dense_rope_);
  }
}

CrossKV Dit::cross_kv(Backend& be, Tensor text, Arena& arena) const {
  const int D = cfg_.dim;
  const int64_t L = cfg_.text_len;
  expect_shape(text, Shape{L, cfg_.text_dim}, "text encoder output");
  auto mk = arena.mark();
  Tensor h = arena.tensor(Shape{L, D}, be.act_dtype());
  Tensor ctx = arena.tensor(Shape{L, D}, be.act_dtype());
  apply(be, text0, text, h, Activation::GeluTanh);
  apply(be, text2, h, ctx);
  CrossKV kv;
  for (const DitBlock& b : blocks_) {
    OwnedTensor k = be.alloc(Shape{L, D}, be.act_dtype());
    OwnedTensor v = be.alloc(Shape{L, D}, be.act_dtype());
    apply(be, b.ck, ctx, h);
    if (cfg_.qk_norm) be.rms_norm(h, b.cnorm_k.t, k.t, cfg_.eps);
    else be.copy(h, k.t);
    apply(be, b.cv, ctx, v.t);
    kv.k.push_back(std::move(k));
    kv.v.push_back(std::move(v));
  }
  arena.release(mk);
  return kv;
}

namespace {

// A rotation applied while gathering: rope over `heads` heads of head_stride columns (all of them
// rotated), at the positions `pos` of the gathered rows.
struct Rotation {
  int heads = 1, head_stride = 0;
  const RopeSpec* spec = nullptr;
  Tensor pos;  // [rows of `all`, 3]
};

// The chunk's own rows of one cache tensor: all of `t` (col = kAllColumns), or its columns
// [col, col + cols), a column window of a fused projection's output.
struct Fresh {
  Tensor t;
  int64_t col = kAllColumns, cols = 0;
  int64_t rows() const { return t.rows(); }
};
Fresh whole(Tensor t) { return Fresh{t, kAllColumns, t.cols()}; }

// Copies the context frames (in attention order) and then the chunk's own rows into `all`, rotated
// on the way when `rot` is given (one pass over the keys instead of a copy and a rotation).
void gather(Backend& be, Tensor cache, const std::vector<int>& slots, int64_t tpf, const Fresh& fresh, Tensor all,
            const Rotation* rot) {
  auto put = [&](Tensor src, int64_t src_col, int64_t src_row, int64_t row, int64_t n) {
    if (!rot) {
      be.copy_rows(src, src_row, all, row, n, src_col);
      return;
    }
    be.rope_copy(src.rows_slice(src_row, n), all.rows_slice(row, n), rot->heads, rot->head_stride, 0, *rot->spec,
                 rot->pos.rows_slice(row, n), src_col);
  };
  int64_t row = 0;
  size_t i = 0;
  while (i < slots.size()) {
    size_t j = i + 1;
    while (j < slots.size() && slots[j] == slots[j - 1] + 1) ++j;  // merge consecutive slots
    put(cache, kAllColumns, int64_t(slots[i]) * tpf, row, int64_t(j - i) * tpf);
    row += int64_t(j - i) * tpf;
    i = j;
  }
  put(fresh.t, fresh.col, 0, row, fresh.rows());
}

void scatter(Backend& be, const Fresh& fresh, const std::vector<int>& slots, int64_t tpf, Tensor cache) {
  for (size_t f = 0; f < slots.size(); ++f)
    if (slots[f] >= 0) be.copy_rows(fresh.t, int64_t(f) * tpf, cache, int64_t(slots[f]) * tpf, tpf, fresh.col);
}

// Elements [begin, begin + n) of a tensor's memory as a flat [n, 1] view (a strided GEMM's operand
// that starts inside a row, a slice of a bias).
Tensor elements(Tensor t, int64_t begin, int64_t n) { return t.view(Shape{t.numel(), 1}).rows_slice(begin, n); }
// The same memory from element `offset` on.
Tensor element_offset(Tensor t, int64_t offset) { return elements(t, offset, t.numel() - offset); }

// Reads a layer's attention context (the cached frames in order, then the fresh rows) into
// a_all/b_all, the keys rotated on the way (rot_a or rot_b), then writes the fresh, unrotated rows
// into their slots: reading first lets a cache pass overwrite slots it also attends to. A write-only
// pass reads nothing and returns false.
bool exchange_cache(Backend& be, const CacheView& cv, int layer, int64_t tpf, const Fresh& a_new, const Fresh& b_new,
                    const Rotation* rot_a, const Rotation* rot_b, bool write_only, Arena& arena, Tensor* a_all,
                    Tensor* b_all) {
  if (!write_only) {
    const int64_t Tk = int64_t(cv.read_slots.size()) * tpf + a_new.rows();
    *a_all = arena.tensor(Shape{Tk, a_new.cols}, a_new.t.dtype);
    *b_all = arena.tensor(Shape{Tk, b_new.cols}, b_new.t.dtype);
    gather(be, cv.a[size_t(layer)], cv.read_slots, tpf, a_new, *a_all, rot_a);
    gather(be, cv.b[size_t(layer)], cv.read_slots, tpf, b_new, *b_all, rot_b);
  }
  scatter(be, a_new, cv.write_slots, tpf, cv.a[size_t(layer)]);
  scatter(be, b_new, cv.write_slots, tpf, cv.b[size_t(layer)]);
  return !write_only;
}

}  // namespace

void Dit::self_attention(Backend& be, const DitBlock& blk, int layer, Tensor xn, Tensor out, const PassArgs& args,
                         Tensor pos_all, int64_t T, Arena& arena) const {
  const CacheView& cv = *args.cache;
  const int64_t tpf = cfg_.tokens_per_frame();
  const int64_t N = int64_t(cv.read_slots.size());
  const int64_t Tk = N * tpf + T;
  const int H = cfg_.heads, hd = cfg_.head_dim, D = cfg_.dim;
  const DType act = be.act_dtype();
  Tensor pos_q = pos_all.rows_slice(N * tpf, T);
  const bool write_only = args.v_out.empty() && layer == cfg_.layers - 1;

  if (cfg_.attention == AttentionKind::MLA) {
    const int dc = cfg_.kv_latent, dq = cfg_.q_latent, nope = cfg_.nope_dim, rope = cfg_.rope_dim;
    // The chunk's cache entries c_kv and k_r. Fused: one GEMM gives lat = [kv_down | k_rope | q_down](xn)
    // (a write-only pass multiplies by the first dc + rope rows only); kv_norm reads its first dc
    // columns and k_r stays a column window of it.
    Tensor ckv = arena.tensor(Shape{T, dc}, act);
    Tensor lat;
    Fresh kr;
    if (fused_) {
      const int64_t width = write_only ? dc + rope : blk.in_proj.out;
      lat = arena.tensor(Shape{T, width}, act);
      be.linear(xn, blk.in_proj.w.t.rows_slice(0, width), Tensor{}, lat);
      be.rms_norm(lat, blk.kv_norm.t, ckv, cfg_.eps, 0);
      kr = Fresh{lat, dc, rope};
    } else {
      Tensor tmp_kv = arena.tensor(Shape{T, dc}, act);
      Tensor kr_new = arena.tensor(Shape{T, rope}, act);
      apply(be, blk.kv_down, xn, tmp_kv);
      be.rms_norm(tmp_kv, blk.kv_norm.t, ckv, cfg_.eps);
      apply(be, blk.k_rope, xn, kr_new);
      kr = whole(kr_new);
    }
    Tensor ckv_all, kr_all;
    const Rotation rot_kr{1, rope, &mla_rope_, pos_all};
    if (!exchange_cache(be, cv, layer, tpf, whole(ckv), kr, nullptr, &rot_kr, write_only, arena, &ckv_all, &kr_all))
      return;

    Tensor cq = arena.tensor(Shape{T, dq}, act);
    if (fused_) {
      be.rms_norm(lat, blk.q_norm.t, cq, cfg_.eps, dc + rope);
    } else {
      Tensor cq_tmp = arena.tensor(Shape{T, dq}, act);
      apply(be, blk.q_down, xn, cq_tmp);
      be.rms_norm(cq_tmp, blk.q_norm.t, cq, cfg_.eps);
    }
    // Queries. Fused: one GEMM writes q_full [T, H*(nope+rope)], per head [q_nope_h | q_r_h], and only
    // the rope columns of each head are rotated, in place. Separate: q_nope [T, H*nope], q_r [T, H*rope].
    const int64_t qs = nope + rope;  // head stride of q_full
    Tensor q_full, q_nope, q_r;
    if (fused_) {
      q_full = arena.tensor(Shape{T, int64_t(H) * qs}, act);
      apply(be, blk.q_proj, cq, q_full);
      be.rope(q_full, H, int(qs), nope, mla_rope_, pos_q);
    } else {
      q_nope = arena.tensor(Shape{T, int64_t(H) * nope}, act);
      q_r = arena.tensor(Shape{T, int64_t(H) * rope}, act);
      apply(be, blk.q_up, cq, q_nope);
      apply(be, blk.q_rope, cq, q_r);
      be.rope(q_r, H, rope, 0, mla_rope_, pos_q);
    }
    const float scale = 1.f / std::sqrt(float(nope + rope));
    Tensor heads_out = arena.tensor(Shape{T, int64_t(H) * hd}, act);
    if (args.absorbed) {
      // q_abs [T, H*(dc+rope)], per head [q_lat_h | q_r_h] with q_lat_h = q_nope_h @ W_uk_h
      // ([T, nope] x [nope, dc]); W_uk is [H*nope, dc].
      const int64_t as = dc + rope;  // head stride of q_abs
      Tensor q_abs = arena.tensor(Shape{T, int64_t(H) * as}, act);
      Backend::GemmBatched g;
      g.B = blk.k_up.w.t;
      g.M = T; g.N = dc; g.K = nope;
      g.ldb = dc; g.strideB = int64_t(nope) * dc;
      g.batch = H;
      if (fused_) {
        // Straight from the nope columns of q_full into the q_lat columns of q_abs; the rotated rope
        // columns follow by a product with the identity (exact: one term of 1 per output), the rows
        // (t, h) of both seen as [T*H, rope] with their head strides as row strides. No concatenation.
        g.A = q_full; g.lda = int64_t(H) * qs; g.strideA = qs;
        g.C = q_abs; g.ldc = int64_t(H) * as; g.strideC = as;
        be.gemm_batched(g);
        Backend::GemmBatched r;
        r.A = element_offset(q_full, nope); r.B = rope_eye_.t; r.C = element_offset(q_abs, dc);
        r.M = T * H; r.N = rope; r.K = rope;
        r.lda = qs; r.ldb = rope; r.ldc = as;
        be.gemm_batched(r);
      } else {
        Tensor q_lat = arena.tensor(Shape{T, int64_t(H) * dc}, act);
        g.A = q_nope; g.lda = int64_t(H) * nope; g.strideA = nope;
        g.C = q_lat; g.ldc = int64_t(H) * dc; g.strideC = dc;
        be.gemm_batched(g);
        be.concat_heads(q_lat, dc, q_r, rope, H, q_abs);
      }
      Tensor k_abs = arena.tensor(Shape{Tk, dc + rope}, act);
      be.concat_heads(ckv_all, dc, kr_all, rope, 1, k_abs);
      Tensor o_lat = arena.tensor(Shape{T, int64_t(H) * dc}, act);
      be.attention(q_abs, k_abs, ckv_all, o_lat, H, 1, dc + rope, dc, scale);
      // out_h = o_lat_h @ W_uv_h^T  ([T, dc] x [dc, hd]); W_uv is [H*hd, dc].
      Backend::GemmBatched u;
      u.A = o_lat; u.B = blk.v_up.w.t; u.C = heads_out;
      u.transB = true;
      u.M = T; u.N = hd; u.K = dc;
      u.lda = int64_t(H) * dc; u.ldb = dc; u.ldc = int64_t(H) * hd;
      u.strideA = dc; u.strideB = int64_t(hd) * dc; u.strideC = hd;
      u.batch = H;
      be.gemm_batched(u);
    } else {
      // Keys straight into the attention layout [Tk, H, nope | rope], with no concatenation pass
      // over the context: per head, the up-projection writes the nope columns (W_uk rows
      // h*nope.., one strided batched GEMM) and the shared rotated rope key is copied into the
      // rope columns by a batched product with the identity (exact: one term of 1 per output).
      const int64_t kw = int64_t(H) * qs;
      Tensor k_full = arena.tensor(Shape{Tk, kw}, act);
      Backend::GemmBatched kn;
      kn.A = ckv_all; kn.B = blk.k_up.w.t; kn.C = k_full;
      kn.transB = true;
      kn.M = Tk; kn.N = nope; kn.K = dc;
      kn.lda = dc; kn.ldb = dc; kn.ldc = kw;
      kn.strideA = 0; kn.strideB = int64_t(nope) * dc; kn.strideC = qs;
      kn.batch = H;
      be.gemm_batched(kn);
      Backend::GemmBatched kb;
      kb.A = kr_all; kb.B = rope_eye_.t; kb.C = element_offset(k_full, nope);
      kb.M = Tk; kb.N = rope; kb.K = rope;
      kb.lda = rope; kb.ldb = rope; kb.ldc = kw;
      kb.strideA = 0; kb.strideB = 0; kb.strideC = qs;
      kb.batch = H;
      be.gemm_batched(kb);
      Tensor v_all = arena.tensor(Shape{Tk, int64_t(H) * hd}, act);
      apply(be, blk.v_up, ckv_all, v_all);
      if (!fused_) {
        q_full = arena.tensor(Shape{T, kw}, act);
        be.concat_heads(q_nope, nope, q_r, rope, H, q_full);
      }
      be.attention(q_full, k_full, v_all, heads_out, H, H, nope + rope, hd, scale);
    }
    apply(be, blk.o, heads_out, out);
    return;
  }

  // MHA (Wan-exact): the chunk's keys (normalised) and values, then, unless the pass only writes the
  // cache, the queries. Fused: one GEMM with the biases gives qkv = [q | k | v](xn) ([k | v] for a
  // write-only pass, from the weight's rows D..3D), read as column windows.
  Tensor qkv;
  Fresh k_new, v_new;
  if (fused_) {
    const int64_t first = write_only ? D : 0;  // first row of the fused weight used
    const int64_t width = 3 * int64_t(D) - first;
    qkv = arena.tensor(Shape{T, width}, act);
    be.linear(xn, blk.in_proj.w.t.rows_slice(first, width), elements(blk.in_proj.b.t, first, width), qkv);
    const int64_t k_col = D - first;
    if (cfg_.qk_norm) {
      Tensor k = arena.tensor(Shape{T, D}, act);
      be.rms_norm(qkv, blk.norm_k.t, k, cfg_.eps, k_col);
      k_new = whole(k);
    } else {
      k_new = Fresh{qkv, k_col, D};
    }
    v_new = Fresh{qkv, k_col + D, D};
  } else {
    Tensor k_tmp = arena.tensor(Shape{T, D}, act);
    Tensor k = arena.tensor(Shape{T, D}, act);
    Tensor v = arena.tensor(Shape{T, D}, act);
    apply(be, blk.k, xn, k_tmp);
    if (cfg_.qk_norm) be.rms_norm(k_tmp, blk.norm_k.t, k, cfg_.eps);
    else be.copy(k_tmp, k);
    apply(be, blk.v, xn, v);
    k_new = whole(k);
    v_new = whole(v);
  }
  Tensor k_all, v_all;
  const Rotation rot_k{H, hd, &dense_rope_, pos_all};
  if (!exchange_cache(be, cv, layer, tpf, k_new, v_new, &rot_k, nullptr, write_only, arena, &k_all, &v_all)) return;
  // Queries: normalised (qk_norm) and rotated in one op, from the q columns of qkv when fused.
  Tensor q = arena.tensor(Shape{T, D}, act);
  if (fused_) {
    if (cfg_.qk_norm) be.rms_norm_rope(qkv, blk.norm_q.t, q, cfg_.eps, H, hd, dense_rope_, pos_q, 0);
    else be.rope_copy(qkv, q, H, hd, 0, dense_rope_, pos_q, 0);
  } else {
    Tensor q_tmp = arena.tensor(Shape{T, D}, act);
    apply(be, blk.q, xn, q_tmp);
    if (cfg_.qk_norm) {
      be.rms_norm_rope(q_tmp, blk.norm_q.t, q, cfg_.eps, H, hd, dense_rope_, pos_q);
    } else {
      be.copy(q_tmp, q);
      be.rope(q, H, hd, 0, dense_rope_, pos_q);
    }
  }
  Tensor heads_out = arena.tensor(Shape{T, D}, act);
  be.attention(q, k_all, v_all, heads_out, H, H, hd, hd, 1.f / std::sqrt(float(hd)));
  apply(be, blk.o, heads_out, out);
}

void Dit::forward(Backend& be, const PassArgs& args, Arena& arena) const {
  const ModelConfig& c = cfg_;
  const int64_t F = args.x.dim(0);
  const int64_t tpf = c.tokens_per_frame();
  const int64_t T = F * tpf;
  expect_shape(args.x, Shape{F, c.in_channels, c.latent_h(), c.latent_w()}, "DiT input latent");
  if (int64_t(args.t.size()) != F) throw ShapeError("DiT pass: one timestep per latent frame required");
  if (!args.cache || !args.context) throw Error("DiT pass: cache view and prompt context are required");
  const CacheView& cv = *args.cache;
  if (!cv.write_slots.empty() && int64_t(cv.write_slots.size()) != F)
    throw ShapeError("DiT pass: write_slots must name one slot per chunk frame");
  ArenaScope scope(arena);

  // The host-side inputs of the pass go to device memory first, at addresses fixed by the arena's
  // state, so that the ops after them read everything that changes from one pass to the next (the
  // timesteps) from device memory and can be recorded and replayed (Backend::PassGraphs).
  std::vector<float> sin_host = timestep_sinusoid(args.t, c.freq_dim);
  Tensor sinus = arena.tensor(Shape{F, c.freq_dim}, DType::F32);
  be.upload(sin_host.data(), DType::F32, sinus);
  // Window-local positions: context frames 0..N-1, then the chunk.
  const int64_t N = int64_t(cv.read_slots.size());
  const int64_t Tk = N * tpf + T;
  std::vector<int32_t> pos_host(size_t(Tk) * 3);
  for (int64_t r = 0; r < Tk; ++r) {
    int64_t frame = r / tpf, in = r % tpf;
    pos_host[size_t(r) * 3 + 0] = int32_t(frame);
    pos_host[size_t(r) * 3 + 1] = int32_t(in / c.tokens_w());
    pos_host[size_t(r) * 3 + 2] = int32_t(in % c.tokens_w());
  }
  Tensor pos_all = arena.tensor(Shape{Tk, 3}, DType::I32);
  be.upload(pos_host.data(), DType::I32, pos_all);

  auto body = [&] {
    ArenaScope ops(arena);
    run(be, args, sinus, pos_all, arena);
  };
  if (!args.graphs) {
    body();
    return;
  }
  // What the ops' launches depend on besides the model's own tensors. Layout: the sequence and shapes
  // (frames, MLA path, cache pass or not, the read and write slots, which decide the gather and
  // scatter copies) and the arena's position, which fixes every scratch address (the uploads above
  // included). Addresses: the caller's tensors (latent, velocity, the prompt's K/V, the cache).
  PassKey key;
  auto word = [](std::vector<uint64_t>& k, auto v) { k.push_back(uint64_t(v)); };
  auto addr = [](std::vector<uint64_t>& k, const void* p) { k.push_back(uint64_t(reinterpret_cast<uintptr_t>(p))); };
  std::vector<uint64_t>& lay = key.layout;
  addr(lay, this);
  word(lay, F);
  word(lay, args.absorbed);
  word(lay, args.v_out.empty());
  const Arena::Mark am = arena.mark();
  word(lay, am.cur);
  word(lay, am.used);
  addr(lay, sinus.data);
  addr(lay, pos_all.data);
  word(lay, cv.read_slots.size());
  for (int sl : cv.read_slots) word(lay, int64_t(sl));
  word(lay, cv.write_slots.size());
  for (int sl : cv.write_slots) word(lay, int64_t(sl));
  std::vector<uint64_t>& at = key.addresses;
  addr(at, args.x.data);
  addr(at, args.v_out.data);
  for (size_t n = 0; n < args.context->k.size(); ++n) {
    addr(at, args.context->k[n].t.data);
    addr(at, args.context->v[n].t.data);
  }
  for (size_t n = 0; n < cv.a.size(); ++n) {
    addr(at, cv.a[n].data);
    addr(at, cv.b[n].data);
  }
  args.graphs->run(key, body);
}

void Dit::run(Backend& be, const PassArgs& args, Tensor sinus, Tensor pos_all, Arena& arena) const {
  const ModelConfig& c = cfg_;
  const int D = c.dim, ph = c.patch[1], pw = c.patch[2];
  const int64_t F = args.x.dim(0);
  const int64_t tpf = c.tokens_per_frame();
  const int64_t T = F * tpf;
  const DType act = be.act_dtype();

  Tensor tokens = arena.tensor(Shape{T, int64_t(c.in_channels) * ph * pw}, act);
  be.patchify(args.x, ph, pw, tokens);
  Tensor h = arena.tensor(Shape{T, D}, DType::F32);  // residual stream in fp32
  apply(be, patch_embedding, tokens, h);

  Tensor e_hidden = arena.tensor(Shape{F, D}, DType::F32);
  Tensor e = arena.tensor(Shape{F, D}, DType::F32);
  Tensor e_silu = arena.tensor(Shape{F, D}, DType::F32);
  Tensor e0 = arena.tensor(Shape{F, 6 * D}, DType::F32);
  apply(be, time0, sinus, e_hidden, Activation::Silu);
  apply(be, time2, e_hidden, e);
  be.activation(e, e_silu, Activation::Silu);
  apply(be, time_proj, e_silu, e0);

  Tensor mod = arena.tensor(Shape{F, 6 * D}, DType::F32);
  Tensor xn = arena.tensor(Shape{T, D}, act);
  Tensor y = arena.tensor(Shape{T, D}, act);
  for (int n = 0; n < c.layers; ++n) {
    const DitBlock& b = blocks_[size_t(n)];
    auto lm = arena.mark();
    be.add_modulation(e0, b.modulation.t, mod);
    be.ln_modulate(h, mod, 0, 1, tpf, xn, c.eps);
    self_attention(be, b, n, xn, y, args, pos_all, T, arena);
    if (args.v_out.empty() && n == c.layers - 1) break;  // a cache pass needs nothing past the last write
    be.gated_residual(h, y, mod, 2, tpf);

    if (c.cross_attn_norm) be.layer_norm(h, b.norm3_w.t, b.norm3_b.t, xn, c.eps);
    else be.copy(h, xn);
    Tensor q_tmp = arena.tensor(Shape{T, D}, act);
    Tensor q = arena.tensor(Shape{T, D}, act);
    apply(be, b.cq, xn, q_tmp);
    if (c.qk_norm) be.rms_norm(q_tmp, b.cnorm_q.t, q, c.eps);
    else be.copy(q_tmp, q);
    be.attention(q, args.context->k[size_t(n)].t, args.context->v[size_t(n)].t, q_tmp, c.heads, c.heads, c.head_dim,
                 c.head_dim, 1.f / std::sqrt(float(c.head_dim)));
    apply(be, b.co, q_tmp, y);
    be.axpby(1.f, h, 1.f, y, h);  // cross-attention has no gate

    be.ln_modulate(h, mod, 3, 4, tpf, xn, c.eps);
    Tensor f1 = arena.tensor(Shape{T, c.ffn_dim}, act);
    apply(be, b.ffn0, xn, f1, Activation::GeluTanh);
    apply(be, b.ffn2, f1, y);
    be.gated_residual(h, y, mod, 5, tpf);
    arena.release(lm);
  }

  if (!args.v_out.empty()) {
    expect_shape(args.v_out, args.x.shape, "DiT output velocity");
    Tensor hm = arena.tensor(Shape{F, 2 * D}, DType::F32);
    be.add_modulation(e, head_modulation.t, hm);
    be.ln_modulate(h, hm, 0, 1, tpf, xn, c.eps);
    Tensor out_tok = arena.tensor(Shape{T, int64_t(ph) * pw * c.out_channels}, DType::F32);
    apply(be, head, xn, out_tok);
    be.unpatchify(out_tok, ph, pw, args.v_out);
  }
}

double Dit::pass_flops(int ctx_frames, int frames, bool absorbed) const {
  const ModelConfig& c = cfg_;
  const double T = double(frames) * c.tokens_per_frame();
  const double Tk = double(ctx_frames + frames) * c.tokens_per_frame();
  const double D = c.dim, H = c.heads, hd = c.head_dim;
  double per_layer = 0;
  if (c.attention == AttentionKind::MLA) {
    const double dc = c.kv_latent, dq = c.q_latent, nope = c.nope_dim, rope = c.rope_dim;
    per_layer += 2 * T * (D * dq + dq * H * (nope + rope) + D * dc + D * rope + D * D);
    if (absorbed) {
      per_layer += 2 * T * H * nope * dc + 2 * T * H * dc * hd;
      per_layer += 2 * T * Tk * H * ((dc + rope) + dc);
    } else {
      per_layer += 2 * Tk * dc * H * (nope + hd);
      per_layer += 2 * T * Tk * H * ((nope + rope) + hd);
    }
  } else {
    per_layer += 2 * T * 4 * D * D;
    per_layer += 2 * T * Tk * H * (2 * hd);
  }
  per_layer += 2 * T * 2 * D * D + 2 * T * c.text_len * H * 2 * hd;  // cross-attention (K/V cached)
  per_layer += 2 * T * 2 * D * c.ffn_dim;
  return per_layer * c.layers + 2 * T * D * (c.in_channels * c.patch[1] * c.patch[2] + c.out_channels * c.patch[1] * c.patch[2]);
}

}  // namespace vmla
