#pragma once
// Naive double-precision references for the backend ops, written from the comments in
// core/tensor/backend.h and docs/MODEL.md only (no code shared with any backend). Every array is a
// dense row-major std::vector<double>; shapes are passed as plain sizes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace vmla::naive {

using Vec = std::vector<double>;

enum class Act { None, GeluTanh, Silu, Relu };

inline double act(double x, Act a) {
  switch (a) {
    case Act::None: return x;
    case Act::GeluTanh: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case Act::Silu: return x / (1.0 + std::exp(-x));
    case Act::Relu: return x > 0 ? x : 0.0;
  }
  return x;
}

// Columns [col, col + n) of x [rows, cols], dense [rows, n].
template <class T>
std::vector<T> columns(const std::vector<T>& x, int64_t rows, int64_t cols, int64_t col, int64_t n) {
  std::vector<T> o(size_t(rows * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) o[size_t(r * n + c)] = x[size_t(r * cols + col + c)];
  return o;
}

// y [M, N] = act(x [M, K] @ w [N, K]^T + b)
inline Vec linear(const Vec& x, const Vec& w, const Vec* b, int64_t M, int64_t N, int64_t K, Act a) {
  Vec y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = b ? (*b)[size_t(n)] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += x[size_t(m * K + k)] * w[size_t(n * K + k)];
      y[size_t(m * N + n)] = act(s, a);
    }
  return y;
}

// In place on C (raw element arrays with row strides and batch strides).
inline void gemm_batched(const Vec& A, const Vec& B, Vec& C, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         int64_t lda, int64_t ldb, int64_t ldc, int64_t sA, int64_t sB, int64_t sC, int64_t batch,
                         double alpha, double beta) {
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) {
          double a = ta ? A[size_t(i * sA + k * lda + m)] : A[size_t(i * sA + m * lda + k)];
          double bb = tb ? B[size_t(i * sB + n * ldb + k)] : B[size_t(i * sB + k * ldb + n)];
          s += a * bb;
        }
        double& c = C[size_t(i * sC + m * ldc + n)];
        c = alpha * s + (beta == 0 ? 0.0 : beta * c);
      }
}

inline Vec layer_norm(const Vec& x, const Vec* w, const Vec* b, int64_t T, int64_t D, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) mu += x[size_t(t * D + i)];
    mu /= double(D);
    for (int64_t i = 0; i < D; ++i) var += (x[size_t(t * D + i)] - mu) * (x[size_t(t * D + i)] - mu);
    var /= double(D);
    for (int64_t i = 0; i < D; ++i) {
      double v = (x[size_t(t * D + i)] - mu) / std::sqrt(var + eps);
      if (w) v *= (*w)[size_t(i)];
      if (b) v += (*b)[size_t(i)];
      y[size_t(t * D + i)] = v;
    }
  }
  return y;
}

inline Vec rms_norm(const Vec& x, const Vec* w, int64_t T, int64_t D, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ms = 0;
    for (int64_t i = 0; i < D; ++i) ms += x[size_t(t * D + i)] * x[size_t(t * D + i)];
    ms /= double(D);
    for (int64_t i = 0; i < D; ++i) y[size_t(t * D + i)] = x[size_t(t * D + i)] / std::sqrt(ms + eps) * (w ? (*w)[size_t(i)] : 1.0);
  }
  return y;
}

// y = LN(x) * (1 + scale) + shift with the chunks of mod [F, K*D] of frame t / rows_per_frame.
inline Vec ln_modulate(const Vec& x, const Vec& mod, int64_t K, int shift_idx, int scale_idx, int64_t rpf,
                       int64_t T, int64_t D, double eps) {
  Vec n = layer_norm(x, nullptr, nullptr, T, D, eps);
  for (int64_t t = 0; t < T; ++t) {
    int64_t f = t / rpf;
    for (int64_t i = 0; i < D; ++i) {
      double shift = mod[size_t(f * K * D + shift_idx * D + i)], scale = mod[size_t(f * K * D + scale_idx * D + i)];
      n[size_t(t * D + i)] = n[size_t(t * D + i)] * (1.0 + scale) + shift;
    }
  }
  return n;
}

inline Vec gated_residual(const Vec& x, const Vec& y, const Vec* mod, int64_t K, int gate_idx, int64_t rpf,
                          int64_t T, int64_t D) {
  Vec o = x;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) {
      double g = mod && gate_idx >= 0 ? (*mod)[size_t((t / rpf) * K * D + gate_idx * D + i)] : 1.0;
      o[size_t(t * D + i)] += g * y[size_t(t * D + i)];
    }
  return o;
}

// out [F, KD] = table [KD] + src [F, S] with S = KD or S = D (repeated over the K chunks).
inline Vec add_modulation(const Vec& src, const Vec& table, int64_t F, int64_t KD, int64_t S) {
  Vec o(size_t(F * KD));
  for (int64_t f = 0; f < F; ++f)
    for (int64_t c = 0; c < KD; ++c) o[size_t(f * KD + c)] = table[size_t(c)] + src[size_t(f * S + (S == KD ? c : c % S))];
  return o;
}

// x [T, heads*hs]: pair j at (h*hs + off + 2j, +1) rotated by pos[t][axes[j]] * freqs[j].
inline Vec rope(const Vec& x, int64_t T, int heads, int hs, int off, const std::vector<float>& freqs,
                const std::vector<int32_t>& axes, const std::vector<int32_t>& pos) {
  Vec o = x;
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h)
      for (size_t j = 0; j < freqs.size(); ++j) {
        double ang = double(pos[size_t(t * 3 + axes[j])]) * double(freqs[j]);
        size_t i0 = size_t(t * heads * hs + h * hs + off + 2 * int64_t(j));
        double a = x[i0], b = x[i0 + 1];
        o[i0] = a * std::cos(ang) - b * std::sin(ang);
        o[i0 + 1] = a * std::sin(ang) + b * std::cos(ang);
      }
  return o;
}

