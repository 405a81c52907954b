#include "core/model/weights.h"

namespace vmla {

OwnedTensor WeightLoader::upload(const std::string& name, Shape shape, DType dt) {
  std::vector<float> host = read_(name, shape);
  if (int64_t(host.size()) != shape.numel())
    throw FormatError("tensor '" + name + "' has " + std::to_string(host.size()) + " values, expected " +
                      std::to_string(shape.numel()) + " for shape " + shape.str());
  OwnedTensor t = be_.alloc(shape, dt);
  be_.upload(host.data(), DType::F32, t.t);
  params_ += shape.numel();
  return t;
}

OwnedTensor WeightLoader::matrix(const std::string& name, Shape shape) { return upload(name, shape, be_.act_dtype()); }
OwnedTensor WeightLoader::vector(const std::string& name, Shape shape) { return upload(name, shape, DType::F32); }

Linear WeightLoader::linear(const std::string& prefix, int in, int out, bool bias) {
  Linear l;
  l.in = in;
  l.out = out;
  l.w = matrix(prefix + ".weight", Shape{out, in});
  if (bias) l.b = vector(prefix + ".bias", Shape{out});
  return l;
}

}  // namespace vmla
