#include "core/model/autoencoder.h"

namespace vmla {

namespace {

Linear conv(WeightLoader& wl, const std::string& prefix, int cin, int cout, int k, bool bias) {
  Linear l;
  l.in = cin;
  l.out = cout;
  l.w = wl.matrix(prefix + ".weight", Shape{cout, cin, k, k});
  if (bias) l.b = wl.vector(prefix + ".bias", Shape{cout});
  return l;
}

void conv_apply(Backend& be, const Linear& l, Tensor x, Tensor y, int stride, Activation act) {
  const int pad = int(l.w.t.dim(2)) / 2;
  be.conv2d(x, l.w.t, l.has_bias() ? l.b.t : Tensor{}, y, stride, pad, act);
}

MemBlock mem_block(WeightLoader& wl, const std::string& p, int n_in, int n_out) {
  MemBlock b;
  b.n_in = n_in;
  b.n_out = n_out;
  b.conv0 = conv(wl, p + ".conv.0", 2 * n_in, n_out, 3, true);
  b.conv2 = conv(wl, p + ".conv.2", n_out, n_out, 3, true);
  b.conv4 = conv(wl, p + ".conv.4", n_out, n_out, 3, true);
  if (n_in != n_out) b.skip = wl.matrix(p + ".skip.weight", Shape{n_out, n_in, 1, 1});
  return b;
}

// x [N, Cin, H, W] -> out [N, Cout, H, W]; mem holds the input frame before x[0] and is advanced.
void mem_block_apply(Backend& be, const MemBlock& b, Tensor x, Tensor mem, Tensor out, Arena& arena) {
  const int64_t N = x.dim(0), H = x.dim(2), W = x.dim(3);
  const DType act = be.act_dtype();
  auto mk = arena.mark();
  Tensor past = arena.tensor(x.shape, act);
  be.copy(mem, past.dim0_slice(0, 1));
  if (N > 1) be.copy(x.dim0_slice(0, N - 1), past.dim0_slice(1, N - 1));
  be.copy(x.dim0_slice(N - 1, 1), mem);
  Tensor cat = arena.tensor(Shape{N, 2 * int64_t(b.n_in), H, W}, act);
  be.concat_channels(x, past, cat);
  Tensor t1 = arena.tensor(Shape{N, b.n_out, H, W}, act);
  Tensor t2 = arena.tensor(Shape{N, b.n_out, H, W}, act);
  conv_apply(be, b.conv0, cat, t1, 1, Activation::Relu);
  conv_apply(be, b.conv2, t1, t2, 1, Activation::Relu);
  conv_apply(be, b.conv4, t2, t1, 1, Activation::None);
  Tensor skip = x;
  if (!b.skip.t.empty()) {
    skip = arena.tensor(Shape{N, b.n_out, H, W}, act);
    be.conv2d(x, b.skip.t, Tensor{}, skip, 1, 0);
  }
  be.axpby(1.f, t1, 1.f, skip, out);
  be.activation(out, out, Activation::Relu);
  arena.release(mk);
}

}  // namespace

size_t AutoencoderState::bytes() const {
  size_t n = 0;
  for (const auto& m : memory) n += m.t.bytes();
  return n;
}

VideoDecoder::VideoDecoder(const ModelConfig& cfg, WeightLoader& wl) : cfg_(cfg) {
  const DecoderConfig& d = cfg.decoder;
  const int64_t before = wl.params();
  conv_in = conv(wl, "decoder.conv_in", cfg.latent_channels, d.channels[0], 3, true);
  int h = cfg.latent_h(), w = cfg.latent_w();
  for (int s = 0; s < 3; ++s) {
    Stage st;
    st.channels = d.channels[size_t(s)];
    st.next = d.channels[size_t(s + 1)];
    st.h = h;
    st.w = w;
    const std::string p = "decoder.stages." + std::to_string(s);
    for (int b = 0; b < d.blocks_per_stage; ++b)
      st.blocks.push_back(mem_block(wl, p + ".blocks." + std::to_string(b), st.channels, st.channels));
    if (d.space_upscale[size_t(s)]) {
      h *= 2;
      w *= 2;
    }
    if (d.time_upscale[size_t(s)]) st.tgrow = wl.matrix(p + ".tgrow.weight", Shape{2 * st.channels, st.channels, 1, 1});
    st.conv_out = wl.matrix(p + ".conv_out.weight", Shape{st.next, st.channels, 3, 3});
    stages_.push_back(std::move(st));
  }
  conv_final = conv(wl, "decoder.conv_final", d.channels[3], 3, 3, true);
  params_ = wl.params() - before;
}

AutoencoderState VideoDecoder::new_state(Backend& be) const {
  AutoencoderState s;
  for (const Stage& st : stages_)
    for (size_t b = 0; b < st.blocks.size(); ++b) {
      OwnedTensor m = be.alloc(Shape{1, st.channels, st.h, st.w}, be.act_dtype());
      be.fill(m.t, 0.f);
      s.memory.push_back(std::move(m));
    }
  return s;
}

void VideoDecoder::decode(Backend& be, Tensor z, AutoencoderState& state, Tensor rgb, Arena& arena) const {
  const int64_t F = z.dim(0);
  expect_shape(z, Shape{F, cfg_.latent_channels, cfg_.latent_h(), cfg_.latent_w()}, "decoder input latent");
  expect_shape(rgb, Shape{F * cfg_.temporal_stride, 3, cfg_.height, cfg_.width}, "decoder output frames");
  const DType act = be.act_dtype();
  auto mk = arena.mark();
  Tensor zc = arena.tensor(z.shape, act);
  be.tanh_clamp(z, zc, 3.f);
  int64_t N = F;
  Tensor x = arena.tensor(Shape{N, stages_[0].channels, cfg_.latent_h(), cfg_.latent_w()}, act);
  conv_apply(be, conv_in, zc, x, 1, Activation::Relu);
  size_t mem = 0;
  for (const Stage& st : stages_) {
    for (const MemBlock& b : st.blocks) {
      Tensor y = arena.tensor(x.shape, act);
      mem_block_apply(be, b, x, state.memory[mem++].t, y, arena);
      x = y;
    }
    int64_t H = x.dim(2), W = x.dim(3);
    if (cfg_.decoder.space_upscale[size_t(&st - stages_.data())]) {
      Tensor u = arena.tensor(Shape{N, st.channels, 2 * H, 2 * W}, act);
      be.upsample2x(x, u);
      x = u;
      H *= 2;
      W *= 2;
    }
    if (!st.tgrow.t.empty()) {
      Tensor g = arena.tensor(Shape{N, 2 * int64_t(st.channels), H, W}, act);
      be.conv2d(x, st.tgrow.t, Tensor{}, g, 1, 0);
      N *= 2;
      x = g.view(Shape{N, st.channels, H, W});  // channels [0,C) -> frame 2i, [C,2C) -> frame 2i+1
    }
    Tensor c = arena.tensor(Shape{N, st.next, H, W}, act);
    be.conv2d(x, st.conv_out.t, Tensor{}, c, 1, 1);
    x = c;
  }
  be.activation(x, x, Activation::Relu);
  conv_apply(be, conv_final, x, rgb, 1, Activation::None);
  arena.release(mk);
}

VideoEncoder::VideoEncoder(const ModelConfig& cfg, WeightLoader& wl) : cfg_(cfg) {
  const EncoderConfig& e = cfg.encoder;
  const int64_t before = wl.params();
  const int C = e.channels;
  conv_in = conv(wl, "encoder.conv_in", 3, C, 3, true);
  int h = cfg.height, w = cfg.width;
  for (int s = 0; s < 3; ++s) {
    Stage st;
    const std::string p = "encoder.stages." + std::to_string(s);
    if (e.time_downscale[size_t(s)]) st.tpool = wl.matrix(p + ".tpool.weight", Shape{C, 2 * C, 1, 1});
    st.conv_down = wl.matrix(p + ".conv_down.weight", Shape{C, C, 3, 3});
    h /= 2;
    w /= 2;
    st.h = h;
    st.w = w;
    for (int b = 0; b < e.blocks_per_stage; ++b) st.blocks.push_back(mem_block(wl, p + ".blocks." + std::to_string(b), C, C));
    stages_.push_back(std::move(st));
  }
  conv_out = conv(wl, "encoder.conv_out", C, cfg.latent_channels, 3, true);
  params_ = wl.params() - before;
}

AutoencoderState VideoEncoder::new_state(Backend& be) const {
  AutoencoderState s;
  for (const Stage& st : stages_)
    for (size_t b = 0; b < st.blocks.size(); ++b) {
      OwnedTensor m = be.alloc(Shape{1, cfg_.encoder.channels, st.h, st.w}, be.act_dtype());
      be.fill(m.t, 0.f);
      s.memory.push_back(std::move(m));
    }
  return s;
}

void VideoEncoder::encode(Backend& be, Tensor rgb, AutoencoderState& state, Tensor z, Arena& arena) const {
  int64_t N = rgb.dim(0);
  if (N % cfg_.temporal_stride) throw ShapeError("encoder: frame count must be a multiple of the temporal stride");
  expect_shape(rgb, Shape{N, 3, cfg_.height, cfg_.width}, "encoder input frames");
  expect_shape(z, Shape{N / cfg_.temporal_stride, cfg_.latent_channels, cfg_.latent_h(), cfg_.latent_w()}, "encoder output latent");
  const DType act = be.act_dtype();
  const int64_t C = cfg_.encoder.channels;
  auto mk = arena.mark();
  Tensor x = arena.tensor(Shape{N, C, cfg_.height, cfg_.width}, act);
  conv_apply(be, conv_in, rgb, x, 1, Activation::Relu);
  size_t mem = 0;
  for (const Stage& st : stages_) {
    int64_t H = x.dim(2), W = x.dim(3);
    if (!st.tpool.t.empty()) {
      N /= 2;
      Tensor p = arena.tensor(Shape{N, C, H, W}, act);
      be.conv2d(x.view(Shape{N, 2 * C, H, W}), st.tpool.t, Tensor{}, p, 1, 0);
      x = p;
    }
    Tensor d = arena.tensor(Shape{N, C, st.h, st.w}, act);
    be.conv2d(x, st.conv_down.t, Tensor{}, d, 2, 1);
    x = d;
    for (const MemBlock& b : st.blocks) {
      Tensor y = arena.tensor(x.shape, act);
      mem_block_apply(be, b, x, state.memory[mem++].t, y, arena);
      x = y;
    }
  }
  conv_apply(be, conv_out, x, z, 1, Activation::None);
  arena.release(mk);
}

}  // namespace vmla
