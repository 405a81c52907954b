#pragma once
// The chunks of a project as a tree (a chunk's parent is the chunk before it in its video), with
// what the GUI shows: state, frames, thumbnail. A branch is the path from a first chunk to a tip.
// Every node remembers which child was last on screen (last_child), so a rewound video still knows
// its old continuation and a branch switch lands on the leaf that was last viewed.
#include <QByteArray>
#include <QImage>
#include <QString>
#include <map>
#include <vector>

#include "core/io/project.h"
#include "core/runtime/session.h"

namespace vmla::ui {

enum class ChunkState { Pending, Queued, Rendering, Done, Failed };
const char* chunk_state_name(ChunkState s);

struct ChunkNode {
  int id = -1, parent = -1;
  std::vector<int> children;
  int last_child = -1;
  vmla::ChunkSpec spec;
  ChunkState state = ChunkState::Pending;
  bool transient = false;     // queued by a command and never rendered: dropped by Stop
  bool has_snapshot = false;  // the worker keeps the engine state after this chunk
  QByteArray frames;          // [frame_count, height, width, 3]
  int frame_count = 0, width = 0, height = 0;
  QImage thumbnail;
  double ms = 0;
  double progress = 0;  // 0..1 while rendering
  QString error;

  const uint8_t* frame(int i) const {
    return reinterpret_cast<const uint8_t*>(frames.constData()) + qsizetype(i) * width * height * 3;
  }
};

class ChunkTree {
 public:
  int add(int parent, const vmla::ChunkSpec& spec, ChunkState state, bool transient);
  // Removes the node and its descendants; returns the removed ids.
  std::vector<int> remove(int id);
  void clear();

  ChunkNode* node(int id);
  const ChunkNode* node(int id) const;
  bool contains(int id) const { return nodes_.count(id) > 0; }
  bool empty() const { return nodes_.empty(); }
  size_t size() const { return nodes_.size(); }
  std::vector<int> ids() const;  // ascending: parents before children

  const std::vector<int>& children(int id) const;  // id -1: the first chunks of all videos
  std::vector<int> siblings(int id) const;         // including id, in creation order
  std::vector<int> path_to(int tip) const;         // first chunk .. tip
  int depth(int id) const;                         // 0 for a first chunk
  int leaf_of(int id) const;                       // follows last_child down to a leaf
  std::vector<int> continuation(int tip) const;    // last_child chain below tip (not including tip)
  std::vector<int> leaves() const;
  void remember(int tip);  // sets last_child along the path so that the branch through tip is recalled

  // Projects: nodes keep their ids. from_project() makes every node Pending (no frames yet).
  std::vector<vmla::io::ProjectChunk> to_project_chunks(bool (*keep)(const ChunkNode&)) const;
  void from_project_chunks(const std::vector<vmla::io::ProjectChunk>& chunks);

 private:
  std::map<int, ChunkNode> nodes_;
  std::vector<int> roots_;
  int root_last_ = -1;
  int next_id_ = 0;
};

}  // namespace vmla::ui
