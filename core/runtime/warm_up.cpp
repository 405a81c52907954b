#include "core/runtime/warm_up.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

namespace vmla {

bool warm_up_useful(const Backend& be) {
  if (const char* env = std::getenv("VMLA_WARMUP"); env && *env) return std::string(env) != "0";
  return be.benefits_from_warm_up();
}

WarmUpReport warm_up(const std::shared_ptr<Model>& model, const WarmUpOptions& o) {
  if (!model) throw Error("warm-up needs a model");
  WarmUpReport r;
  if (!o.force && !warm_up_useful(model->backend())) return r;
  const auto t0 = std::chrono::steady_clock::now();
  r.ran = true;
  SessionOptions so = o.session;
  so.steps = std::max(1, o.steps);
  so.keep_snapshots = false;
  if (!so.workspace) so.workspace = std::make_shared<SessionWorkspace>(model);
  r.workspace = so.workspace;
  {
    Session s(model, so);
    SessionCallbacks cb;
    cb.cancel_requested = o.cancel_requested;
    const ChunkSpec spec{"warm up", 0, false};
    try {
      for (; r.chunks < o.chunks; ++r.chunks) s.extend(spec, cb);
    } catch (const Cancelled&) {
      r.cancelled = true;
    }
  }  // the session's cache is freed here, inside the measured time
  model->backend().synchronize();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace vmla
