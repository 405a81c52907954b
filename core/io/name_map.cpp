#include "core/io/name_map.h"

#include <algorithm>
#include <array>

namespace vmla::io {
namespace {

struct RuleSpec {
  NameRuleKind kind;
  std::string_view from;
  std::string_view to;
};

// Wrapper prefixes, in order of preference: the first one found (with Wan tensors under it) wins,
// then detection continues inside it, so `module.generator.model.` is three rules. EMA first: when a
// Self-Forcing / LongLive checkpoint holds both, the EMA weights are the ones meant for inference.
constexpr std::array<std::string_view, 9> kWrapperPrefixes = {
    "generator_ema.model", "generator.model", "generator_ema", "generator", "model.diffusion_model",
    "diffusion_model",     "model",           "module",        "_orig_mod",
};

// First segments of DiT tensors, native and diffusers; a wrapper prefix is only stripped when tensors
// like these sit under it (a text encoder's `model.encoder...` is left alone).
constexpr std::array<std::string_view, 11> kDitRoots = {
    "blocks",  "patch_embedding",    "text_embedding", "time_embedding",    "time_projection", "head",
    "img_emb", "condition_embedder", "proj_out",       "scale_shift_table", "norm_out",
};

// diffusers WanTransformer3DModel -> Wan-native (the inverse of diffusers' convert_wan_to_diffusers.py).
// Prefix rules first: they own the top-level names the substring rules would otherwise rewrite
// (top-level scale_shift_table is head.modulation, image_embedder.norm2 is img_emb.proj.4).
constexpr RuleSpec kDiffusersRules[] = {
    {NameRuleKind::ReplacePrefix, "condition_embedder.time_embedder.linear_1", "time_embedding.0"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.time_embedder.linear_2", "time_embedding.2"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.time_proj", "time_projection.1"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.text_embedder.linear_1", "text_embedding.0"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.text_embedder.linear_2", "text_embedding.2"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.image_embedder.norm1", "img_emb.proj.0"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.image_embedder.norm2", "img_emb.proj.4"},
    {NameRuleKind::ReplacePrefix, "condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"},
    {NameRuleKind::ReplacePrefix, "proj_out", "head.head"},
    {NameRuleKind::ReplacePrefix, "scale_shift_table", "head.modulation"},
    {NameRuleKind::ReplaceSubstring, "attn1", "self_attn"},
    {NameRuleKind::ReplaceSubstring, "attn2", "cross_attn"},
    {NameRuleKind::ReplaceSubstring, "to_q", "q"},
    {NameRuleKind::ReplaceSubstring, "to_k", "k"},
    {NameRuleKind::ReplaceSubstring, "to_v", "v"},
    {NameRuleKind::ReplaceSubstring, "to_out.0", "o"},
    {NameRuleKind::ReplaceSubstring, "add_k_proj", "k_img"},
    {NameRuleKind::ReplaceSubstring, "add_v_proj", "v_img"},
    {NameRuleKind::ReplaceSubstring, "norm_added_k", "norm_k_img"},
    {NameRuleKind::ReplaceSubstring, "ffn.net.0.proj", "ffn.0"},
    {NameRuleKind::ReplaceSubstring, "ffn.net.2", "ffn.2"},
    {NameRuleKind::ReplaceSubstring, "norm2", "norm3"},  // diffusers' affine cross-attn norm; its norm3 has no weights
    {NameRuleKind::ReplaceSubstring, "scale_shift_table", "modulation"},
};

// Segments that only diffusers names contain.
constexpr std::array<std::string_view, 6> kDiffusersMarkers = {
    "attn1", "attn2", "condition_embedder", "proj_out", "scale_shift_table", "ffn.net",
};

constexpr bool well_formed(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 1; i < s.size(); ++i)
    if (s[i] == '.' && s[i - 1] == '.') return false;
  return true;
}
constexpr bool table_well_formed() {
  for (const RuleSpec& r : kDiffusersRules) {
    if (!well_formed(r.from) || !well_formed(r.to) || r.from == r.to) return false;
    if (r.kind == NameRuleKind::StripPrefix) return false;
  }
  for (std::string_view p : kWrapperPrefixes)
    if (!well_formed(p)) return false;
  return true;
}
static_assert(table_well_formed(), "name rules: segments without stray dots, `from` != `to`");

bool segment_at(std::string_view name, size_t pos, std::string_view seg) {
  if (pos + seg.size() > name.size() || name.compare(pos, seg.size(), seg) != 0) return false;
  bool left = pos == 0 || name[pos - 1] == '.';
  bool right = pos + seg.size() == name.size() || name[pos + seg.size()] == '.';
  return left && right;
}

bool contains_segment(std::string_view name, std::string_view seg) {
  for (size_t pos = name.find(seg); pos != std::string_view::npos; pos = name.find(seg, pos + 1))
    if (segment_at(name, pos, seg)) return true;
  return false;
}

// True when `name` is `prefix.<rest>` with a non-empty rest.
bool under_prefix(std::string_view name, std::string_view prefix, std::string_view* rest) {
  if (name.size() <= prefix.size() + 1 || name.compare(0, prefix.size(), prefix) != 0 || name[prefix.size()] != '.')
    return false;
  *rest = name.substr(prefix.size() + 1);
  return true;
}

// Names come from untrusted files: the wrapper nesting followed is bounded (a header naming a tensor
// "model.model.model...." must not recurse a million deep).
constexpr int kMaxWrapperDepth = 4;

bool looks_like_dit(std::string_view rest, int depth = 0) {
  std::string_view first = rest.substr(0, rest.find('.'));
  if (std::find(kDitRoots.begin(), kDitRoots.end(), first) != kDitRoots.end()) return true;
  if (depth >= kMaxWrapperDepth) return false;
  std::string_view inner;
  for (std::string_view p : kWrapperPrefixes)
    if (under_prefix(rest, p, &inner) && looks_like_dit(inner, depth + 1)) return true;
  return false;
}

}  // namespace

