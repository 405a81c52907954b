#pragma once
// A fixed pool of worker threads created once per CPU backend. The calling thread takes part in
// every job, so a pool of size n starts n-1 workers. Jobs are lists of independent tasks pulled from
// an atomic counter; run() returns when all have finished.
//
// run() is safe to call from several host threads and from inside a task: a call that finds the
// pool busy runs its tasks serially on the calling thread instead of waiting.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace vmla::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  static constexpr int kRangesPerThread = 4;

  // fn(task, thread) for task in [0, ntasks); `thread` in [0, size()) is stable within a task.
  template <class F>
  void run(int64_t ntasks, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    run_impl(ntasks, [](void* ctx, int64_t task, int thread) { (*static_cast<Fn*>(ctx))(task, thread); },
             const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // fn(begin, end) over [0, n) cut into ranges of at least `grain` items, a few per thread so
  // that a thread descheduled by another process on a shared machine does not hold up the rest.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t parts = std::min<int64_t>(size() == 1 ? 1 : kRangesPerThread * size(), (n + grain - 1) / grain);
    if (parts <= 1) {
      fn(int64_t(0), n);
      return;
    }
    run(parts, [&](int64_t p, int) { fn(n * p / parts, n * (p + 1) / parts); });
  }

 private:
  using TaskFn = void (*)(void*, int64_t, int);
  void run_impl(int64_t ntasks, TaskFn fn, void* ctx);
  void worker_main(int index);
  void work(TaskFn fn, void* ctx, int64_t ntasks, int thread);

  std::vector<std::thread> workers_;
  std::mutex dispatch_;  // held by the one caller whose job is running

  // Job publication and worker bookkeeping, guarded by m_. A worker joins the running job only
  // while it is open; run() closes it once every task is done and waits for the joined workers
  // to leave, never for workers that are still asleep.
  std::mutex m_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  bool open_ = false;
  int active_ = 0;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t ntasks_ = 0;
  std::exception_ptr error_;

  std::atomic<int64_t> next_{0};      // next task to hand out
  std::atomic<int64_t> finished_{0};  // tasks done
  std::atomic<bool> failed_{false};
};

}  // namespace vmla::cpu
