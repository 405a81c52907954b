#pragma once
// Weight loading helpers shared by the DiT, the text encoder and the autoencoder.
#include <functional>
#include <string>
#include <vector>

#include "core/tensor/backend.h"

namespace vmla {

// Reads parameter `name` with the expected shape as float32 values (from a file, or random).
using WeightReader = std::function<std::vector<float>(const std::string& name, const Shape& shape)>;

struct Linear {
  OwnedTensor w;  // [out, in], act dtype
  OwnedTensor b;  // [out] F32, or empty
  int in = 0, out = 0;
  bool has_bias() const { return !b.t.empty(); }
};

class WeightLoader {
 public:
  WeightLoader(Backend& be, const WeightReader& read) : be_(be), read_(read) {}
  // Matrices and conv kernels go to the backend's activation dtype, vectors stay F32.
  OwnedTensor matrix(const std::string& name, Shape shape);
  OwnedTensor vector(const std::string& name, Shape shape);
  Linear linear(const std::string& prefix, int in, int out, bool bias = true);
  int64_t params() const { return params_; }
  void reset_count() { params_ = 0; }

 private:
  OwnedTensor upload(const std::string& name, Shape shape, DType dt);
  Backend& be_;
  const WeightReader& read_;
  int64_t params_ = 0;
};

// y = x @ W^T + b through the backend.
inline void apply(Backend& be, const Linear& l, Tensor x, Tensor y, Activation act = Activation::None) {
  be.linear(x, l.w.t, l.has_bias() ? l.b.t : Tensor{}, y, act);
}

}  // namespace vmla
