#include "ui/chunk_tree.h"

#include <algorithm>

namespace vmla::ui {

const char* chunk_state_name(ChunkState s) {
  switch (s) {
    case ChunkState::Pending: return "not rendered";
    case ChunkState::Queued: return "queued";
    case ChunkState::Rendering: return "rendering";
    case ChunkState::Done: return "done";
    case ChunkState::Failed: return "failed";
  }
  return "?";
}

int ChunkTree::add(int parent, const vmla::ChunkSpec& spec, ChunkState state, bool transient) {
  ChunkNode n;
  n.id = next_id_++;
  n.parent = parent;
  n.spec = spec;
  n.state = state;
  n.transient = transient;
  if (parent == -1) {
    roots_.push_back(n.id);
    root_last_ = n.id;
  } else {
    ChunkNode& p = nodes_.at(parent);
    p.children.push_back(n.id);
    p.last_child = n.id;
  }
  const int id = n.id;
  nodes_.emplace(id, std::move(n));
  return id;
}

std::vector<int> ChunkTree::remove(int id) {
  std::vector<int> removed;
  if (!contains(id)) return removed;
  std::vector<int> stack{id};
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    removed.push_back(n);
    for (int c : nodes_.at(n).children) stack.push_back(c);
  }
  const int parent = nodes_.at(id).parent;
  auto& list = parent == -1 ? roots_ : nodes_.at(parent).children;
  list.erase(std::remove(list.begin(), list.end(), id), list.end());
  int& last = parent == -1 ? root_last_ : nodes_.at(parent).last_child;
  if (last == id) last = list.empty() ? -1 : list.back();
  for (int n : removed) nodes_.erase(n);
  return removed;
}

void ChunkTree::clear() {
  nodes_.clear();
  roots_.clear();
  root_last_ = -1;
}

ChunkNode* ChunkTree::node(int id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

const ChunkNode* ChunkTree::node(int id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::vector<int> ChunkTree::ids() const {
  std::vector<int> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

const std::vector<int>& ChunkTree::children(int id) const {
  return id == -1 ? roots_ : nodes_.at(id).children;
}

std::vector<int> ChunkTree::siblings(int id) const {
  const ChunkNode* n = node(id);
  return n ? children(n->parent) : std::vector<int>{};
}

std::vector<int> ChunkTree::path_to(int tip) const {
  std::vector<int> path;
  for (const ChunkNode* n = node(tip); n; n = node(n->parent)) path.push_back(n->id);
  std::reverse(path.begin(), path.end());
  return path;
}

int ChunkTree::depth(int id) const { return int(path_to(id).size()) - 1; }

int ChunkTree::leaf_of(int id) const {
  const ChunkNode* n = node(id);
  while (n && n->last_child != -1) n = node(n->last_child);
  return n ? n->id : -1;
}

std::vector<int> ChunkTree::continuation(int tip) const {
  std::vector<int> out;
  int next = tip == -1 ? root_last_ : node(tip) ? node(tip)->last_child : -1;
  while (const ChunkNode* n = node(next)) {
    out.push_back(n->id);
    next = n->last_child;
  }
  return out;
}

std::vector<int> ChunkTree::leaves() const {
  std::vector<int> out;
  for (const auto& [id, n] : nodes_)
    if (n.children.empty()) out.push_back(id);
  return out;
}

void ChunkTree::remember(int tip) {
  const ChunkNode* n = node(tip);
  if (!n) return;
  int child = tip;
  for (ChunkNode* p = node(n->parent); p; p = node(p->parent)) {
    p->last_child = child;
    child = p->id;
  }
  root_last_ = child;
}

std::vector<vmla::io::ProjectChunk> ChunkTree::to_project_chunks(bool (*keep)(const ChunkNode&)) const {
  std::vector<vmla::io::ProjectChunk> out;
  std::vector<int> kept;
  for (const auto& [id, n] : nodes_) {
    // Parents come first (ids grow), so a dropped parent drops its subtree.
    if (!keep(n) || (n.parent != -1 && !std::binary_search(kept.begin(), kept.end(), n.parent))) continue;
    kept.push_back(id);
    out.push_back({n.id, n.parent, n.spec.prompt, n.spec.seed, n.spec.recache, n.ms});
  }
  return out;
}

void ChunkTree::from_project_chunks(const std::vector<vmla::io::ProjectChunk>& chunks) {
  clear();
  for (const auto& c : chunks) {
    ChunkNode n;
    n.id = c.id;
    n.parent = c.parent;
    n.spec = {c.prompt, c.seed, c.recache};
    n.ms = c.ms;
    if (c.parent == -1) {
      roots_.push_back(c.id);
      root_last_ = c.id;
    } else {
      ChunkNode& p = nodes_.at(c.parent);
      p.children.push_back(c.id);
      p.last_child = c.id;
    }
    nodes_.emplace(c.id, std::move(n));
    next_id_ = std::max(next_id_, c.id + 1);
  }
}

}  // namespace vmla::ui
