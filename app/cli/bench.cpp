// videomla bench: random-weight configurations timed chunk by chunk.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/model/dit.h"
#include "core/model/model.h"
#include "core/runtime/sampler.h"
#include "core/runtime/session.h"

namespace vmla::cli {

namespace {

const std::vector<OptionSpec> kBenchOptions = {
    {"backend", 'b', true, "NAME", "cpu, cuda or auto (default auto)"},
    {"chunks", 'n', true, "N", "timed chunks (default 4)"},
    {"warmup", 0, true, "N", "untimed warm-up chunks (default: enough to fill sink + window)"},
    {"layers", 0, true, "N", "override the layer count (e.g. 2 for quick checks)"},
    {"attn", 0, true, "PATH", "MLA path: auto, expanded or absorbed (default auto)"},
    {"sink", 0, true, "FRAMES", "sink latent frames (default: the configuration's)"},
    {"window", 0, true, "FRAMES", "window latent frames (default: the configuration's)"},
    {"steps", 0, true, "N", "denoising steps per chunk (default: the configuration's)"},
    {"no-decode", 0, false, "", "skip the decoder"},
    {"json", 0, true, "FILE", "also write the results as JSON"},
    {"help", 'h', false, "", "show this help"},
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  Args a(kBenchOptions, argv);
  if (a.flag("help") || a.positional().size() != 1) {
    std::printf("usage: videomla bench CONFIG [--backend cuda] [--chunks 4]\n"
                "CONFIG: tiny, tiny-mha, wan1.3b-mha, wan1.3b-mla or a .json file. Weights are random (seeded):\n"
                "speed never depends on trained values. The last line is a one-line summary.\n\n%s",
                Args::help_text(kBenchOptions).c_str());
    return a.flag("help") ? 0 : 2;
  }
  ModelConfig cfg = config_by_name(a.positional()[0]);
  if (a.get("layers")) cfg.layers = a.get_int("layers", cfg.layers);
  std::shared_ptr<Backend> be = create_backend(a.get_or("backend", "auto"));
  std::vector<std::string> vocab;
  if (cfg.text_encoder.present) vocab = load_vocabulary_file(default_resource_dir() + "/vocab/tiny-words.txt");
  using clock = std::chrono::steady_clock;
  const auto t_load = clock::now();
  std::shared_ptr<Model> model = Model::random(cfg, vocab, 42, be);
  be->synchronize();
  const double load_s = std::chrono::duration<double>(clock::now() - t_load).count();

  SessionOptions so;
  so.sink_frames = a.get_int("sink", -1);
  so.window_frames = a.get_int("window", -1);
  so.steps = a.get_int("steps", -1);
  so.attn_path = parse_attn_path(a.get_or("attn", "auto"));
  so.decode = !a.flag("no-decode");
  so.keep_snapshots = false;
  // Warm up until the window is full, so that every timed pass sees the steady-state context.
  const int ctx_frames = (so.sink_frames >= 0 ? so.sink_frames : cfg.sink_frames) +
                         (so.window_frames >= 0 ? so.window_frames : cfg.window_frames);
  const int fill = (ctx_frames + cfg.chunk_frames - 1) / cfg.chunk_frames;
  const int warmup = a.get_int("warmup", fill), timed = a.get_int("chunks", 4);
  if (timed < 1 || warmup < 0) throw UsageError("--chunks must be >= 1 and --warmup >= 0");

  std::vector<double> pass_ms, chunk_ms, decode_ms;
  double first_chunk_s = 0;
  size_t cache_bytes = 0, mha_bytes = 0, cache_cap = 0;
  const auto t_session = clock::now();
  Session session(model, so);
  const int passes = int(chunk_sigmas(cfg, so.steps).size()) + 1;
  SessionCallbacks cb;
  bool timing = false;
  cb.on_progress = [&](const Progress&) {
    if (timing) pass_ms.push_back(session.metrics().ms_last_pass);
  };
  for (int c = 0; c < warmup + timed; ++c) {
    timing = c >= warmup;
    ChunkSpec spec{"a red ball bouncing on the beach at sunset", 7, false};
    session.extend(spec, cb);
    const Metrics& m = session.metrics();
    if (c == 0) first_chunk_s = std::chrono::duration<double>(clock::now() - t_session).count();
    if (timing) {
      chunk_ms.push_back(m.ms_last_chunk - m.ms_last_decode);
      decode_ms.push_back(m.ms_last_decode);
    }
    cache_bytes = m.cache_bytes;
    mha_bytes = m.mha_cache_bytes;
    cache_cap = m.cache_capacity_bytes;
  }
  const Metrics& m = session.metrics();
  const MemoryInfo mi = be->memory_info();
  const double med_pass = median(pass_ms), med_chunk = median(chunk_ms), med_dec = median(decode_ms);
  const int vf = cfg.frames_per_chunk();
  const double fps_dit = vf / (med_chunk / 1e3);
  const double fps_all = vf / ((med_chunk + med_dec) / 1e3);
  const double flops = model->dit().pass_flops(ctx_frames, cfg.chunk_frames, session.attn_path() == AttnPath::Absorbed);
  const double tflops = flops / (med_pass / 1e3) / 1e12;
  const char* path = cfg.attention == AttentionKind::MLA ? attn_path_name(session.attn_path()) : "dense";

  std::printf("config            %s (%s, %d layers, random weights; setup %.1f s)\n", cfg.name.c_str(),
              cfg.attention == AttentionKind::MLA ? "MLA" : "MHA", cfg.layers, load_s);
  std::printf("backend           %s: %s\n", be->name().c_str(), be->device_name().c_str());
  std::printf("stream            %dx%d, %d tokens/frame, chunk %d latent frames (%d video frames), sink %d + window %d, %d passes/chunk, attention %s\n",
              cfg.width, cfg.height, cfg.tokens_per_frame(), cfg.chunk_frames, vf,
              so.sink_frames >= 0 ? so.sink_frames : cfg.sink_frames, so.window_frames >= 0 ? so.window_frames : cfg.window_frames,
              passes, path);
  std::printf("ms per pass       %.2f (median of %zu, window full)   %.2f TFLOP/s\n", med_pass, pass_ms.size(), tflops);
  std::printf("ms per chunk      %.2f DiT + %.2f decoder (median of %zu)\n", med_chunk, med_dec, chunk_ms.size());
  std::printf("frames/s          %.2f DiT only, %.2f with decoder; real time x%.2f\n", fps_dit, fps_all, fps_all / cfg.fps);
  std::printf("first chunk       %.3f s (session start to frames)\n", first_chunk_s);
  std::printf("cache             %s in use, %s allocated; MHA layout would need %s (%.2fx)\n",
              human_bytes(double(cache_bytes)).c_str(), human_bytes(double(cache_cap)).c_str(),
              human_bytes(double(mha_bytes)).c_str(), cache_bytes ? double(mha_bytes) / double(cache_bytes) : 0.0);
  std::printf("memory            engine %s", human_bytes(double(mi.allocated_by_engine)).c_str());
  if (mi.device_total) std::printf(", device %s of %s", human_bytes(double(mi.device_used)).c_str(), human_bytes(double(mi.device_total)).c_str());
  std::printf("\n");
  if (auto jf = a.get("json")) {
    nlohmann::json j = {{"config", cfg.name}, {"layers", cfg.layers}, {"backend", be->name()}, {"device", be->device_name()},
                        {"attention", path}, {"ms_per_pass", med_pass}, {"ms_per_chunk_dit", med_chunk},
                        {"ms_per_chunk_decoder", med_dec}, {"fps_dit", fps_dit}, {"fps_total", fps_all},
                        {"realtime_factor", fps_all / cfg.fps}, {"first_chunk_s", first_chunk_s}, {"tflops", tflops},
                        {"cache_bytes", cache_bytes}, {"mha_cache_bytes", mha_bytes}, {"engine_bytes", mi.allocated_by_engine},
                        {"device_used", mi.device_used}, {"pass_ms", pass_ms}, {"chunk_ms", chunk_ms}};
    std::ofstream f(*jf);
    f << j.dump(2) << "\n";
    if (!f) throw OutputError("cannot write " + *jf);
  }
  (void)m;
  std::printf("bench %s on %s: %.1f ms/chunk DiT, %.1f FPS DiT, %.1f FPS with decoder (%.2fx real time), %.2f ms/pass, cache %s vs MHA %s\n",
              cfg.name.c_str(), be->name().c_str(), med_chunk, fps_dit, fps_all, fps_all / cfg.fps, med_pass,
              human_bytes(double(cache_bytes)).c_str(), human_bytes(double(mha_bytes)).c_str());
  return 0;
}

}  // namespace vmla::cli
