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
#include "core/runtime/stream_sweep.h"
#include "core/runtime/warm_up.h"

namespace vmla::cli {

namespace {

const std::vector<OptionSpec> kBenchOptions = {
    {"backend", 'b', true, "NAME", "cpu, cuda or auto (default auto)"},
    {"chunks", 'n', true, "N", "timed chunks (default 4)"},
    {"warmup", 0, true, "N", "untimed chunks before the timed ones (default: enough to fill sink + window)"},
    {"no-warmup", 0, false, "", "skip the start-up warm-up (CUDA: a throwaway session after model creation, so the "
                                "first chunk is timed warm) and time a cold first chunk"},
    {"layers", 0, true, "N", "override the layer count (e.g. 2 for quick checks)"},
    {"attn", 0, true, "PATH", "MLA path: auto, expanded or absorbed (default auto)"},
    {"sink", 0, true, "FRAMES", "sink latent frames (default: the configuration's)"},
    {"window", 0, true, "FRAMES", "window latent frames (default: the configuration's)"},
    {"steps", 0, true, "N", "denoising steps per chunk (default: the configuration's)"},
    {"no-decode", 0, false, "", "skip the decoder"},
    {"streams", 0, true, "N[,N...]", "concurrent streams: N independent sessions on one model, served round-robin; "
                                      "reports per-stream and shared memory and how many streams fit in --memory-gb"},
    {"memory-gb", 0, true, "GB", "memory budget for the --streams projection, in GB of 1e9 bytes (default 80)"},
    {"no-share", 0, false, "", "with --streams: every session its own workspace (default: one shared workspace)"},
    {"json", 0, true, "FILE", "also write the results as JSON"},
    {"help", 'h', false, "", "show this help"},
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<int> parse_stream_counts(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    int n = 0;
    size_t used = 0;
    try {
      n = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || n < 1)
      throw UsageError("option --streams expects stream counts >= 1 separated by commas (e.g. 1,4,16), got '" + text + "'");
    out.push_back(n);
    pos = comma + 1;
  }
  return out;
}

// How the DiT runs its self-attention projections (VMLA_FUSED_PROJECTIONS, for A/B runs).
const char* projections_name(const Model& m) { return m.dit().fused_projections() ? "fused" : "separate"; }

// Whether passes are recorded and replayed as CUDA graphs (VMLA_CUDA_GRAPHS, for A/B runs).
const char* graphs_name(const Backend& be) { return be.pass_graphs_enabled() ? "on" : "off"; }

// The stream line of both bench modes: frame and chunk shape, windows, and how the passes run.
void print_stream_line(const ModelConfig& cfg, int sink, int window, int passes, const char* path, const Model& model,
                       const Backend& be) {
  std::printf("stream            %dx%d, %d tokens/frame, chunk %d latent frames (%d video frames), sink %d + window %d, %d passes/chunk, attention %s, projections %s, graphs %s\n",
              cfg.width, cfg.height, cfg.tokens_per_frame(), cfg.chunk_frames, cfg.frames_per_chunk(), sink, window,
              passes, path, projections_name(model), graphs_name(be));
}

// Run-time choices of the backend (CUDA: the GEMM algorithm tuning), one line, if it reports any.
void print_diagnostics(const Backend& be) {
  const std::string d = be.diagnostics();
  if (!d.empty()) std::printf("%s\n", d.c_str());
}

std::string gb_text(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g GB", bytes / 1e9);
  return buf;
}

// --streams: N sessions on one model, one chunk of one stream at a time.
int bench_streams(const Args& a, const ModelConfig& cfg, const std::shared_ptr<Backend>& be,
                  const std::shared_ptr<Model>& model, double load_s, const SessionOptions& so) {
  const std::vector<int> counts = parse_stream_counts(*a.get("streams"));
  const double budget = a.get_double("memory-gb", 80) * 1e9;
  if (!(budget > 0)) throw UsageError("--memory-gb must be > 0");
  const int rounds = a.get_int("chunks", 1), warmup = a.get_int("warmup", -1);
  if (rounds < 1 || warmup < -1) throw UsageError("--chunks must be >= 1 and --warmup >= 0");
  const bool share = !a.flag("no-share");

  std::vector<StreamSweepResult> results;
  for (int n : counts) {
    StreamSweepOptions o;
    o.session = so;
    o.streams = n;
    o.warmup = warmup;
    o.rounds = rounds;
    o.share_workspace = share;
    results.push_back(run_stream_sweep(model, o));
  }
  const StreamSweepResult& last = results.back();
  size_t shared = 0;  // the largest measured (a later sweep may find the device's pools already grown)
  for (const auto& r : results) shared = std::max(shared, r.shared_bytes());
  const int64_t fit = streams_that_fit(budget, shared, last.per_stream_bytes);
  const bool mla = cfg.attention == AttentionKind::MLA;
  const char* path = mla ? attn_path_name(last.path) : "dense";
  const int mha_values = cfg.mha_cache_values_per_token();
  const SessionMemory& ps = last.per_stream;

  std::printf("config            %s (%s, %d layers, random weights; setup %.1f s)\n", cfg.name.c_str(), mla ? "MLA" : "MHA",
              cfg.layers, load_s);
  std::printf("backend           %s: %s\n", be->name().c_str(), be->device_name().c_str());
  print_stream_line(cfg, last.sink_frames, last.window_frames, int(chunk_sigmas(cfg, so.steps).size()) + 1, path,
                    *model, *be);
  std::printf("serving           round-robin, one chunk of one stream at a time; workspace %s; %d warm-up chunk(s) per stream (%s), then %d timed round(s)\n",
              share ? "shared" : "per session", last.warmup_chunks,
              last.warmup_chunks >= last.fill_chunks ? "sink + window full" : "window NOT full: timings and arena too low", rounds);
  std::printf("cache per token   %.0f values (%.0f B) per layer; MHA layout %d values: %.0f/%d = %.4f\n",
              last.cache_values_per_token_layer, last.cache_bytes_per_token_layer, mha_values,
              last.cache_values_per_token_layer, mha_values, last.cache_values_per_token_layer / mha_values);
  std::printf("per stream        %s: cache %s (sink + window allocated), cross-attention K/V %s, decoder state %s, snapshots %s%s\n",
              human_bytes(double(last.per_stream_bytes)).c_str(), human_bytes(double(ps.cache)).c_str(),
              human_bytes(double(ps.cross_attention)).c_str(), human_bytes(double(ps.decoder_state)).c_str(),
              human_bytes(double(ps.snapshots)).c_str(),
              share ? "" : (", workspace " + human_bytes(double(ps.workspace))).c_str());
  std::printf("shared            %s: weights and tables %s, workspace %s (arena %s, staging %s), other engine %s, other device %s\n",
              human_bytes(double(shared)).c_str(), human_bytes(double(last.baseline_bytes)).c_str(),
              human_bytes(double(last.workspace_bytes)).c_str(), human_bytes(double(last.workspace_arena_bytes)).c_str(),
              human_bytes(double(last.workspace_staging_bytes)).c_str(), human_bytes(double(last.unaccounted_bytes)).c_str(),
              human_bytes(double(last.device_extra_bytes)).c_str());
  // Peak device memory: CUDA cudaMemGetInfo; on the CPU the engine's own accounting is the measure.
  std::printf("%7s %10s %10s %10s %10s %10s %12s %12s\n", "streams", "ms/chunk", "DiT ms", "ms/round", "FPS all",
              "FPS/stream", "peak engine", "peak device");
  for (const auto& r : results)
    std::printf("%7d %10.2f %10.2f %10.2f %10.2f %10.2f %12s %12s\n", r.streams, r.ms_per_chunk, r.ms_per_chunk_dit,
                r.ms_per_round, r.fps_aggregate, r.fps_per_stream, human_bytes(double(r.peak_engine_bytes)).c_str(),
                be->device() != Device::CPU && r.device_total ? human_bytes(double(r.peak_device_used)).c_str() : "-");
  std::printf("projection        floor((%s - %s shared) / %s per stream) = %lld streams in %s\n", gb_text(budget).c_str(),
              human_bytes(double(shared)).c_str(), human_bytes(double(last.per_stream_bytes)).c_str(), (long long)fit,
              gb_text(budget).c_str());
  print_diagnostics(*be);

  if (auto jf = a.get("json")) {
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& r : results)
      runs.push_back({{"streams", r.streams}, {"ms_per_chunk", r.ms_per_chunk}, {"ms_per_chunk_dit", r.ms_per_chunk_dit},
                      {"ms_per_round", r.ms_per_round}, {"fps_aggregate", r.fps_aggregate}, {"fps_per_stream", r.fps_per_stream},
                      {"peak_engine_bytes", r.peak_engine_bytes}, {"peak_device_used", r.peak_device_used},
                      {"device_used_before", r.device_used_before}, {"baseline_bytes", r.baseline_bytes},
                      {"workspace_bytes", r.workspace_bytes}, {"unaccounted_bytes", r.unaccounted_bytes},
                      {"device_extra_bytes", r.device_extra_bytes}, {"shared_bytes", r.shared_bytes()},
                      {"per_stream_bytes", r.per_stream_bytes}, {"chunk_ms", r.chunk_ms}, {"round_ms", r.round_ms}});
    nlohmann::json j = {{"config", cfg.name}, {"layers", cfg.layers}, {"backend", be->name()}, {"device", be->device_name()},
                        {"attention", path}, {"projections", projections_name(*model)}, {"cuda_graphs", be->pass_graphs_enabled()}, {"sink_frames", last.sink_frames}, {"window_frames", last.window_frames},
                        {"tokens_per_frame", cfg.tokens_per_frame()}, {"workspace_shared", share},
                        {"warmup_chunks", last.warmup_chunks}, {"timed_rounds", rounds},
                        {"cache_bytes", last.cache_in_use_bytes}, {"mha_cache_bytes", last.mha_cache_in_use_bytes},
                        {"engine_bytes", last.peak_engine_bytes}, {"device_used", last.peak_device_used},
                        {"device_total", last.device_total},
                        {"cache_values_per_token_layer", last.cache_values_per_token_layer},
                        {"cache_bytes_per_token_layer", last.cache_bytes_per_token_layer},
                        {"mha_cache_values_per_token_layer", mha_values},
                        {"per_stream", {{"total", last.per_stream_bytes}, {"cache", ps.cache}, {"cross_attention", ps.cross_attention},
                                        {"decoder_state", ps.decoder_state}, {"snapshots", ps.snapshots}, {"workspace", ps.workspace}}},
                        {"shared", {{"total", shared}, {"weights_and_tables", last.baseline_bytes}, {"workspace", last.workspace_bytes},
                                    {"workspace_arena", last.workspace_arena_bytes}, {"workspace_staging", last.workspace_staging_bytes},
                                    {"other_engine", last.unaccounted_bytes}, {"other_device", last.device_extra_bytes}}},
                        {"budget_bytes", budget}, {"projected_streams", fit}, {"runs", runs}};
    std::ofstream f(*jf);
    f << j.dump(2) << "\n";
    if (!f) throw OutputError("cannot write " + *jf);
  }

