#include "core/tensor/backend.h"

#include <algorithm>
#include <string>

namespace vmla {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (be_ && p_) be_->free_bytes(p_, bytes_);
    be_ = o.be_;
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.be_ = nullptr;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

Buffer::~Buffer() {
  if (be_ && p_) be_->free_bytes(p_, bytes_);
}

Tensor Buffer::as(DType dt, Shape s) const {
  if (size_t(s.numel()) * dtype_size(dt) > bytes_)
    throw ShapeError("buffer of " + std::to_string(bytes_) + " bytes cannot hold " + s.str());
  Tensor t;
  t.data = p_;
  t.dtype = dt;
  t.device = be_ ? be_->device() : Device::CPU;
  t.shape = s;
  return t;
}

OwnedTensor Backend::alloc(Shape s, DType dt) {
  OwnedTensor o;
  size_t bytes = std::max<size_t>(size_t(s.numel()) * dtype_size(dt), 1);
  o.buf = alloc_bytes(bytes);
  o.t = o.buf.as(dt, s);
  return o;
}

namespace {

class EagerPassGraphs final : public PassGraphs {
 public:
  void run(const PassKey&, const std::function<void()>& body) override {
    ++stats_.eager;
    body();
  }
  Stats stats() const override { return stats_; }

 private:
  Stats stats_;
};

}  // namespace

std::unique_ptr<PassGraphs> Backend::new_pass_graphs() { return std::make_unique<EagerPassGraphs>(); }

static size_t align_up(size_t n) { return (n + 255) & ~size_t(255); }

Tensor Arena::tensor(Shape s, DType dt) {
  size_t need = align_up(std::max<size_t>(size_t(s.numel()) * dtype_size(dt), 1));
  while (cur_ < blocks_.size() && blocks_[cur_].used + need > blocks_[cur_].buf.bytes()) ++cur_;
  if (cur_ == blocks_.size()) {
    Block b;
    b.buf = be_->alloc_bytes(std::max(block_bytes_, need));
    blocks_.push_back(std::move(b));
  }
  Block& b = blocks_[cur_];
  Tensor t;
  t.data = static_cast<char*>(b.buf.data()) + b.used;
  t.dtype = dt;
  t.device = be_->device();
  t.shape = s;
  b.used += need;
  in_use_ += need;
  high_water_ = std::max(high_water_, in_use_);
  return t;
}

void Arena::reset() {
  for (auto& b : blocks_) b.used = 0;
  cur_ = 0;
  in_use_ = 0;
}

Arena::Mark Arena::mark() const {
  Mark m;
  m.cur = cur_;
  m.used = cur_ < blocks_.size() ? blocks_[cur_].used : 0;
  m.in_use = in_use_;
  return m;
}

void Arena::release(const Mark& m) {
  for (size_t i = m.cur + 1; i < blocks_.size(); ++i) blocks_[i].used = 0;
  if (m.cur < blocks_.size()) blocks_[m.cur].used = m.used;
  cur_ = m.cur;
  in_use_ = m.in_use;
}

size_t Arena::capacity() const {
  size_t n = 0;
  for (auto& b : blocks_) n += b.buf.bytes();
  return n;
}

bool cuda_available() {
#ifdef VMLA_WITH_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> create_backend(const std::string& name) {
  if (name == "cpu") return create_cpu_backend();
  if (name == "cuda") {
#ifdef VMLA_WITH_CUDA
    if (cuda_device_count() == 0) throw DeviceError("backend 'cuda' requested but no CUDA device is available");
    return create_cuda_backend(0);
#else
    throw DeviceError("backend 'cuda' requested but this build has no CUDA backend (nvcc was not found at build time)");
#endif
  }
  if (name == "auto" || name.empty()) {
    if (cuda_available()) {
#ifdef VMLA_WITH_CUDA
      return create_cuda_backend(0);
#endif
    }
    return create_cpu_backend();
  }
  throw DeviceError("unknown backend '" + name + "' (expected cpu, cuda or auto)");
}

void Backend::rope_copy(Tensor src, Tensor dst, int heads, int head_stride, int offset, const RopeSpec& spec,
                        Tensor pos, int64_t src_col) {
  if (src.dtype != dst.dtype || src.rows() != dst.rows() || (src_col == kAllColumns && src.cols() != dst.cols()))
    throw ShapeError("rope_copy: src " + src.shape.str() + " " + std::string(dtype_name(src.dtype)) + " and dst " +
                     dst.shape.str() + " " + std::string(dtype_name(dst.dtype)) + " differ");
  if (src_col == kAllColumns)
    copy(src, dst);
  else
    copy_rows(src, 0, dst, 0, dst.rows(), src_col);
  rope(dst, heads, head_stride, offset, spec, pos);
}

void Backend::rms_norm_rope(Tensor x, Tensor w, Tensor y, float eps, int heads, int head_dim, const RopeSpec& spec,
                            Tensor pos, int64_t x_col) {
  rms_norm(x, w, y, eps, x_col);
  rope(y, heads, head_dim, 0, spec, pos);
}

}  // namespace vmla
