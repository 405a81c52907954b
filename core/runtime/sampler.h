#pragma once
// Flow-matching samplers (docs/MODEL.md section 5).
#include <vector>

#include "core/model/config.h"

namespace vmla {

// sigma' = s*u / (1 + (s-1)*u), u = t/1000.
double warp_sigma(double t, double shift);
// The sigmas of a chunk's denoising steps: the model's timestep list, or N evenly spaced steps
// t_i = 1000 * (1 - i/N) when steps > 0.
std::vector<double> chunk_sigmas(const ModelConfig& cfg, int steps);

}  // namespace vmla
