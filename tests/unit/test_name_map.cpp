// NameMap: detection of checkpoint naming conventions and the rewrite to Wan-native names.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/io/name_map.h"

using namespace vmla::io;

namespace {

// (diffusers name, Wan-native name) for every tensor of a Wan2.1 T2V DiT with `layers` blocks.
std::vector<std::pair<std::string, std::string>> wan_t2v_pairs(int layers) {
  std::vector<std::pair<std::string, std::string>> out = {
      {"patch_embedding.weight", "patch_embedding.weight"},
      {"patch_embedding.bias", "patch_embedding.bias"},
      {"condition_embedder.text_embedder.linear_1.weight", "text_embedding.0.weight"},
      {"condition_embedder.text_embedder.linear_1.bias", "text_embedding.0.bias"},
      {"condition_embedder.text_embedder.linear_2.weight", "text_embedding.2.weight"},
      {"condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias"},
      {"condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight"},
      {"condition_embedder.time_embedder.linear_1.bias", "time_embedding.0.bias"},
      {"condition_embedder.time_embedder.linear_2.weight", "time_embedding.2.weight"},
      {"condition_embedder.time_embedder.linear_2.bias", "time_embedding.2.bias"},
      {"condition_embedder.time_proj.weight", "time_projection.1.weight"},
      {"condition_embedder.time_proj.bias", "time_projection.1.bias"},
      {"scale_shift_table", "head.modulation"},
      {"proj_out.weight", "head.head.weight"},
      {"proj_out.bias", "head.head.bias"},
  };
  const std::pair<const char*, const char*> attn[] = {{"attn1", "self_attn"}, {"attn2", "cross_attn"}};
  const std::pair<const char*, const char*> proj[] = {{"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}, {"to_out.0", "o"}};
  for (int n = 0; n < layers; ++n) {
    const std::string b = "blocks." + std::to_string(n) + ".";
    out.emplace_back(b + "scale_shift_table", b + "modulation");
    for (const auto& [da, na] : attn) {
      for (const auto& [dp, np] : proj)
        for (const char* wb : {"weight", "bias"})
          out.emplace_back(b + da + "." + dp + "." + wb, b + na + "." + np + "." + wb);
      out.emplace_back(b + da + ".norm_q.weight", b + na + ".norm_q.weight");
      out.emplace_back(b + da + ".norm_k.weight", b + na + ".norm_k.weight");
    }
    for (const char* wb : {"weight", "bias"}) {
      out.emplace_back(b + "norm2." + wb, b + "norm3." + wb);
      out.emplace_back(b + "ffn.net.0.proj." + wb, b + "ffn.0." + wb);
      out.emplace_back(b + "ffn.net.2." + wb, b + "ffn.2." + wb);
    }
  }
  return out;
}

std::vector<std::string> firsts(const std::vector<std::pair<std::string, std::string>>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.first);
  return out;
}
std::vector<std::string> seconds(const std::vector<std::pair<std::string, std::string>>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.second);
  return out;
}
std::vector<std::string> prefixed(const std::string& prefix, const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const auto& n : v) out.push_back(prefix + n);
  return out;
}

void expect_maps_to(const NameMap& m, const std::vector<std::string>& from, const std::vector<std::string>& to) {
  ASSERT_EQ(from.size(), to.size());
  for (size_t i = 0; i < from.size(); ++i) EXPECT_EQ(m.map(from[i]), to[i]) << "for " << from[i];
}

}  // namespace

TEST(NameMap, NativeNamesNeedNoRules) {
  const auto native = seconds(wan_t2v_pairs(2));
  NameMap m = NameMap::detect(native);
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(m.rules().empty());
  EXPECT_EQ(m.convention(), "wan-native");
  expect_maps_to(m, native, native);
}

