#pragma once
// Start-up warm-up (issue 5: time to the first chunk). On CUDA the first chunk of a process pays
// one-time costs that later chunks do not: lazy loading of our kernels' and cuBLAS(Lt)'s modules on
// their first launch, a cuBLASLt plan (heuristic, and timing where the backend tunes) per new GEMM
// shape, first growth of the backend's scratch. warm_up() pays them up front, when a model is made
// ready for generation, by running a throwaway Session: one chunk from an empty cache (every shape
// of any session's first chunk) and one with a non-empty cache (the gather of cached entries, the
// decoder with carried memory). It changes no result: sessions keep all their state to themselves
// and noise is a pure function of (seed, chunk, step) (tests/unit: WarmUp.*).
#include <functional>
#include <memory>

#include "core/runtime/session.h"

namespace vmla {

struct WarmUpOptions {
  // The options of the sessions to come: sink, window, attention path and decoder decide the shapes
  // that get warmed. The warm-up runs `steps` denoising steps per chunk (all steps of a chunk have
  // the same shapes) and keeps no snapshots. It runs on `session.workspace`, or on a new one.
  SessionOptions session;
  int chunks = 2;  // 1: the first chunk's shapes only
  int steps = 1;
  // Run whatever the backend or VMLA_WARMUP say (tests; the CPU gains nothing from it).
  bool force = false;
  // Polled between passes; a warm-up cut short returns normally (it is only an optimisation).
  std::function<bool()> cancel_requested;
};

struct WarmUpReport {
  bool ran = false;
  bool cancelled = false;
  int chunks = 0;  // chunks finished
  double seconds = 0;
  // The workspace the warm-up ran on, its scratch grown to the passes it ran (null when it did not
  // run): sessions given it (SessionOptions::workspace) with the warmed options allocate no scratch
  // in their first chunk.
  std::shared_ptr<SessionWorkspace> workspace;
};

// Whether a warm-up pays on `be`: VMLA_WARMUP=0 (never) or 1 (always, also on the CPU) decides if
// set, else Backend::benefits_from_warm_up() (CUDA yes, CPU no).
bool warm_up_useful(const Backend& be);

// Runs the warm-up when forced or useful (see above), else returns at once with ran = false. Errors
// (out of memory at these settings, a broken model) propagate: the sessions would meet them too.
WarmUpReport warm_up(const std::shared_ptr<Model>& model, const WarmUpOptions& o = {});

}  // namespace vmla
