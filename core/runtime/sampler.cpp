#include "core/runtime/sampler.h"

namespace vmla {

double warp_sigma(double t, double shift) {
  const double u = t / 1000.0;
  return shift * u / (1.0 + (shift - 1.0) * u);
}

std::vector<double> chunk_sigmas(const ModelConfig& cfg, int steps) {
  std::vector<double> ts;
  if (steps > 0) {
    for (int i = 0; i < steps; ++i) ts.push_back(1000.0 * (1.0 - double(i) / steps));
  } else {
    ts = cfg.timesteps;
  }
  std::vector<double> s;
  for (double t : ts) s.push_back(warp_sigma(t, cfg.shift));
  return s;
}

}  // namespace vmla
