#include "ui/frame_ring.h"

namespace vmla::ui {

bool FrameRing::push(FrameBatchCopy b) {
  std::lock_guard lock(m_);
  q_.push_back(std::move(b));
  while (q_.size() > capacity_) q_.pop_front(), ++dropped_;
  const bool notify = !notify_pending_;
  notify_pending_ = true;
  return notify;
}

std::vector<FrameBatchCopy> FrameRing::drain() {
  std::lock_guard lock(m_);
  std::vector<FrameBatchCopy> out(std::make_move_iterator(q_.begin()), std::make_move_iterator(q_.end()));
  q_.clear();
  notify_pending_ = false;
  return out;
}

size_t FrameRing::dropped() const {
  std::lock_guard lock(m_);
  return dropped_;
}

}  // namespace vmla::ui
