#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/model/model.h"
#include "core/runtime/sampler.h"
#include "core/runtime/session.h"
#include "core/runtime/warm_up.h"
#ifdef VMLA_WITH_FFMPEG
#include "core/io/png_writer.h"
#include "core/io/video_writer.h"
#endif

namespace vmla::cli {

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

const std::vector<OptionSpec> kGenerateOptions = {
    {"prompt", 'p', true, "TEXT", "the prompt (required unless --prompts is given)"},
    {"prompts", 0, true, "FILE", "prompt schedule: lines 'N: prompt' switch to the prompt at chunk N ('#' comments)"},
    {"seconds", 's', true, "S", "length in seconds (rounded up to whole chunks; default 3)"},
    {"chunks", 'n', true, "N", "length in chunks (overrides --seconds)"},
    {"seed", 0, true, "N", "noise seed (default 0); chunk i uses (seed, i)"},
    {"steps", 0, true, "N", "denoising steps per chunk (default: the model's schedule)"},
    {"sink", 0, true, "FRAMES", "sink latent frames (default: the model's)"},
    {"window", 0, true, "FRAMES", "window latent frames (default: the model's)"},
    {"attn", 0, true, "PATH", "MLA attention path: auto, expanded or absorbed (default auto)"},
    {"recache", 0, false, "", "on a prompt switch, re-cache the window under the new prompt (smooth transition)"},
    {"backend", 'b', true, "NAME", "cpu, cuda or auto (default auto)"},
    {"model", 'm', true, "FILE", "model file (default: the embedded default model)"},
    {"output", 'o', true, "PATH", "output .mp4 file, or a folder for PNG frames (default out.mp4)"},
    {"png", 0, false, "", "write PNG frames into the --output folder"},
    {"crf", 0, true, "N", "H.264 quality, 0-51, lower is better (default 18)"},
    {"quiet", 'q', false, "", "no progress bar"},
    {"help", 'h', false, "", "show this help"},
};

std::vector<std::pair<int, std::string>> read_schedule(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw IoError("cannot open prompt schedule " + path);
  std::vector<std::pair<int, std::string>> out;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    auto colon = line.find(':');
    if (colon == std::string::npos)
      throw FormatError(path + ":" + std::to_string(lineno) + ": expected 'CHUNK: prompt'");
    int chunk = 0;
    try {
      chunk = std::stoi(line.substr(first, colon - first));
    } catch (const std::exception&) {
      throw FormatError(path + ":" + std::to_string(lineno) + ": '" + line.substr(first, colon - first) + "' is not a chunk number");
    }
    std::string prompt = line.substr(colon + 1);
    prompt.erase(0, prompt.find_first_not_of(" \t"));
    if (chunk < 0) throw FormatError(path + ":" + std::to_string(lineno) + ": chunk numbers start at 0");
    if (!out.empty() && chunk <= out.back().first)
      throw FormatError(path + ":" + std::to_string(lineno) + ": chunk numbers must increase");
    out.emplace_back(chunk, prompt);
  }
  if (out.empty()) throw FormatError(path + ": the prompt schedule is empty");
  if (out.front().first != 0) throw FormatError(path + ": the schedule must start at chunk 0");
  return out;
}

std::string fmt_time(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}

}  // namespace