void NameMap::add(NameRuleKind kind, std::string from, std::string to) {
  rules_.push_back(NameRule{kind, std::move(from), std::move(to)});
}

std::string NameMap::map(const std::string& name) const {
  std::string s = name;
  for (const NameRule& r : rules_) {
    switch (r.kind) {
      case NameRuleKind::StripPrefix: {
        std::string_view rest;
        if (under_prefix(s, r.from, &rest)) s = std::string(rest);
        break;
      }
      case NameRuleKind::ReplacePrefix:
        if (segment_at(s, 0, r.from)) s = r.to + s.substr(r.from.size());
        break;
      case NameRuleKind::ReplaceSubstring:
        for (size_t pos = s.find(r.from); pos != std::string::npos; pos = s.find(r.from, pos)) {
          if (segment_at(s, pos, r.from)) {
            s.replace(pos, r.from.size(), r.to);
            pos += r.to.size();
          } else {
            pos += 1;
          }
        }
        break;
    }
  }
  return s;
}

std::vector<std::pair<std::string, std::string>> NameMap::rules() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(rules_.size());
  for (const NameRule& r : rules_) {
    switch (r.kind) {
      case NameRuleKind::StripPrefix:
        out.emplace_back(r.from + ".*", "*");
        break;
      case NameRuleKind::ReplacePrefix:
        out.emplace_back(r.from + "*", r.to + "*");
        break;
      case NameRuleKind::ReplaceSubstring:
        out.emplace_back("*" + r.from + "*", "*" + r.to + "*");
        break;
    }
  }
  return out;
}

NameMap NameMap::detect(const std::vector<std::string>& names) {
  NameMap m;
  std::string label;

  // Descend through wrapper prefixes, keeping only the chosen subtree each time, so a file holding
  // both generator.model.* and generator_ema.model.* strips one of them, never both into one name.
  std::vector<std::string_view> work(names.begin(), names.end());
  for (int depth = 0; depth < kMaxWrapperDepth; ++depth) {
    std::string_view chosen;
    for (std::string_view p : kWrapperPrefixes) {
      std::string_view rest;
      bool hit = std::any_of(work.begin(), work.end(),
                             [&](std::string_view n) { return under_prefix(n, p, &rest) && looks_like_dit(rest); });
      if (hit) {
        chosen = p;
        break;
      }
    }
    if (chosen.empty()) break;
    m.add(NameRuleKind::StripPrefix, std::string(chosen));
    label += std::string(chosen) + ". + ";
    std::vector<std::string_view> next;
    for (std::string_view n : work) {
      std::string_view rest;
      if (under_prefix(n, chosen, &rest)) next.push_back(rest);
    }
    work = std::move(next);
  }

  bool diffusers = std::any_of(work.begin(), work.end(), [](std::string_view n) {
    return std::any_of(kDiffusersMarkers.begin(), kDiffusersMarkers.end(),
                       [&](std::string_view marker) { return contains_segment(n, marker); });
  });
  if (diffusers)
    for (const RuleSpec& r : kDiffusersRules) m.add(r.kind, std::string(r.from), std::string(r.to));
  m.convention_ = label + (diffusers ? "diffusers" : "wan-native");
  return m;
}

}  // namespace vmla::io
