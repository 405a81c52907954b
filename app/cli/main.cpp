// videomla: the command line of VideoMLA Studio (generate, info, bench, init, convert).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/tensor/tensor.h"
#ifdef VMLA_WITH_FFMPEG
extern "C" {
#include <libavutil/log.h>
}
#endif

using namespace vmla;

namespace {

const char* kUsage =
    "usage: videomla <command> [options]\n"
    "\n"
    "commands:\n"
    "  generate   generate a video from a prompt (or a prompt schedule) to .mp4 or PNG frames\n"
    "  info       show a model file's configuration, parameters and cache sizes (MLA vs MHA)\n"
    "  bench      time random-weight configurations (tiny, wan1.3b-mha, wan1.3b-mla)\n"
    "  init       write a random-weight model file from a configuration (labelled untrained)\n"
    "  convert    convert a checkpoint (name mapping, dtype) into a VideoMLA model file\n"
    "\n"
    "`videomla <command> --help` describes each command's options.\n"
    "\n"
    "exit codes:\n"
    "  0 success, 1 runtime error, 2 usage error, 3 model or input file missing or invalid,\n"
    "  4 device error (no device, out of memory), 5 output could not be written,\n"
    "  130 interrupted (Ctrl-C; finished chunks are still written)\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
#ifdef VMLA_WITH_FFMPEG
  av_log_set_level(AV_LOG_ERROR);  // the encoder's settings dump is noise on a terminal
#endif
  std::string cmd = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::puts("videomla 0.1.0");
    return 0;
  }
  try {
    if (cmd == "generate") return cli::cmd_generate(rest);
    if (cmd == "info") return cli::cmd_info(rest);
    if (cmd == "bench") return cli::cmd_bench(rest);
    if (cmd == "init") return cli::cmd_init(rest);
    if (cmd == "convert") return cli::cmd_convert(rest);
    std::fprintf(stderr, "videomla: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "videomla %s: %s\n(see `videomla %s --help`)\n", cmd.c_str(), e.what(), cmd.c_str());
    return 2;
  } catch (const OutOfMemory& e) {
    std::fprintf(stderr, "videomla %s: out of memory: %s\n", cmd.c_str(), e.what());
    return 4;
  } catch (const DeviceError& e) {
    std::fprintf(stderr, "videomla %s: device error: %s\n", cmd.c_str(), e.what());
    return 4;
  } catch (const FormatError& e) {
    std::fprintf(stderr, "videomla %s: %s\n", cmd.c_str(), e.what());
    return 3;
  } catch (const cli::OutputError& e) {
    std::fprintf(stderr, "videomla %s: %s\n", cmd.c_str(), e.what());
    return 5;
  } catch (const IoError& e) {
    std::fprintf(stderr, "videomla %s: %s\n", cmd.c_str(), e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "videomla %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
