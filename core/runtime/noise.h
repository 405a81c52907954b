#pragma once
// Counter-based Gaussian noise (docs/MODEL.md section 5): the same (seed, chunk, step) gives the same
// values on every backend and platform.
#include <array>
#include <cstdint>
#include <vector>

namespace vmla {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);
// `n` standard normal values for element indices [0, n) of chunk `chunk` at sampler step `step`.
std::vector<float> chunk_noise(uint64_t seed, uint64_t chunk, uint32_t step, int64_t n);

}  // namespace vmla
