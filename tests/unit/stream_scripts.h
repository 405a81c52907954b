#pragma once
// The stream scripts shared by the CPU and CUDA concurrent-streams tests (tests/unit/test_streams.cpp,
// tests/gpu/test_cuda_streams.cpp): three streams with a plain run, a prompt switch with re-cache,
// and a rewind followed by a re-roll, recorded chunk by chunk.
#include <cstdint>
#include <vector>

#include "core/runtime/session.h"

namespace vmla::test {

inline const ChunkSpec kBall{"a red ball bouncing on the beach", 7, false};
inline const ChunkSpec kFish{"a blue fish swimming in the sea", 9, false};
inline const ChunkSpec kFishRecache{"a blue fish swimming in the sea", 9, true};

struct StreamRun {
  std::vector<std::vector<float>> latents;
  std::vector<std::vector<uint8_t>> frames;
};

inline void extend(Session& s, const ChunkSpec& spec, StreamRun& out) {
  SessionCallbacks cb;
  cb.on_frames = [&](const FrameBatch& fb) {
    out.frames.emplace_back(fb.rgb, fb.rgb + size_t(fb.count) * fb.height * fb.width * 3);
  };
  s.extend(spec, cb);
  out.latents.push_back(s.latent(s.chunks() - 1));
}

inline const std::vector<std::vector<ChunkSpec>> kScripts = {
    {kBall, kBall, kBall, kBall},
    {kFish, {"a blue fish swimming in the sea", 3, false}, kBall, kFishRecache},
    {{"a green tree in the wind", 5, false}, kBall, kBall, kFish},
};

inline void run_script(Session& s, size_t stream, size_t step, StreamRun& out) {
  extend(s, kScripts[stream][step], out);
  if (stream == 2 && step == 2) {
    s.rewind(1);  // restore (and a prompt re-encode) through the workspace
    extend(s, {"a red ball bouncing on the beach", 11, false}, out);
  }
}

}  // namespace vmla::test