  std::string timings;
  for (const auto& r : results) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "; %d stream%s %.1f ms/chunk %.1f FPS", r.streams, r.streams == 1 ? "" : "s",
                  r.ms_per_chunk, r.fps_aggregate);
    timings += buf;
  }
  std::printf("streams %s on %s: per stream %s (cache %s, %.0f/%d of MHA per token per layer), shared %s -> %lld streams in %s%s\n",
              cfg.name.c_str(), be->name().c_str(), human_bytes(double(last.per_stream_bytes)).c_str(),
              human_bytes(double(ps.cache)).c_str(), last.cache_values_per_token_layer, mha_values,
              human_bytes(double(shared)).c_str(), (long long)fit, gb_text(budget).c_str(), timings.c_str());
  return 0;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& argv) {
  Args a(kBenchOptions, argv);
  if (a.flag("help") || a.positional().size() != 1) {
    std::printf("usage: videomla bench CONFIG [--backend cuda] [--chunks 4]\n"
                "       videomla bench CONFIG --streams 1,4,16 [--memory-gb 80] [--chunks 1]\n"
                "CONFIG: tiny, tiny-mha, wan1.3b-mha, wan1.3b-mla or a .json file. Weights are random (seeded):\n"
                "speed never depends on trained values. The last line is a one-line summary.\n"
                "With --streams, --chunks counts timed rounds (one chunk of every stream; default 1).\n\n%s",
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
  if (a.get("streams") && a.flag("no-warmup"))
    throw UsageError("--no-warmup does not go with --streams (the sweep warms every stream with untimed chunks)");
  if (a.get("streams")) return bench_streams(a, cfg, be, model, load_s, so);
  if (a.get("memory-gb") || a.flag("no-share")) throw UsageError("--memory-gb and --no-share go with --streams");
  // Start-up warm-up (issue 5), timed apart; the session reuses the workspace it grew, as the studio's do.
  WarmUpReport wr;
  if (!a.flag("no-warmup")) {
    WarmUpOptions wo;
    wo.session = so;
    wr = warm_up(model, wo);
    so.workspace = wr.workspace;  // null when it did not run
  }
  char warmup_text[64];
  if (wr.ran) std::snprintf(warmup_text, sizeof warmup_text, "warm-up %.2f s (%d chunks)", wr.seconds, wr.chunks);
  else if (a.flag("no-warmup")) std::snprintf(warmup_text, sizeof warmup_text, "no warm-up (--no-warmup)");
  else std::snprintf(warmup_text, sizeof warmup_text, "no warm-up (no gain on %s)", be->name().c_str());
  // Warm up until the window is full, so that every timed pass sees the steady-state context.
  const int ctx_frames = (so.sink_frames >= 0 ? so.sink_frames : cfg.sink_frames) +
                         (so.window_frames >= 0 ? so.window_frames : cfg.window_frames);
  const int fill = (ctx_frames + cfg.chunk_frames - 1) / cfg.chunk_frames;
  const int warmup = a.get_int("warmup", fill), timed = a.get_int("chunks", 4);
  if (timed < 1 || warmup < 0) throw UsageError("--chunks must be >= 1 and --warmup >= 0");

  std::vector<double> pass_ms, chunk_ms, decode_ms;
  double first_chunk_s = 0;
  // The first chunk's parts: session construction, prompt encoding, DiT passes, decoder.
  double first_session_ms = 0, first_prompt_ms = 0, first_dit_ms = 0, first_decode_ms = 0;
  int first_passes = 0;
  size_t cache_bytes = 0, mha_bytes = 0, cache_cap = 0;
  const auto t_session = clock::now();
  Session session(model, so);
  be->synchronize();
  first_session_ms = std::chrono::duration<double, std::milli>(clock::now() - t_session).count();
  const int passes = int(chunk_sigmas(cfg, so.steps).size()) + 1;
  SessionCallbacks cb;
  bool timing = false;
  cb.on_progress = [&](const Progress& p) {
    if (timing) pass_ms.push_back(session.metrics().ms_last_pass);
    if (p.chunk == 0) {
      first_dit_ms += session.metrics().ms_last_pass;
      ++first_passes;
    }
  };
  for (int c = 0; c < warmup + timed; ++c) {
    timing = c >= warmup;
    ChunkSpec spec{"a red ball bouncing on the beach at sunset", 7, false};
    session.extend(spec, cb);
    const Metrics& m = session.metrics();
    if (c == 0) {
      first_chunk_s = std::chrono::duration<double>(clock::now() - t_session).count();
      first_prompt_ms = m.ms_last_prompt;
      first_decode_ms = m.ms_last_decode;
    }
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
  const double first_other_ms =
      first_chunk_s * 1e3 - first_session_ms - first_prompt_ms - first_dit_ms - first_decode_ms;

  std::printf("config            %s (%s, %d layers, random weights; setup %.1f s, %s)\n", cfg.name.c_str(),
              cfg.attention == AttentionKind::MLA ? "MLA" : "MHA", cfg.layers, load_s, warmup_text);
  std::printf("backend           %s: %s\n", be->name().c_str(), be->device_name().c_str());
  print_stream_line(cfg, so.sink_frames >= 0 ? so.sink_frames : cfg.sink_frames,
                    so.window_frames >= 0 ? so.window_frames : cfg.window_frames, passes, path, *model, *be);
  std::printf("ms per pass       %.2f (median of %zu, window full)   %.2f TFLOP/s\n", med_pass, pass_ms.size(), tflops);
  std::printf("ms per chunk      %.2f DiT + %.2f decoder (median of %zu)\n", med_chunk, med_dec, chunk_ms.size());
  std::printf("frames/s          %.2f DiT only, %.2f with decoder; real time x%.2f\n", fps_dit, fps_all, fps_all / cfg.fps);
  std::printf("first chunk       %.3f s (session start to frames)\n", first_chunk_s);
  std::printf("first chunk: session %.1f ms, prompt %.1f ms, DiT %.1f ms (%d passes), decoder %.1f ms, other %.1f ms\n",
              first_session_ms, first_prompt_ms, first_dit_ms, first_passes, first_decode_ms, first_other_ms);
  std::printf("cache             %s in use, %s allocated; MHA layout would need %s (%.2fx)\n",
              human_bytes(double(cache_bytes)).c_str(), human_bytes(double(cache_cap)).c_str(),
              human_bytes(double(mha_bytes)).c_str(), cache_bytes ? double(mha_bytes) / double(cache_bytes) : 0.0);
  std::printf("memory            engine %s", human_bytes(double(mi.allocated_by_engine)).c_str());
  if (mi.device_total) std::printf(", device %s of %s", human_bytes(double(mi.device_used)).c_str(), human_bytes(double(mi.device_total)).c_str());
  std::printf("\n");
  const PassGraphs::Stats gs = session.pass_graphs();
  if (be->pass_graphs_enabled())
    std::printf("graphs            %lld passes replayed, %lld recorded, %lld updated, %lld op by op, %lld failed; %lld held%s%s\n",
                (long long)gs.replayed, (long long)gs.captured, (long long)gs.updated, (long long)gs.eager,
                (long long)gs.failed, (long long)gs.graphs, gs.failed ? "; last failure: " : "", gs.last_failure.c_str());
  print_diagnostics(*be);
  if (auto jf = a.get("json")) {
    nlohmann::json j = {{"config", cfg.name}, {"layers", cfg.layers}, {"backend", be->name()}, {"device", be->device_name()},
                        {"attention", path}, {"projections", projections_name(*model)}, {"cuda_graphs", be->pass_graphs_enabled()}, {"ms_per_pass", med_pass}, {"ms_per_chunk_dit", med_chunk},
                        {"ms_per_chunk_decoder", med_dec}, {"fps_dit", fps_dit}, {"fps_total", fps_all},
                        {"realtime_factor", fps_all / cfg.fps}, {"first_chunk_s", first_chunk_s},
                        {"first_chunk_ms", {{"session", first_session_ms}, {"prompt", first_prompt_ms},
                                            {"dit", first_dit_ms}, {"dit_passes", first_passes},
                                            {"decoder", first_decode_ms}, {"other", first_other_ms}}},
                        {"warmup_s", wr.seconds}, {"tflops", tflops},
                        {"cache_bytes", cache_bytes}, {"mha_cache_bytes", mha_bytes}, {"engine_bytes", mi.allocated_by_engine},
                        {"device_used", mi.device_used}, {"pass_ms", pass_ms}, {"chunk_ms", chunk_ms},
                        {"pass_graphs", {{"replayed", gs.replayed}, {"recorded", gs.captured}, {"updated", gs.updated},
                                         {"eager", gs.eager}, {"failed", gs.failed}, {"held", gs.graphs},
                                         {"last_failure", gs.last_failure}}}};
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
