#pragma once
// A small command-line parser: --long value, --flag, -x value; every option documented in --help.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vmla::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;   // "prompt"
  char short_name;    // 'p' or 0
  bool takes_value;
  std::string value_name;  // "TEXT"
  std::string help;
};

class Args {
 public:
  Args(std::vector<OptionSpec> specs, std::vector<std::string> argv);
  bool flag(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& def) const;
  int get_int(const std::string& name, int def) const;
  double get_double(const std::string& name, double def) const;
  uint64_t get_u64(const std::string& name, uint64_t def) const;
  const std::vector<std::string>& positional() const { return positional_; }
  static std::string help_text(const std::vector<OptionSpec>& specs);

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace vmla::cli
