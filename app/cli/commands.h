#pragma once
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/tensor/tensor.h"

namespace vmla::cli {

// An output (video, frames, model file) could not be written: exit code 5.
struct OutputError : Error {
  using Error::Error;
};

int cmd_generate(const std::vector<std::string>& args);
int cmd_info(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_init(const std::vector<std::string>& args);
int cmd_convert(const std::vector<std::string>& args);

// A configuration by name (tiny, wan1.3b-mla, ...) from resources/configs, or a .json path.
ModelConfig config_by_name(const std::string& name);

// "1.5 MiB"
std::string human_bytes(double bytes);

}  // namespace vmla::cli
