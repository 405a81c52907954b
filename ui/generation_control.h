#pragma once
// Cancel and pause flags shared by the GUI and the worker. The engine polls them between passes
// (SessionCallbacks::cancel_requested): a pause blocks the worker right there, so resuming continues
// the same chunk; a cancel wins over a pause and makes the chunk throw Cancelled.
#include <atomic>
#include <condition_variable>
#include <mutex>

namespace vmla::ui {

class GenerationControl {
 public:
  void request_cancel() {
    {
      std::lock_guard lock(m_);
      cancel_ = true;
    }
    cv_.notify_all();
  }
  void clear_cancel() { cancel_ = false; }
  bool cancel_requested() const { return cancel_; }

  void set_paused(bool p) {
    {
      std::lock_guard lock(m_);
      paused_ = p;
    }
    cv_.notify_all();
  }
  bool paused() const { return paused_; }
  bool waiting() const { return waiting_; }  // the worker is blocked in a pause

  // Worker side, between passes.
  bool poll() {
    if (paused_ && !cancel_) {
      std::unique_lock lock(m_);
      waiting_ = true;
      cv_.wait(lock, [&] { return !paused_ || cancel_; });
      waiting_ = false;
    }
    return cancel_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> cancel_{false}, paused_{false}, waiting_{false};
};

}  // namespace vmla::ui