TEST(NameMap, VideoMlaModelFileIsLeftAlone) {
  // Our own files: MLA attention, the text encoder (whose blocks have a norm2) and the autoencoder.
  const std::vector<std::string> names = {"blocks.0.self_attn.q_down.weight",
                                          "blocks.0.self_attn.kv_norm.weight",
                                          "blocks.0.self_attn.o.bias",
                                          "text_encoder.blocks.0.norm2.weight",
                                          "text_encoder.blocks.0.attn.qkv.weight",
                                          "text_encoder.token_embedding",
                                          "decoder.stages.0.blocks.0.conv.0.weight",
                                          "decoder.conv_final.bias",
                                          "encoder.conv_out.weight",
                                          "head.head.weight",
                                          "patch_embedding.weight"};
  NameMap m = NameMap::detect(names);
  EXPECT_TRUE(m.empty());
  expect_maps_to(m, names, names);
}

TEST(NameMap, ModelPrefixIsStripped) {
  const auto native = seconds(wan_t2v_pairs(2));
  NameMap m = NameMap::detect(prefixed("model.", native));
  ASSERT_EQ(m.rules().size(), 1u);
  EXPECT_EQ(m.rules()[0], (std::pair<std::string, std::string>{"model.*", "*"}));
  EXPECT_EQ(m.convention(), "model. + wan-native");
  expect_maps_to(m, prefixed("model.", native), native);
  // Names outside the prefix are untouched; "model" alone is not a prefix.
  EXPECT_EQ(m.map("modelx.blocks.0.a"), "modelx.blocks.0.a");
  EXPECT_EQ(m.map("model"), "model");
}

TEST(NameMap, ModulePrefixAndComfyUiPrefix) {
  const auto native = seconds(wan_t2v_pairs(1));
  NameMap ddp = NameMap::detect(prefixed("module.", native));
  expect_maps_to(ddp, prefixed("module.", native), native);
  NameMap comfy = NameMap::detect(prefixed("model.diffusion_model.", native));
  ASSERT_EQ(comfy.rule_list().size(), 1u);
  EXPECT_EQ(comfy.rule_list()[0].from, "model.diffusion_model");
  expect_maps_to(comfy, prefixed("model.diffusion_model.", native), native);
}

TEST(NameMap, NonDitUnderModelPrefixIsNotStripped) {
  // A text encoder's model.* names are not a wrapped DiT.
  NameMap m = NameMap::detect({"model.encoder.layers.0.weight", "model.shared.weight"});
  EXPECT_TRUE(m.empty());
}

TEST(NameMap, SelfForcingGeneratorNesting) {
  const auto native = seconds(wan_t2v_pairs(2));
  NameMap g = NameMap::detect(prefixed("generator.model.", native));
  EXPECT_EQ(g.rules(), (std::vector<std::pair<std::string, std::string>>{{"generator.model.*", "*"}}));
  expect_maps_to(g, prefixed("generator.model.", native), native);

  NameMap ema = NameMap::detect(prefixed("generator_ema.model.", native));
  expect_maps_to(ema, prefixed("generator_ema.model.", native), native);
}

TEST(NameMap, BothGeneratorsPrefersEmaWithoutCollisions) {
  const auto native = seconds(wan_t2v_pairs(2));
  std::vector<std::string> names = prefixed("generator.model.", native);
  for (const auto& n : prefixed("generator_ema.model.", native)) names.push_back(n);
  NameMap m = NameMap::detect(names);
  ASSERT_EQ(m.rule_list().size(), 1u);
  EXPECT_EQ(m.rule_list()[0].from, "generator_ema.model");
  expect_maps_to(m, prefixed("generator_ema.model.", native), native);
  std::set<std::string> mapped;
  for (const auto& n : names) EXPECT_TRUE(mapped.insert(m.map(n)).second) << "collision at " << n;
  EXPECT_EQ(m.map("generator.model.blocks.0.modulation"), "generator.model.blocks.0.modulation");
}

TEST(NameMap, NestedWrappers) {
  const auto native = seconds(wan_t2v_pairs(1));
  const auto names = prefixed("module.generator_ema.model.", native);
  NameMap m = NameMap::detect(names);
  EXPECT_EQ(m.rules(),
            (std::vector<std::pair<std::string, std::string>>{{"module.*", "*"}, {"generator_ema.model.*", "*"}}));
  expect_maps_to(m, names, native);
}

