#pragma once
// Counter-based Gaussian noise (docs/MODEL.md section 5): the same (seed, chunk, step) gives the same
// values on every backend and platform.
#include <array>
#include <cstdint>
#include <future>
#include <vector>

namespace vmla {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);
// `n` standard normal values for element indices [0, n) of chunk `chunk` at sampler step `step`.
std::vector<float> chunk_noise(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n);

// The sampler's noise, computed one request ahead on a worker thread. At Wan latent sizes
// chunk_noise takes milliseconds of host time, which would otherwise sit between two GPU chunks
// with the card idle. The values are counter-based, so computing them early or on another thread
// changes none of them; a request that was not prefetched (rewind, a new seed) is computed on the
// spot and the stale prefetch is dropped. With `enabled` false every request is computed on the spot.
class NoiseAhead {
 public:
  explicit NoiseAhead(bool enabled = true) : enabled_(enabled) {}
  ~NoiseAhead();
  NoiseAhead(const NoiseAhead&) = delete;
  NoiseAhead& operator=(const NoiseAhead&) = delete;

  // chunk_noise(seed, chunk, step, n), from the prefetch when it matches.
  std::vector<float> take(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n);
  // Starts computing chunk_noise(seed, chunk, step, n) in the background (no-op when disabled).
  void prefetch(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n);
  // Draws served from a prefetch / computed on the spot, since construction.
  struct Counts {
    int64_t prefetched = 0, on_the_spot = 0;
  };
  Counts counts() const { return counts_; }

 private:
  struct Key {
    uint64_t seed = 0, chunk = 0;
    uint32_t step = 0;
    int64_t n = -1;
    bool operator==(const Key& o) const { return seed == o.seed && chunk == o.chunk && step == o.step && n == o.n; }
  };
  void drop();

  bool enabled_;
  Key key_;
  std::future<std::vector<float>> pending_;
  Counts counts_;
};

}  // namespace vmla
