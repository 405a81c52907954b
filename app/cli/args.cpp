#include "app/cli/args.h"

#include <sstream>

namespace vmla::cli {

Args::Args(std::vector<OptionSpec> specs, std::vector<std::string> argv) {
  auto find_long = [&](const std::string& n) -> const OptionSpec* {
    for (const auto& s : specs)
      if (s.name == n) return &s;
    return nullptr;
  };
  auto find_short = [&](char c) -> const OptionSpec* {
    for (const auto& s : specs)
      if (s.short_name == c) return &s;
    return nullptr;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    const OptionSpec* spec = nullptr;
    std::string value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      spec = find_long(name);
      if (!spec) throw UsageError("unknown option --" + name);
    } else if (a.size() == 2 && a[0] == '-' && a[1] != '-') {
      spec = find_short(a[1]);
      if (!spec) throw UsageError(std::string("unknown option -") + a[1]);
    } else {
      positional_.push_back(a);
      continue;
    }
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argv.size()) throw UsageError("option --" + spec->name + " needs a value (" + spec->value_name + ")");
        value = argv[++i];
      }
      values_[spec->name] = value;
    } else {
      if (inline_value) throw UsageError("option --" + spec->name + " takes no value");
      values_[spec->name] = "1";
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& def) const { return get(name).value_or(def); }

int Args::get_int(const std::string& name, int def) const {
  auto v = get(name);
  if (!v) return def;
  try {
    size_t pos = 0;
    int r = std::stoi(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing");
    return r;
  } catch (const std::exception&) {
    throw UsageError("option --" + name + " expects an integer, got '" + *v + "'");
  }
}

double Args::get_double(const std::string& name, double def) const {
  auto v = get(name);
  if (!v) return def;
  try {
    size_t pos = 0;
    double r = std::stod(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing");
    return r;
  } catch (const std::exception&) {
    throw UsageError("option --" + name + " expects a number, got '" + *v + "'");
  }
}

uint64_t Args::get_u64(const std::string& name, uint64_t def) const {
  auto v = get(name);
  if (!v) return def;
  try {
    size_t pos = 0;
    unsigned long long r = std::stoull(*v, &pos);
    if (pos != v->size() || (!v->empty() && (*v)[0] == '-')) throw std::invalid_argument("bad");
    return r;
  } catch (const std::exception&) {
    throw UsageError("option --" + name + " expects a non-negative integer, got '" + *v + "'");
  }
}

std::string Args::help_text(const std::vector<OptionSpec>& specs) {
  std::ostringstream s;
  for (const auto& o : specs) {
    std::string left = "  ";
    left += o.short_name ? std::string("-") + o.short_name + ", " : "    ";
    left += "--" + o.name;
    if (o.takes_value) left += " " + o.value_name;
    if (left.size() < 30) left.resize(30, ' ');
    else left += "\n" + std::string(30, ' ');
    s << left << o.help << "\n";
  }
  return s.str();
}

}  // namespace vmla::cli
