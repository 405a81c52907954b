#pragma once
// Studio projects: everything needed to regenerate a video identically (model, settings, the chunk
// tree with prompts, seeds and branches), as JSON. Frames are not stored: they are regenerated.
//
// The chunks form a tree: a chunk's parent is the chunk before it in its video (-1: the first chunk).
// A branch is the path from a first chunk to a leaf; `current` is the tip of the branch on screen.
#include <cstdint>
#include <string>
#include <vector>

namespace vmla::io {

inline constexpr const char* kProjectFormat = "videomla-project/1";

struct ProjectSettings {
  int steps = -1;          // -1: the model's timestep list
  int sink_frames = -1;    // latent frames; -1: the model's default
  int window_frames = -1;  // latent frames; -1: the model's default
  std::string attn_path = "auto";  // auto | expanded | absorbed
  std::string backend = "auto";    // auto | cpu | cuda
  bool decode = true;              // run the decoder (preview frames)
  bool operator==(const ProjectSettings&) const = default;
};

struct ProjectChunk {
  int id = 0;
  int parent = -1;
  std::string prompt;
  uint64_t seed = 0;
  bool recache = false;  // smooth prompt transition into this chunk
  double ms = 0;         // time it took when last generated (informational)
  bool operator==(const ProjectChunk&) const = default;
};

struct Project {
  std::string model_path;    // absolute when saved by the studio
  std::string model_sha256;  // lower-case hex of the model file
  std::string model_name;    // config name, for messages
  ProjectSettings settings;
  std::string seed_mode = "increment";  // fixed | random | increment
  uint64_t next_seed = 0;
  std::string prompt;                   // the prompt editor's text
  bool smooth_transition = false;       // prompt switches: re-cache instead of a hard cut
  std::vector<ProjectChunk> chunks;     // parents before children
  int current = -1;                     // tip of the branch on screen; -1: none
  std::string created, modified;        // ISO 8601, UTC

  const ProjectChunk* find(int id) const;
  // Chunk ids from the first chunk to `tip` (empty for -1). Throws FormatError on a broken tree.
  std::vector<int> path_to(int tip) const;
  // Checks ids are unique, parents come first, `current` exists. Throws FormatError naming the chunk.
  void validate(const std::string& origin) const;
};

std::string project_to_json(const Project& p);
// Throws FormatError naming `origin` and the field that is missing or wrong.
Project project_from_json(const std::string& text, const std::string& origin);

// Writes "<path>.tmp" then renames it over <path>: a failed save leaves the old file intact.
// Throws IoError naming the path.
void save_project(const std::string& path, const Project& p);
Project load_project(const std::string& path);  // IoError / FormatError

std::string sha256_hex(const void* data, size_t bytes);
std::string file_sha256(const std::string& path);  // IoError when unreadable

}  // namespace vmla::io