int cmd_generate(const std::vector<std::string>& argv) {
  Args a(kGenerateOptions, argv);
  if (a.flag("help")) {
    std::printf("usage: videomla generate -p \"a red ball bouncing on the beach\" [--seconds 3] [-o out.mp4]\n\n%s",
                Args::help_text(kGenerateOptions).c_str());
    return 0;
  }
  if (!a.positional().empty()) throw UsageError("unexpected argument '" + a.positional()[0] + "'");
  std::vector<std::pair<int, std::string>> schedule;
  if (auto f = a.get("prompts")) schedule = read_schedule(*f);
  else if (auto p = a.get("prompt")) schedule.emplace_back(0, *p);
  else throw UsageError("a prompt is required (-p TEXT or --prompts FILE)");

  const std::string out = a.get_or("output", "out.mp4");
  const bool png = a.flag("png") || std::filesystem::path(out).extension() != ".mp4";
#ifndef VMLA_WITH_FFMPEG
  // Both outputs are encoded by FFmpeg's libraries: refuse before loading the model and generating.
  throw OutputError(std::string("this build has no FFmpeg (configured with -DVMLA_WITH_FFMPEG=OFF), which encodes ") +
                    "both MP4 video and PNG frames: cannot write " + (png ? "PNG frames into " : "the video ") + out +
                    ". Rebuild with the FFmpeg development libraries (libavcodec, libavformat, libswscale).");
#endif

  const std::string model_path = a.get("model") ? *a.get("model") : default_model_path();
  std::shared_ptr<Backend> be = create_backend(a.get_or("backend", "auto"));
  std::shared_ptr<Model> model = Model::load(model_path, be);
  const ModelConfig& cfg = model->config();
  if (!model->has_decoder()) throw FormatError("model " + model_path + " has no decoder: it cannot produce frames");

  int chunks = 0;
  if (a.get("chunks")) chunks = a.get_int("chunks", 1);
  else {
    const double secs = a.get_double("seconds", 3.0);
    if (!(secs > 0)) throw UsageError("--seconds must be positive");
    const double chunk_s = double(cfg.frames_per_chunk()) / cfg.fps;
    chunks = int(std::ceil(secs / chunk_s - 1e-9));
  }
  if (chunks <= 0) throw UsageError("--chunks must be at least 1");

  SessionOptions so;
  so.sink_frames = a.get_int("sink", -1);
  so.window_frames = a.get_int("window", -1);
  so.steps = a.get_int("steps", -1);
  so.attn_path = parse_attn_path(a.get_or("attn", "auto"));
  so.keep_snapshots = false;
  const uint64_t seed = a.get_u64("seed", 0);
  const bool quiet = a.flag("quiet");

  for (const auto& [c, p] : schedule) {
    Tokenized t = model->tokenizer().encode(p);
    if (!t.unknown.empty() && !quiet) {
      std::string words;
      for (const auto& w : t.unknown) words += (words.empty() ? "" : ", ") + w;
      std::fprintf(stderr, "warning: the model does not know these words of \"%s\": %s\n", p.c_str(), words.c_str());
    }
    if (!t.dropped.empty() && !quiet)
      std::fprintf(stderr, "warning: prompt \"%s\" is longer than %d words; the rest is ignored\n", p.c_str(), cfg.text_len);
  }
  if (!model->info().trained && !quiet)
    std::fprintf(stderr, "note: %s is an UNTRAINED random-weight model; frames will be noise-like patterns\n",
                 model_path.c_str());

  nlohmann::json params = {{"model", std::filesystem::path(model_path).filename().string()},
                           {"seed", seed},
                           {"chunks", chunks},
                           {"backend", be->name()},
                           {"attention_path", attn_path_name(so.attn_path)}};
  params["prompts"] = nlohmann::json::array();
  for (const auto& [c, p] : schedule) params["prompts"].push_back({{"chunk", c}, {"prompt", p}});

#ifdef VMLA_WITH_FFMPEG
  std::unique_ptr<io::Mp4Writer> mp4;
  if (png) {
    std::error_code ec;
    std::filesystem::create_directories(out, ec);
    if (ec) throw OutputError("cannot create frame folder " + out + ": " + ec.message());
  } else {
    io::VideoWriterOptions vo;
    vo.width = cfg.width;
    vo.height = cfg.height;
    vo.fps = cfg.fps;
    vo.crf = a.get_int("crf", 18);
    vo.metadata["comment"] = "generated by VideoMLA Studio";
    vo.metadata["vmla_params"] = params.dump();
    try {
      mp4 = std::make_unique<io::Mp4Writer>(out, vo);
    } catch (const IoError& e) {
      throw OutputError(e.what());
    }
  }
#endif

  std::signal(SIGINT, on_sigint);
  // On CUDA the one-time start-up costs are paid here rather than by the first chunk (an interrupt
  // only ends the warm-up early). The session keeps the workspace the warm-up grew.
  WarmUpOptions wo;
  wo.session = so;
  wo.cancel_requested = [] { return g_interrupted.load(); };
  const WarmUpReport wr = warm_up(model, wo);
  so.workspace = wr.workspace;
  if (wr.ran && !quiet) std::fprintf(stderr, "warm-up on %s: %.2f s\n", be->name().c_str(), wr.seconds);
  Session session(model, so);
  SessionCallbacks cb;
  cb.cancel_requested = [] { return g_interrupted.load(); };
  const auto t0 = std::chrono::steady_clock::now();
  const int passes_per_chunk = int(chunk_sigmas(cfg, so.steps).size()) + 1;
  int frame_no = 0;
#ifdef VMLA_WITH_FFMPEG
  cb.on_frames = [&](const FrameBatch& fb) {
    const size_t frame_bytes = size_t(fb.width) * fb.height * 3;
    for (int i = 0; i < fb.count; ++i) {
      const uint8_t* rgb = fb.rgb + size_t(i) * frame_bytes;
      try {
        if (mp4) mp4->write_rgb(rgb);
        else {
          char name[64];
          std::snprintf(name, sizeof name, "/frame_%05d.png", frame_no);
          io::write_png(out + name, fb.width, fb.height, rgb);
        }
      } catch (const IoError& e) {
        throw OutputError(e.what());
      }
      ++frame_no;
    }
  };
#endif
  auto draw = [&](int chunk, int pass) {
    if (quiet) return;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double done = double(chunk * passes_per_chunk + pass) / double(chunks * passes_per_chunk);
    const double eta = done > 0 ? el / done - el : 0;
    const int width = 30;
    std::string bar(size_t(width * done), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r[%s] chunk %d/%d  %3.0f%%  %s  ETA %s   ", bar.c_str(), std::min(chunk + 1, chunks), chunks,
                 done * 100, fmt_time(el).c_str(), fmt_time(eta).c_str());
    std::fflush(stderr);
  };
  cb.on_progress = [&](const Progress& p) { draw(p.chunk, std::min(p.pass, passes_per_chunk)); };

  bool interrupted = false;
  size_t sched = 0;
  for (int c = 0; c < chunks; ++c) {
    while (sched + 1 < schedule.size() && schedule[sched + 1].first <= c) ++sched;
    ChunkSpec spec;
    spec.prompt = schedule[sched].second;
    spec.seed = seed;
    spec.recache = a.flag("recache");
    try {
      session.extend(spec, cb);
    } catch (const Cancelled&) {
      interrupted = true;
      break;
    }
  }
  if (!quiet) std::fprintf(stderr, "\n");
#ifdef VMLA_WITH_FFMPEG
  if (mp4) {
    if (frame_no == 0) {
      mp4->abort();
      std::fprintf(stderr, "interrupted before the first chunk finished: nothing written\n");
      return 130;
    }
    try {
      mp4->finish();
    } catch (const IoError& e) {
      throw OutputError(e.what());
    }
  }
#endif
  const Metrics& m = session.metrics();
  std::printf("wrote %s: %d frames (%.2f s at %d fps), %dx%d, %d chunks, seed %llu\n", out.c_str(), frame_no,
              double(frame_no) / cfg.fps, cfg.fps, cfg.width, cfg.height, session.chunks(), (unsigned long long)seed);
  std::printf("backend %s (%s): %.1f ms per chunk, %.1f frames/s, %.2fx real time; cache %s (MHA would need %s)\n",
              be->name().c_str(), be->device_name().c_str(), m.ms_avg_chunk, 1e3 * cfg.frames_per_chunk() / m.ms_avg_chunk,
              1e3 * cfg.frames_per_chunk() / m.ms_avg_chunk / cfg.fps, human_bytes(double(m.cache_bytes)).c_str(),
              human_bytes(double(m.mha_cache_bytes)).c_str());
  if (interrupted) {
    std::fprintf(stderr, "interrupted: the %d finished chunks were written\n", session.chunks());
    return 130;
  }
  return 0;
}

}  // namespace vmla::cli
