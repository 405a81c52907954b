#pragma once
// NameMap: rewrites checkpoint tensor names to the canonical Wan-native names (docs/MODEL.md,
// shared/reference/WAN21.md). An ordered list of rules, each applied once, in order, to every name.
//
// Rules work on whole dot-separated segments, so "to_q" never rewrites "to_qkv" and "norm2" never
// rewrites "norm20":
//   StripPrefix   "model"            model.blocks.0.ffn.0.weight -> blocks.0.ffn.0.weight
//   ReplacePrefix "proj_out" -> "head.head"   proj_out.weight -> head.head.weight
//   ReplaceSubstring "attn1" -> "self_attn"  (every occurrence) blocks.3.attn1.x -> blocks.3.self_attn.x
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmla::io {

enum class NameRuleKind : uint8_t { StripPrefix, ReplacePrefix, ReplaceSubstring };

struct NameRule {
  NameRuleKind kind = NameRuleKind::StripPrefix;
  std::string from;  // dot-separated segments, no leading or trailing dot
  std::string to;    // empty for StripPrefix
};

class NameMap {
 public:
  NameMap() = default;

  // Picks the rules for a checkpoint from its tensor names:
  //  - wrapper prefixes: `generator_ema.model.` (preferred when both EMA and non-EMA weights are
  //    present, as Self-Forcing / LongLive inference does with --use_ema), `generator.model.`,
  //    `model.diffusion_model.`, `diffusion_model.`, `model.`, `module.` (nested ones too);
  //  - diffusers WanTransformer3DModel names -> Wan-native names.
  // Wan-native and VideoMLA names give an empty map.
  static NameMap detect(const std::vector<std::string>& names);

  void add(NameRuleKind kind, std::string from, std::string to = {});

  std::string map(const std::string& name) const;
  bool empty() const { return rules_.empty(); }
  const std::vector<NameRule>& rule_list() const { return rules_; }
  // For display: ("model.*", "*"), ("proj_out*", "head.head*"), ("*attn1*", "*self_attn*").
  std::vector<std::pair<std::string, std::string>> rules() const;
  // What detect() recognised, for display: "wan-native", "diffusers", "generator_ema.model. + diffusers".
  const std::string& convention() const { return convention_; }

 private:
  std::vector<NameRule> rules_;
  std::string convention_ = "wan-native";
};

}  // namespace vmla::io
