#include "core/io/project.h"

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/tensor/tensor.h"

namespace vmla::io {

using nlohmann::json;

const ProjectChunk* Project::find(int id) const {
  for (const auto& c : chunks)
    if (c.id == id) return &c;
  return nullptr;
}

std::vector<int> Project::path_to(int tip) const {
  std::vector<int> path;
  for (int id = tip; id != -1;) {
    const ProjectChunk* c = find(id);
    if (!c) throw FormatError("project: chunk " + std::to_string(id) + " is referenced but does not exist");
    if (path.size() > chunks.size()) throw FormatError("project: the chunk tree has a cycle at chunk " + std::to_string(id));
    path.push_back(id);
    id = c->parent;
  }
  return {path.rbegin(), path.rend()};
}

void Project::validate(const std::string& origin) const {
  std::set<int> seen;
  for (const auto& c : chunks) {
    if (c.id < 0) throw FormatError(origin + ": chunk id " + std::to_string(c.id) + " is negative");
    if (!seen.insert(c.id).second) throw FormatError(origin + ": chunk id " + std::to_string(c.id) + " appears twice");
    if (c.parent != -1 && !seen.count(c.parent))
      throw FormatError(origin + ": chunk " + std::to_string(c.id) + " has parent " + std::to_string(c.parent) +
                        ", which is not listed before it");
  }
  if (current != -1 && !seen.count(current))
    throw FormatError(origin + ": current chunk " + std::to_string(current) + " does not exist");
  if (seed_mode != "fixed" && seed_mode != "random" && seed_mode != "increment")
    throw FormatError(origin + ": seed_mode '" + seed_mode + "' is not fixed, random or increment");
}

std::string project_to_json(const Project& p) {
  json chunks = json::array();
  for (const auto& c : p.chunks)
    chunks.push_back({{"id", c.id}, {"parent", c.parent}, {"prompt", c.prompt}, {"seed", c.seed},
                      {"recache", c.recache}, {"ms", c.ms}});
  const auto& s = p.settings;
  json j = {
      {"format", kProjectFormat},
      {"model", {{"path", p.model_path}, {"sha256", p.model_sha256}, {"name", p.model_name}}},
      {"settings",
       {{"steps", s.steps}, {"sink_frames", s.sink_frames}, {"window_frames", s.window_frames},
        {"attn_path", s.attn_path}, {"backend", s.backend}, {"decode", s.decode}}},
      {"seed", {{"mode", p.seed_mode}, {"next", p.next_seed}}},
      {"prompt", p.prompt},
      {"smooth_transition", p.smooth_transition},
      {"chunks", chunks},
      {"current", p.current},
      {"created", p.created},
      {"modified", p.modified},
  };
  return j.dump(2) + "\n";
}

namespace {

// Reads j[key] as T, with a message naming the field when it is missing or of the wrong type.
template <class T>
T field(const json& j, const char* key, const std::string& where, const T* fallback = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw FormatError(where + ": missing field '" + key + "'");
  }
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw FormatError(where + ": field '" + key + "' has the wrong type (" + it->type_name() + ")");
  }
}

template <class T>
T opt(const json& j, const char* key, const std::string& where, T fallback) {
  return field<T>(j, key, where, &fallback);
}

}  // namespace

