// Recorded passes on the CUDA backend: each pass layout (see Backend::PassGraphs) is captured into a
// CUDA graph once and replayed with one cudaGraphLaunch after that.
//
// Policy per layout:
//  - first run: op by op. It pays every first-use cost that must not happen inside a capture (the
//    arena and scratch growing, cuBLASLt plans and their algorithm choice, lazy module loading), so
//    the graph recorded later makes the same launches as the eager run.
//  - second run: captured (stream capture of the very same ops), instantiated, launched.
//  - later runs with the addresses and memory epoch of the graph: replayed.
//  - later runs with other addresses (a new prompt's K/V, another session state) or after the
//    backend's scratch blocks moved (memory epoch): captured again and applied to the graph in place
//    (cudaGraphExecUpdate: same topology, new parameters), or instantiated anew if the update is
//    refused.
//  - a failed recording (an op that would allocate, transfer, synchronise or time GEMMs, a CUDA
//    error) runs the body op by op, and the layout stays op by op for this cache.
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

  void run(const PassKey& key, const std::function<void()>& body) override {
    const char* op = "pass graph";
    ++tick_;
    const Key& layout = key.layout;
    auto it = graphs_.find(layout);
    if (it != graphs_.end() && it->second.addresses == key.addresses && it->second.epoch == be_.memory_epoch()) {
      it->second.last_use = tick_;
      launch(it->second.exec, op);
      ++stats_.replayed;
      return;
    }
    if (it == graphs_.end() && (!seen_.count(layout) || eager_only_.count(layout))) {
      remember(seen_, layout);
      ++stats_.eager;
      body();
      return;
    }
    std::string why;
    cudaGraph_t g = be_.capture(body, &why);
    if (!g) {
      if (it != graphs_.end()) drop(it);
      eager_after_failure(layout, why, body);
      return;
    }
    if (it != graphs_.end()) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(it->second.exec, g, &info) == cudaSuccess) {
        cudaGraphDestroy(g);
        it->second.addresses = key.addresses;
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
      eager_after_failure(layout, std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e), body);
      return;
    }
    if (graphs_.size() >= kMaxGraphs) {
      auto lru = graphs_.begin();
      for (auto i = graphs_.begin(); i != graphs_.end(); ++i)
        if (i->second.last_use < lru->second.last_use) lru = i;
      drop(lru);
    }
    graphs_[layout] = Entry{exec, key.addresses, be_.memory_epoch(), tick_};
    launch(exec, op);
    ++stats_.captured;
  }

  Stats stats() const override {
    Stats s = stats_;
    s.graphs = int64_t(graphs_.size());
    return s;
  }

 private:
  using Key = std::vector<uint64_t>;
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    Key addresses;          // PassKey::addresses of the recording
    uint64_t epoch = 0;     // CudaBackend::memory_epoch() of the recording
    uint64_t last_use = 0;  // tick_ of the last launch
  };

  static void remember(std::set<Key>& keys, const Key& k) {
    if (keys.size() >= kMaxSeen) keys.clear();
    keys.insert(k);
  }
  void eager_after_failure(const Key& layout, const std::string& why, const std::function<void()>& body) {
    ++stats_.failed;
    stats_.last_failure = why;
    remember(eager_only_, layout);
    ++stats_.eager;
    body();
  }
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

  // A full window cycles through window / chunk slot layouts, each with a denoising and a cache pass,
  // so 16 covers every steady state of the shipped configurations.
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