TEST(NameMap, DiffusersToNative) {
  const auto pairs = wan_t2v_pairs(30);
  NameMap m = NameMap::detect(firsts(pairs));
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(m.convention(), "diffusers");
  expect_maps_to(m, firsts(pairs), seconds(pairs));
  // One-to-one: 825 distinct tensors stay distinct.
  std::set<std::string> mapped;
  for (const auto& p : pairs) mapped.insert(m.map(p.first));
  EXPECT_EQ(mapped.size(), pairs.size());
  EXPECT_EQ(pairs.size(), 825u);  // Wan2.1 1.3B state dict: 15 top-level + 30 * 27
}

TEST(NameMap, DiffusersUnderWrapperPrefix) {
  const auto pairs = wan_t2v_pairs(1);
  NameMap m = NameMap::detect(prefixed("model.", firsts(pairs)));
  EXPECT_EQ(m.rules().front(), (std::pair<std::string, std::string>{"model.*", "*"}));
  EXPECT_EQ(m.convention(), "model. + diffusers");
  expect_maps_to(m, prefixed("model.", firsts(pairs)), seconds(pairs));
}

TEST(NameMap, DiffusersImageToVideoExtras) {
  std::vector<std::string> names = {"blocks.0.attn2.add_k_proj.weight",
                                    "blocks.0.attn2.add_v_proj.bias",
                                    "blocks.0.attn2.norm_added_k.weight",
                                    "condition_embedder.image_embedder.norm1.weight",
                                    "condition_embedder.image_embedder.ff.net.0.proj.weight",
                                    "condition_embedder.image_embedder.ff.net.2.bias",
                                    "condition_embedder.image_embedder.norm2.bias",
                                    "condition_embedder.image_embedder.pos_embed"};
  NameMap m = NameMap::detect(names);
  expect_maps_to(m, names,
                 {"blocks.0.cross_attn.k_img.weight", "blocks.0.cross_attn.v_img.bias",
                  "blocks.0.cross_attn.norm_k_img.weight", "img_emb.proj.0.weight", "img_emb.proj.1.weight",
                  "img_emb.proj.3.bias", "img_emb.proj.4.bias", "img_emb.emb_pos"});
}

TEST(NameMap, RulesMatchWholeSegmentsOnly) {
  NameMap m = NameMap::detect(firsts(wan_t2v_pairs(1)));
  EXPECT_EQ(m.map("blocks.0.attn1.to_qkv.weight"), "blocks.0.self_attn.to_qkv.weight");
  EXPECT_EQ(m.map("blocks.0.norm20.weight"), "blocks.0.norm20.weight");
  EXPECT_EQ(m.map("blocks.0.xattn1.weight"), "blocks.0.xattn1.weight");
  EXPECT_EQ(m.map("proj_outer.weight"), "proj_outer.weight");
  EXPECT_EQ(m.map("blocks.0.attn1.to_out.1.weight"), "blocks.0.self_attn.to_out.1.weight");
}

TEST(NameMap, ManualRulesAndDisplay) {
  NameMap m;
  m.add(NameRuleKind::StripPrefix, "net");
  m.add(NameRuleKind::ReplacePrefix, "out", "head.head");
  m.add(NameRuleKind::ReplaceSubstring, "mlp", "ffn");
  EXPECT_EQ(m.map("net.out.weight"), "head.head.weight");
  EXPECT_EQ(m.map("net.blocks.3.mlp.0.mlp.bias"), "blocks.3.ffn.0.ffn.bias");
  EXPECT_EQ(m.map("blocks.out.weight"), "blocks.out.weight");  // prefix rules act at the start only
  EXPECT_EQ(m.rules(), (std::vector<std::pair<std::string, std::string>>{
                           {"net.*", "*"}, {"out*", "head.head*"}, {"*mlp*", "*ffn*"}}));
}

TEST(NameMap, HostileNamesAreBounded) {
  // Untrusted names: deep wrapper nesting is not followed without bound (no stack exhaustion).
  std::string deep;
  for (int i = 0; i < 200000; ++i) deep += "model.";
  deep += "blocks.0.modulation";
  NameMap m = NameMap::detect({deep, "", ".", "..", "model.", "model..blocks"});
  EXPECT_EQ(m.map(deep).size(), deep.size() - 6 * m.rule_list().size());
  EXPECT_LE(m.rule_list().size(), 4u);
  EXPECT_EQ(m.map(""), "");
}