Project project_from_json(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw FormatError(origin + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw FormatError(origin + ": not a project (the top level is not an object)");
  const auto format = opt<std::string>(j, "format", origin, "");
  if (format != kProjectFormat)
    throw FormatError(origin + ": not a VideoMLA project (format '" + format + "', expected '" + kProjectFormat + "')");

  Project p;
  auto mit = j.find("model");
  if (mit == j.end() || !mit->is_object()) throw FormatError(origin + ": missing field 'model'");
  const json& m = *mit;
  p.model_path = field<std::string>(m, "path", origin + " model");
  p.model_sha256 = opt<std::string>(m, "sha256", origin + " model", "");
  p.model_name = opt<std::string>(m, "name", origin + " model", "");

  if (auto it = j.find("settings"); it != j.end()) {
    const std::string w = origin + " settings";
    ProjectSettings d;
    p.settings.steps = opt(*it, "steps", w, d.steps);
    p.settings.sink_frames = opt(*it, "sink_frames", w, d.sink_frames);
    p.settings.window_frames = opt(*it, "window_frames", w, d.window_frames);
    p.settings.attn_path = opt(*it, "attn_path", w, d.attn_path);
    p.settings.backend = opt(*it, "backend", w, d.backend);
    p.settings.decode = opt(*it, "decode", w, d.decode);
  }
  if (auto it = j.find("seed"); it != j.end()) {
    p.seed_mode = opt<std::string>(*it, "mode", origin + " seed", p.seed_mode);
    p.next_seed = opt<uint64_t>(*it, "next", origin + " seed", 0);
  }
  p.prompt = opt<std::string>(j, "prompt", origin, "");
  p.smooth_transition = opt(j, "smooth_transition", origin, false);
  p.current = opt(j, "current", origin, -1);
  p.created = opt<std::string>(j, "created", origin, "");
  p.modified = opt<std::string>(j, "modified", origin, "");
  if (auto it = j.find("chunks"); it != j.end()) {
    if (!it->is_array()) throw FormatError(origin + ": field 'chunks' is not an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& c = (*it)[i];
      const std::string w = origin + " chunks[" + std::to_string(i) + "]";
      ProjectChunk pc;
      pc.id = field<int>(c, "id", w);
      pc.parent = opt(c, "parent", w, -1);
      pc.prompt = field<std::string>(c, "prompt", w);
      pc.seed = field<uint64_t>(c, "seed", w);
      pc.recache = opt(c, "recache", w, false);
      pc.ms = opt(c, "ms", w, 0.0);
      p.chunks.push_back(std::move(pc));
    }
  }
  p.validate(origin);
  return p;
}

void save_project(const std::string& path, const Project& p) {
  p.validate(path);
  const std::string text = project_to_json(p);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw IoError("cannot write project " + tmp + ": " + std::strerror(errno));
    f.write(text.data(), std::streamsize(text.size()));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      throw IoError("cannot write project " + tmp + ": " + std::strerror(errno));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw IoError("cannot save project " + path + ": " + ec.message());
  }
}

Project load_project(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open project " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return project_from_json(ss.str(), path);
}

// ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------

namespace {

class Sha256 {
 public:
  void update(const uint8_t* p, size_t n) {
    total_ += n;
    while (n) {
      const size_t take = std::min(n, size_t(64) - fill_);
      std::memcpy(buf_.data() + fill_, p, take);
      fill_ += take, p += take, n -= take;
      if (fill_ == 64) block(buf_.data()), fill_ = 0;
    }
  }

  std::string hex() {
    const uint64_t bits = total_ * 8;
    const uint8_t pad = 0x80;
    update(&pad, 1);
    const uint8_t zero = 0;
    while (fill_ != 56) update(&zero, 1);
    std::array<uint8_t, 8> len{};
    for (int i = 0; i < 8; ++i) len[size_t(i)] = uint8_t(bits >> (56 - 8 * i));
    update(len.data(), 8);
    std::string out;
    char hexd[3];
    for (uint32_t v : h_)
      for (int s = 24; s >= 0; s -= 8) std::snprintf(hexd, sizeof hexd, "%02x", (v >> s) & 0xff), out += hexd;
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void block(const uint8_t* p) {
    static constexpr uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }

  std::array<uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<uint8_t, 64> buf_{};
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

}  // namespace

std::string sha256_hex(const void* data, size_t bytes) {
  Sha256 h;
  h.update(static_cast<const uint8_t*>(data), bytes);
  return h.hex();
}

std::string file_sha256(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot read " + path + ": " + std::strerror(errno));
  Sha256 h;
  std::vector<uint8_t> buf(size_t(1) << 20);
  while (f) {
    f.read(reinterpret_cast<char*>(buf.data()), std::streamsize(buf.size()));
    h.update(buf.data(), size_t(f.gcount()));
  }
  if (f.bad()) throw IoError("cannot read " + path + ": read error");
  return h.hex();
}

}  // namespace vmla::io