// out [Tq, H*dv] = softmax(scale q_h k_h^T) v_h; k [Tk, Hk*dk], v [Tk, Hk*dv], Hk = H or 1.
inline Vec attention(const Vec& q, const Vec& k, const Vec& v, int64_t Tq, int64_t Tk, int H, int Hk, int dk, int dv,
                     double scale) {
  Vec o(size_t(Tq * H * dv), 0.0);
  Vec s(static_cast<size_t>(Tk));
  for (int h = 0; h < H; ++h) {
    int kh = Hk == 1 ? 0 : h;
    for (int64_t i = 0; i < Tq; ++i) {
      double m = -1e300;
      for (int64_t j = 0; j < Tk; ++j) {
        double d = 0;
        for (int e = 0; e < dk; ++e) d += q[size_t(i * H * dk + h * dk + e)] * k[size_t(j * Hk * dk + kh * dk + e)];
        s[size_t(j)] = d * scale;
        m = std::max(m, s[size_t(j)]);
      }
      double sum = 0;
      for (int64_t j = 0; j < Tk; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - m));
      for (int64_t j = 0; j < Tk; ++j)
        for (int e = 0; e < dv; ++e)
          o[size_t(i * H * dv + h * dv + e)] += s[size_t(j)] / sum * v[size_t(j * Hk * dv + kh * dv + e)];
    }
  }
  return o;
}

// out [T, H*(da+db)]: head h = [a_h ; b_h'] with h' = h (Hb = H) or 0 (Hb = 1).
inline Vec concat_heads(const Vec& a, int da, const Vec& b, int db, int H, int Hb, int64_t T) {
  Vec o(size_t(T * H * (da + db)));
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < da; ++i) o[size_t(t * H * (da + db) + h * (da + db) + i)] = a[size_t(t * H * da + h * da + i)];
      for (int i = 0; i < db; ++i)
        o[size_t(t * H * (da + db) + h * (da + db) + da + i)] = b[size_t(t * Hb * db + (Hb == 1 ? 0 : h) * db + i)];
    }
  return o;
}

// tokens [F*h*w, C*ph*pw], column c*ph*pw + p*pw + q, from x [F, C, H, W].
inline Vec patchify(const Vec& x, int64_t F, int64_t C, int64_t H, int64_t W, int ph, int pw) {
  int64_t h = H / ph, w = W / pw;
  Vec t(x.size());
  for (int64_t f = 0; f < F; ++f)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t yy = 0; yy < H; ++yy)
        for (int64_t xx = 0; xx < W; ++xx) {
          int64_t tok = (f * h + yy / ph) * w + xx / pw;
          int64_t col = c * ph * pw + (yy % ph) * pw + xx % pw;
          t[size_t(tok * C * ph * pw + col)] = x[size_t(((f * C + c) * H + yy) * W + xx)];
        }
  return t;
}

// x [F, C, H, W] from tokens [F*h*w, ph*pw*C], column (p*pw + q)*C + c.
inline Vec unpatchify(const Vec& t, int64_t F, int64_t C, int64_t H, int64_t W, int ph, int pw) {
  int64_t h = H / ph, w = W / pw;
  Vec x(t.size());
  for (int64_t f = 0; f < F; ++f)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t yy = 0; yy < H; ++yy)
        for (int64_t xx = 0; xx < W; ++xx) {
          int64_t tok = (f * h + yy / ph) * w + xx / pw;
          int64_t col = ((yy % ph) * pw + xx % pw) * C + c;
          x[size_t(((f * C + c) * H + yy) * W + xx)] = t[size_t(tok * C * ph * pw + col)];
        }
  return x;
}

// y [N, Co, Ho, Wo] = act(conv(x [N, Ci, H, W], w [Co, Ci, kh, kw]) + b), zero padding.
inline Vec conv2d(const Vec& x, const Vec& w, const Vec* b, int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co,
                  int64_t kh, int64_t kw, int stride, int pad, Act a) {
  int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
  Vec y(size_t(N * Co * Ho * Wo));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < Co; ++o)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          double s = b ? (*b)[size_t(o)] : 0.0;
          for (int64_t c = 0; c < Ci; ++c)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += x[size_t(((n * Ci + c) * H + iy) * W + ix)] * w[size_t(((o * Ci + c) * kh + ky) * kw + kx)];
              }
          y[size_t(((n * Co + o) * Ho + oy) * Wo + ox)] = act(s, a);
        }
  return y;
}

inline Vec upsample2x(const Vec& x, int64_t NC, int64_t H, int64_t W) {
  Vec y(size_t(NC * 4 * H * W));
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t yy = 0; yy < 2 * H; ++yy)
      for (int64_t xx = 0; xx < 2 * W; ++xx)
        y[size_t((p * 2 * H + yy) * 2 * W + xx)] = x[size_t((p * H + yy / 2) * W + xx / 2)];
  return y;
}

// [F, 3, H, W] in [0, 1] -> [F, H, W, 3] bytes, round half to even, clamped.
inline std::vector<uint8_t> to_rgb8(const std::vector<float>& x, int64_t F, int64_t H, int64_t W) {
  std::vector<uint8_t> o(size_t(F * H * W * 3));
  for (int64_t f = 0; f < F; ++f)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < H * W; ++i) {
        float v = x[size_t((f * 3 + c) * H * W + i)] * 255.0f;
        v = std::min(255.0f, std::max(0.0f, v));
        o[size_t((f * H * W + i) * 3 + c)] = uint8_t(std::nearbyint(v));
      }
  return o;
}

}  // namespace vmla::naive
