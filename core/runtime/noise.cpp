#include "core/runtime/noise.h"

#include <cmath>

namespace vmla {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(M0) * c[0];
    const uint64_t p1 = uint64_t(M1) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1], uint32_t(p0)};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

std::vector<float> chunk_noise(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  const std::array<uint32_t, 2> key{uint32_t(seed), uint32_t(seed >> 32)};
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t q = 0; 2 * q < n; ++q) {
    auto r = philox4x32_10({uint32_t(uint64_t(q)), uint32_t(uint64_t(q) >> 32), uint32_t(chunk), step}, key);
    const double u1 = (double(r[0]) + 0.5) / 4294967296.0;
    const double u2 = (double(r[1]) + 0.5) / 4294967296.0;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    out[size_t(2 * q)] = float(radius * std::cos(two_pi * u2));
    if (2 * q + 1 < n) out[size_t(2 * q + 1)] = float(radius * std::sin(two_pi * u2));
  }
  return out;
}

NoiseAhead::~NoiseAhead() { drop(); }

void NoiseAhead::drop() {
  if (pending_.valid()) pending_.wait();  // the worker reads nothing of ours; wait so it never outlives us
  pending_ = {};
}

std::vector<float> NoiseAhead::take(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n) {
  const Key want{seed, chunk, step, n};
  if (pending_.valid() && key_ == want) {
    ++counts_.prefetched;
    return pending_.get();  // rethrows what the worker threw (bad_alloc)
  }
  drop();
  ++counts_.on_the_spot;
  return chunk_noise(seed, chunk, step, n);
}

void NoiseAhead::prefetch(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n) {
  if (!enabled_) return;
  const Key want{seed, chunk, step, n};
  if (pending_.valid() && key_ == want) return;
  drop();
  key_ = want;
  pending_ = std::async(std::launch::async, [=] { return chunk_noise(seed, chunk, step, n); });
}

}  // namespace vmla
