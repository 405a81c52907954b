#include "core/backend/cpu/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VMLA_CPU_RELAX() _mm_pause()
#else
#define VMLA_CPU_RELAX() std::this_thread::yield()
#endif

namespace vmla::cpu {

namespace {
// True on pool workers and on a caller while its job runs: nested run() calls go serial.
thread_local bool t_inside_pool = false;
// Spin about this many rounds (a few tens of microseconds) before sleeping: ops come in quick
// succession during a pass, and a condition-variable wake-up costs tens of microseconds.
constexpr int kSpinRounds = 400;

template <class Pred>
bool spin_until(Pred&& p) {
  for (int i = 0; i < kSpinRounds; ++i) {
    if (p()) return true;
    for (int k = 0; k < 8; ++k) VMLA_CPU_RELAX();
  }
  return p();
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  workers_.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work(TaskFn fn, void* ctx, int64_t ntasks, int thread) {
  for (;;) {
    const int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
    if (task >= ntasks) return;
    if (!failed_.load(std::memory_order_relaxed)) {
      try {
        fn(ctx, task, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
    if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == ntasks) {
      std::lock_guard<std::mutex> lk(m_);
      done_.notify_all();
    }
  }
}

void ThreadPool::worker_main(int index) {
  t_inside_pool = true;
  uint64_t seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    TaskFn fn;
    void* ctx;
    int64_t ntasks;
    {
      std::unique_lock<std::mutex> lk(m_);
      wake_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_acquire);
      if (stop_) return;
      if (!open_) continue;  // woke after the job was done
      ++active_;
      fn = fn_, ctx = ctx_, ntasks = ntasks_;
    }
    work(fn, ctx, ntasks, index);
    {
      std::lock_guard<std::mutex> lk(m_);
      if (--active_ == 0 && !open_) done_.notify_all();
    }
  }
}

void ThreadPool::run_impl(int64_t ntasks, TaskFn fn, void* ctx) {
  if (ntasks <= 0) return;
  std::unique_lock<std::mutex> dispatch(dispatch_, std::defer_lock);
  if (ntasks == 1 || workers_.empty() || t_inside_pool || !dispatch.try_lock()) {
    for (int64_t i = 0; i < ntasks; ++i) fn(ctx, i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(m_);
    fn_ = fn, ctx_ = ctx, ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    open_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  t_inside_pool = true;
  work(fn, ctx, ntasks, 0);
  t_inside_pool = false;
  auto all_done = [&] { return finished_.load(std::memory_order_acquire) == ntasks; };
  spin_until(all_done);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, all_done);
    open_ = false;
    // Joined workers have no task left; they are leaving work() now.
    done_.wait(lk, [&] { return active_ == 0; });
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace vmla::cpu
