// Recorded passes on the CUDA backend: each distinct pass (by its key, see Backend::PassGraphs) is
// captured into a CUDA graph once and replayed with one cudaGraphLaunch after that.
//
// Policy per key:
//  - first run: op by op. It pays every first-use cost that must not happen inside a capture (the
//    arena and scratch growing, cuBLASLt plans and their algorithm choice, lazy module loading), so
//    the graph recorded later makes the same launches as the eager run.
//  - second run: captured (stream capture of the very same ops), instantiated, launched.
//  - later runs: replayed, as long as the backend's memory epoch (scratch blocks) is the one of the
//    recording; a stale graph is recorded again and applied in place (cudaGraphExecUpdate: same
//    topology, new addresses), or instantiated anew when the update is refused.
//  - a failed recording (an op that would allocate, transfer or synchronise, a CUDA error) runs the
//    body op by op, and the key stays op by op for this cache.
// At most kMaxGraphs graphs are held; the least recently used one goes first.
#include <cuda_runtime.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/backend/cuda/cuda_backend.h"

namespace vmla {

cudaGraph_t CudaBackend::capture(const std::function<void()>& body, std::string* why) {
  enter("capture");
  auto fail = [&](const std::string& reason) -> cudaGraph_t {
    capturing_ = false;
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    if (why) *why = reason;
    return nullptr;
  };
  cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e);
    return nullptr;
  }
  capturing_ = true;
  try {
    body();
  } catch (const std::exception& ex) {
    return fail(ex.what());
  } catch (...) {
    return fail("unknown exception");
  }
  capturing_ = false;
  cudaGraph_t g = nullptr;
  e = cudaStreamEndCapture(stream_, &g);
  if (e != cudaSuccess || !g) {
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    if (why) *why = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e);
    return nullptr;
  }
  return g;
}

namespace {

class CudaPassGraphs final : public PassGraphs {
 public:
  explicit CudaPassGraphs(CudaBackend& be) : be_(be) {}
  ~CudaPassGraphs() override {
    // An exec still in flight is freed when it completes.
    for (auto& [key, e] : graphs_) cudaGraphExecDestroy(e.exec);
    cudaGetLastError();
  }
  CudaPassGraphs(const CudaPassGraphs&) = delete;
  CudaPassGraphs& operator=(const CudaPassGraphs&) = delete;

  void run(const std::vector<uint64_t>& key, const std::function<void()>& body) override {
    const char* op = "pass graph";
    ++tick_;
    auto it = graphs_.find(key);
    if (it != graphs_.end() && it->second.epoch == be_.memory_epoch()) {
      it->second.last_use = tick_;
      launch(it->second.exec, op);
      ++stats_.replayed;
      return;
    }
    if (it == graphs_.end() && (!seen_.count(key) || eager_only_.count(key))) {
      if (seen_.size() >= kMaxSeen) seen_.clear();
      seen_.insert(key);
      ++stats_.eager;
      body();
      return;
    }
    std::string why;
    cudaGraph_t g = be_.capture(body, &why);
    if (!g) {
      ++stats_.failed;
      stats_.last_failure = why;
      if (it != graphs_.end()) drop(it);
      if (eager_only_.size() >= kMaxSeen) eager_only_.clear();
      eager_only_.insert(key);
      ++stats_.eager;
      body();
      return;
    }
    if (it != graphs_.end()) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(it->second.exec, g, &info) == cudaSuccess) {
        cudaGraphDestroy(g);
        it->second.epoch = be_.memory_epoch();
        it->second.last_use = tick_;
        launch(it->second.exec, op);
        ++stats_.updated;
        return;
      }
      cudaGetLastError();
      drop(it);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
      cudaGetLastError();
      ++stats_.failed;
      stats_.last_failure = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e);
      eager_only_.insert(key);
      ++stats_.eager;
      body();
      return;
    }
    if (graphs_.size() >= kMaxGraphs) {
      auto lru = graphs_.begin();
      for (auto i = graphs_.begin(); i != graphs_.end(); ++i)
        if (i->second.last_use < lru->second.last_use) lru = i;
      drop(lru);
    }
    graphs_[key] = Entry{exec, be_.memory_epoch(), tick_};
    launch(exec, op);
    ++stats_.captured;
  }

  Stats stats() const override {
    Stats s = stats_;
    s.graphs = int64_t(graphs_.size());
    return s;
  }

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    uint64_t epoch = 0;     // CudaBackend::memory_epoch() when recorded
    uint64_t last_use = 0;  // tick_ of the last launch
  };
  using Key = std::vector<uint64_t>;

  void launch(cudaGraphExec_t exec, const char* op) {
    const cudaError_t e = cudaGraphLaunch(exec, be_.stream());
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw DeviceError(std::string(op) + ": cudaGraphLaunch failed: " + cudaGetErrorString(e));
    }
  }
  void drop(std::map<Key, Entry>::iterator it) {
    cudaGraphExecDestroy(it->second.exec);
    graphs_.erase(it);
  }

  // A pass keyed by its slot layout: a full window cycles through window / chunk layouts, each with a
  // denoising and a cache pass, so 16 covers every steady state of the shipped configurations.
  static constexpr size_t kMaxGraphs = 16;
  static constexpr size_t kMaxSeen = 256;
  CudaBackend& be_;
  std::map<Key, Entry> graphs_;
  std::set<Key> seen_, eager_only_;
  uint64_t tick_ = 0;
  Stats stats_;
};

}  // namespace

std::unique_ptr<PassGraphs> CudaBackend::new_pass_graphs() {
  if (!graphs_) return Backend::new_pass_graphs();
  return std::make_unique<CudaPassGraphs>(*this);
}

}  // namespace vmla
