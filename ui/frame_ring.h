#pragma once
// The latest decoded frame batches, handed from the worker to the GUI. The worker pushes; the GUI
// drains on a queued notification. Notifications are coalesced: push() asks for one only when none
// is pending, so a slow GUI gets one wake-up for many batches, and the oldest batches are dropped
// beyond the capacity (the complete frames of a chunk also arrive with its ChunkResult).
#include <QByteArray>
#include <deque>
#include <mutex>
#include <vector>

namespace vmla::ui {

struct FrameBatchCopy {
  int node = -1;
  qint64 first_frame = 0;  // within the chunk
  int count = 0, width = 0, height = 0;
  QByteArray rgb;
};

class FrameRing {
 public:
  explicit FrameRing(size_t capacity = 8) : capacity_(capacity) {}
  // True when the consumer should be notified.
  bool push(FrameBatchCopy b);
  std::vector<FrameBatchCopy> drain();
  size_t dropped() const;

 private:
  mutable std::mutex m_;
  std::deque<FrameBatchCopy> q_;
  size_t capacity_;
  size_t dropped_ = 0;
  bool notify_pending_ = false;
};

}  // namespace vmla::ui
