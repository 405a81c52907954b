// Concurrent streams on the CUDA backend (BF16 storage): a shared workspace gives the same results as
// separate sessions, and the sweep's per-stream memory is the real buffers. Skips without a device;
// the CPU versions are in tests/unit/test_streams.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/runtime/stream_sweep.h"
#include "core/tensor/backend.h"
#include "tests/unit/engine_fixture.h"
#include "tests/unit/stream_scripts.h"

using namespace vmla;
using namespace vmla::test;

TEST(CudaStreams, SharedWorkspaceAndSweep) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const char* attention : {"mla", "mha"}) {
    SCOPED_TRACE(attention);
    std::shared_ptr<Backend> be = create_backend("cuda");
    const ModelConfig cfg = ModelConfig::from_json(vmla::test::small_config_json(attention), "test");
    auto m = Model::random(cfg, vmla::test::test_vocabulary(), 3, be);
    const size_t n = kScripts.size();
    std::vector<StreamRun> alone(n), again(n), shared(n);
    for (auto* runs : {&alone, &again})
      for (size_t i = 0; i < n; ++i) {
        Session s(m);
        for (size_t c = 0; c < kScripts[i].size(); ++c) run_script(s, i, c, (*runs)[i]);
      }
    SessionOptions so;
    so.workspace = std::make_shared<SessionWorkspace>(m);
    std::vector<std::unique_ptr<Session>> sessions;
    for (size_t i = 0; i < n; ++i) sessions.push_back(std::make_unique<Session>(m, so));
    for (size_t c = 0; c < kScripts[0].size(); ++c)
      for (size_t i = 0; i < n; ++i) run_script(*sessions[i], i, c, shared[i]);
    sessions.clear();
    for (size_t i = 0; i < n; ++i)
      for (size_t c = 0; c < alone[i].latents.size(); ++c) {
        // Bit-identical wherever the kernels are deterministic run to run (they are meant to be).
        if (again[i].latents[c] == alone[i].latents[c])
          EXPECT_EQ(shared[i].latents[c], alone[i].latents[c]) << "stream " << i << " chunk " << c;
        else
          EXPECT_LT(vmla::test::rel_err(shared[i].latents[c], alone[i].latents[c]), 1e-2) << "stream " << i << " chunk " << c;
      }

    StreamSweepOptions o;
    o.streams = 2;
    o.session.steps = 1;
    const StreamSweepResult r = run_stream_sweep(m, o);
    const size_t slots = size_t(cfg.sink_frames + cfg.window_frames);
    EXPECT_EQ(r.per_stream.cache, size_t(cfg.layers) * slots * size_t(cfg.tokens_per_frame()) *
                                      size_t(cfg.cache_values_per_token()) * dtype_size(be->act_dtype()));
    EXPECT_DOUBLE_EQ(r.cache_values_per_token_layer, double(cfg.cache_values_per_token()));
    EXPECT_EQ(r.unaccounted_bytes, 0u);
    EXPECT_GT(r.peak_device_used, r.device_used_before);
  }
}
