#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/io/project.h"
#include "core/tensor/tensor.h"

using namespace vmla;
using namespace vmla::io;

namespace {

Project sample() {
  Project p;
  p.model_path = "/opt/models/vmla-tiny.safetensors";
  p.model_sha256 = std::string(64, 'a');
  p.model_name = "vmla-tiny";
  p.settings.steps = 3;
  p.settings.window_frames = 4;
  p.settings.attn_path = "absorbed";
  p.seed_mode = "fixed";
  p.next_seed = 18446744073709551615ull;  // seeds are full 64-bit
  p.prompt = "a red ball \"bouncing\"\nover the sea";
  p.smooth_transition = true;
  p.chunks = {{0, -1, "a red ball", 7, false, 812.5},
              {1, 0, "a red ball", 8, false, 0},
              {2, 1, "a blue cube", 9, true, 0},
              {3, 0, "a red ball", 99, false, 0}};  // a branch re-rolled at the second chunk
  p.current = 2;
  p.created = "2026-11-26T10:00:00Z";
  return p;
}

std::filesystem::path temp_dir() {
  auto d = std::filesystem::temp_directory_path() / ("vmla_project_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST(Project, JsonRoundTrip) {
  const Project p = sample();
  const Project q = project_from_json(project_to_json(p), "test");
  EXPECT_EQ(q.model_path, p.model_path);
  EXPECT_EQ(q.model_sha256, p.model_sha256);
  EXPECT_EQ(q.settings, p.settings);
  EXPECT_EQ(q.seed_mode, p.seed_mode);
  EXPECT_EQ(q.next_seed, p.next_seed);
  EXPECT_EQ(q.prompt, p.prompt);
  EXPECT_TRUE(q.smooth_transition);
  EXPECT_EQ(q.chunks, p.chunks);
  EXPECT_EQ(q.current, 2);
  EXPECT_EQ(q.created, p.created);
}

TEST(Project, PathToFollowsParents) {
  const Project p = sample();
  EXPECT_EQ(p.path_to(2), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.path_to(3), (std::vector<int>{0, 3}));
  EXPECT_TRUE(p.path_to(-1).empty());
  EXPECT_THROW(p.path_to(42), FormatError);
}

TEST(Project, MissingOptionalFieldsTakeDefaults) {
  const Project p = project_from_json(R"({"format": "videomla-project/1", "model": {"path": "m.safetensors"}})", "t");
  EXPECT_EQ(p.model_path, "m.safetensors");
  EXPECT_EQ(p.settings, ProjectSettings{});
  EXPECT_TRUE(p.chunks.empty());
  EXPECT_EQ(p.current, -1);
}

TEST(Project, ErrorsNameTheProblem) {
  auto message = [](const std::string& text) {
    try {
      project_from_json(text, "p.vmlaproj");
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(message(R"({"format": "x"})").find("not a VideoMLA project"), std::string::npos);
  EXPECT_NE(message(R"({"format": "videomla-project/1"})").find("'model'"), std::string::npos);
  const std::string bad_seed = R"({"format": "videomla-project/1", "model": {"path": "m"},
      "chunks": [{"id": 0, "prompt": "a", "seed": "seven"}]})";
  EXPECT_NE(message(bad_seed).find("chunks[0]: field 'seed' has the wrong type"), std::string::npos);
  const std::string orphan = R"({"format": "videomla-project/1", "model": {"path": "m"},
      "chunks": [{"id": 1, "parent": 5, "prompt": "a", "seed": 1}]})";
  EXPECT_NE(message(orphan).find("chunk 1 has parent 5"), std::string::npos);
  const std::string dup = R"({"format": "videomla-project/1", "model": {"path": "m"},
      "chunks": [{"id": 1, "prompt": "a", "seed": 1}, {"id": 1, "prompt": "b", "seed": 2}]})";
  EXPECT_NE(message(dup).find("appears twice"), std::string::npos);
}

TEST(Project, SaveIsAtomicAndLoadReadsItBack) {
  const auto dir = temp_dir();
  const std::string path = (dir / "a.vmlaproj").string();
  save_project(path, sample());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(load_project(path).chunks, sample().chunks);

  // A project that fails validation is not written and the old file survives.
  Project broken = sample();
  broken.current = 77;
  EXPECT_THROW(save_project(path, broken), FormatError);
  EXPECT_EQ(load_project(path).current, 2);

  EXPECT_THROW(save_project((dir / "missing-dir" / "b.vmlaproj").string(), sample()), IoError);
  EXPECT_THROW(load_project((dir / "nope.vmlaproj").string()), IoError);
  std::filesystem::remove_all(dir);
}

TEST(Project, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million.data(), million.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

  const auto dir = temp_dir();
  const auto file = dir / "m.bin";
  std::ofstream(file, std::ios::binary) << million;
  EXPECT_EQ(file_sha256(file.string()), sha256_hex(million.data(), million.size()));
  EXPECT_THROW(file_sha256((dir / "absent").string()), IoError);
  std::filesystem::remove_all(dir);
}
