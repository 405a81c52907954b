// safetensors reader/writer: round trips, conversions, every malformed-file error, a mutation fuzz
// loop, and writer failures that must leave no temp file behind.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "core/io/name_map.h"
#include "core/io/safetensors.h"

namespace fs = std::filesystem;
using namespace vmla;
using namespace vmla::io;

namespace {

// Checks that `stmt` throws exactly `E` (or a subclass) whose message holds every part.
template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no exception thrown; expected one containing '" << *parts.begin() << "'";
  } catch (const E& e) {
    std::string m = e.what();
    for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message: " << m << "\nlacks: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type, message: " << e.what();
  }
}
#define EXPECT_ERROR(E, stmt, ...)                         \
  do {                                                     \
    SCOPED_TRACE(#stmt);                                   \
    expect_error<E>([&] { (void)(stmt); }, {__VA_ARGS__}); \
  } while (0)

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A raw file: length prefix (the header's own length unless given), header, data.
std::string raw_file(const std::string& header, const std::string& data, int64_t len = -1) {
  return le64(len < 0 ? header.size() : uint64_t(len)) + header + data;
}

class SafeTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "vmla_test_safetensors_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string put(const std::string& name, const std::string& bytes) const {
    std::string p = path(name);
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
  }
  // A file whose header is `header` with `data_bytes` zero bytes of data.
  std::string put_header(const std::string& header, size_t data_bytes) const {
    return put("m.safetensors", raw_file(header, std::string(data_bytes, '\0')));
  }
  bool leftovers() const {
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().extension() == ".tmp") return true;
    return false;
  }
  fs::path dir_;
};

struct Fixture {
  std::vector<float> f32{1.0f, -2.5f, 3.25f, 0.0f, 1e-8f, 65504.0f};
  std::vector<uint16_t> f16, bf16;
  std::vector<int32_t> i32{0, -1, 2147483647, -2147483647 - 1};
  std::vector<uint8_t> u8{0, 1, 127, 255, 7};
  std::vector<float> scalar{42.0f};
  Fixture() {
    for (float v : {0.5f, -1.0f, 65504.0f, 5.9604645e-8f}) f16.push_back(f32_to_f16(v));
    for (float v : {1.0f, -2.5f, 3.140625f, -0.0f}) bf16.push_back(f32_to_bf16(v));
  }
  std::vector<TensorData> tensors() const {
    return {
        {"blocks.0.ffn.0.weight", DType::F32, Shape{2, 3}, f32.data()},
        {"blocks.0.norm3.weight", DType::F16, Shape{4}, f16.data()},
        {"a.bf16", DType::BF16, Shape{2, 2}, bf16.data()},
        {"counts", DType::I32, Shape{4}, i32.data()},
        {"bytes", DType::U8, Shape{5}, u8.data()},  // odd size: the next tensor is unaligned
        {"scalar", DType::F32, Shape{}, scalar.data()},
        {"empty", DType::F32, Shape{0, 4}, nullptr},
        {"five.d", DType::U8, Shape{1, 1, 1, 1, 2}, u8.data()},
    };
  }
};

const std::map<std::string, std::string> kMeta = {{"format", "vmla-dit/1"},
                                                  {"config", R"({"dim": 384, "layers": 5})"},
                                                  {"description", "caf\xc3\xa9"},
                                                  {"empty", ""}};

}  // namespace

// ---------------------------------------------------------------------------------------- round trip

TEST_F(SafeTensorsTest, RoundTripAllDTypesAndMetadata) {
  Fixture fx;
  const std::string p = path("model.safetensors");
  write_safetensors(p, fx.tensors(), kMeta);
  EXPECT_FALSE(leftovers());

  SafeTensors st = SafeTensors::open(p);
  EXPECT_EQ(st.path(), p);
  EXPECT_EQ(st.file_size(), fs::file_size(p));
  EXPECT_EQ(st.metadata(), kMeta);
  EXPECT_EQ(st.meta("format").value_or(""), "vmla-dit/1");
  EXPECT_FALSE(st.meta("nope").has_value());

  std::vector<std::string> expected_names;
  for (const TensorData& t : fx.tensors()) expected_names.push_back(t.name);
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(st.names(), expected_names);

  size_t prev_end = 0;
  for (const TensorData& t : fx.tensors()) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(st.has(t.name));
    const TensorInfo& info = st.info(t.name);
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    EXPECT_EQ(info.nbytes, size_t(t.shape.numel()) * dtype_size(t.dtype));
    EXPECT_EQ(info.offset, prev_end);  // stored in the order given, back to back
    prev_end = info.offset + info.nbytes;
    if (info.nbytes) {
      EXPECT_EQ(std::memcmp(st.data(t.name), t.data, info.nbytes), 0);
    }
  }

  // Header length is a multiple of 8 and the data section starts right after it.
  std::ifstream in(p, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(8 + n + prev_end, st.file_size());
}

TEST_F(SafeTensorsTest, EmptyFileAndNoMetadata) {
  const std::string p = path("empty.safetensors");
  write_safetensors(p, {}, {});
  SafeTensors st = SafeTensors::open(p);
  EXPECT_TRUE(st.names().empty());
  EXPECT_TRUE(st.metadata().empty());
  EXPECT_EQ(st.file_size() % 8, 0u);
}

TEST_F(SafeTensorsTest, ReadF32ConvertsEveryDType) {
  Fixture fx;
  const std::string p = path("m.safetensors");
  write_safetensors(p, fx.tensors(), {});
  SafeTensors st = SafeTensors::open(p);

  EXPECT_EQ(st.read_f32("blocks.0.ffn.0.weight", Shape{2, 3}), fx.f32);
  EXPECT_EQ(st.read_f32("a.bf16"), (std::vector<float>{1.0f, -2.5f, 3.140625f, -0.0f}));
  std::vector<float> h = st.read_f32("blocks.0.norm3.weight", Shape{4});
  EXPECT_EQ(h[0], 0.5f);
  EXPECT_EQ(h[1], -1.0f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));  // smallest f16 subnormal
  EXPECT_EQ(st.read_f32("counts"), (std::vector<float>{0.0f, -1.0f, 2147483648.0f, -2147483648.0f}));
  EXPECT_EQ(st.read_f32("bytes"), (std::vector<float>{0, 1, 127, 255, 7}));
  EXPECT_EQ(st.read_f32("scalar"), std::vector<float>{42.0f});
  EXPECT_TRUE(st.read_f32("empty", Shape{0, 4}).empty());

  // F32 data stored right after a 5-byte U8 tensor sits at an odd address; reading must not care.
  std::vector<float> v = {1.5f, -7.0f};
  std::vector<uint8_t> b = {1, 2, 3};
  write_safetensors(p, {{"b", DType::U8, Shape{3}, b.data()}, {"v", DType::F32, Shape{2}, v.data()}}, {});
  SafeTensors st2 = SafeTensors::open(p);
  EXPECT_EQ(st2.info("v").offset, 3u);
  EXPECT_EQ(st2.read_f32("v"), v);

  // bf16 / f16 NaN and infinity survive.
  std::vector<uint16_t> special = {f32_to_bf16(INFINITY), f32_to_bf16(NAN)};
  std::vector<uint16_t> special16 = {f32_to_f16(-INFINITY), f32_to_f16(NAN)};
  write_safetensors(p, {{"b", DType::BF16, Shape{2}, special.data()}, {"h", DType::F16, Shape{2}, special16.data()}},
                    {});
  SafeTensors st3 = SafeTensors::open(p);
  auto rb = st3.read_f32("b");
  auto rh = st3.read_f32("h");
  EXPECT_TRUE(std::isinf(rb[0]) && rb[0] > 0);
  EXPECT_TRUE(std::isnan(rb[1]));
  EXPECT_TRUE(std::isinf(rh[0]) && rh[0] < 0);
  EXPECT_TRUE(std::isnan(rh[1]));
}

// int8 weights (docs/MODEL.md section 8): q * scale per group of G values of a row, the scale in
// F32, F16 or BF16; a missing or misshapen scale is named in the error.
TEST_F(SafeTensorsTest, ReadF32DequantizesInt8WithGroupScales) {
  const std::string p = path("q.safetensors");
  // [2, 8] in groups of 4: row 0 scales 0.5 and 2, row 1 scales 0.25 and 0.
  std::vector<int8_t> q = {1, -2, 127, -127, 3, 0, -1, 5, 4, 8, -128, 1, 9, -9, 100, -100};
  std::vector<uint16_t> scale = {f32_to_f16(0.5f), f32_to_f16(2.0f), f32_to_f16(0.25f), f32_to_f16(0.0f)};
  std::vector<float> plain = {1.0f, 2.0f};
  write_safetensors(p, {{"w", DType::I8, Shape{2, 8}, q.data()}, {"w_scale", DType::F16, Shape{2, 2}, scale.data()},
                        {"b", DType::F32, Shape{2}, plain.data()}}, {});
  SafeTensors st = SafeTensors::open(p);
  EXPECT_EQ(st.info("w").dtype, DType::I8);
  EXPECT_EQ(st.read_f32("w", Shape{2, 8}),
            (std::vector<float>{0.5f, -1.0f, 63.5f, -63.5f, 6.0f, 0.0f, -2.0f, 10.0f,  //
                                1.0f, 2.0f, -32.0f, 0.25f, 0.0f, 0.0f, 0.0f, 0.0f}));
  EXPECT_TRUE(st.is_quant_scale("w_scale"));
  EXPECT_FALSE(st.is_quant_scale("w"));
  EXPECT_FALSE(st.is_quant_scale("b"));

  // per-row scales (G = row size) in F32, on a 3-d tensor whose rows are its first dimension
  std::vector<int8_t> q3 = {1, 2, 3, 4, -1, -2, -3, -4};
  std::vector<float> s3 = {0.1f, 10.0f};
  write_safetensors(p, {{"c", DType::I8, Shape{2, 2, 2}, q3.data()}, {"c_scale", DType::F32, Shape{2, 1}, s3.data()}}, {});
  SafeTensors st3 = SafeTensors::open(p);
  std::vector<float> c = st3.read_f32("c");
  EXPECT_FLOAT_EQ(c[3], 0.4f);
  EXPECT_FLOAT_EQ(c[7], -40.0f);

  write_safetensors(p, {{"w", DType::I8, Shape{2, 8}, q.data()}}, {});
  EXPECT_ERROR(FormatError, SafeTensors::open(p).read_f32("w"),
               p + ": tensor 'w' is I8 but the file has no 'w_scale' (int8 weights need their per-group scales)");
  std::vector<uint16_t> scale6(6, f32_to_f16(1.0f));
  write_safetensors(p, {{"w", DType::I8, Shape{2, 8}, q.data()}, {"w_scale", DType::F16, Shape{2, 3}, scale6.data()}}, {});
  EXPECT_ERROR(FormatError, SafeTensors::open(p).read_f32("w"),
               "scale tensor 'w_scale' has shape [2, 3], expected [2, G] with G dividing 8");
  write_safetensors(p, {{"w", DType::I8, Shape{2, 8}, q.data()}, {"w_scale", DType::I8, Shape{2, 2}, q.data()}}, {});
  EXPECT_ERROR(FormatError, SafeTensors::open(p).read_f32("w"), "scale tensor 'w_scale' is I8, expected F32, F16 or BF16");
}

// The writer's quantizer and the reader's dequantizer are inverses up to half a step of each group's
// scale; an all-zero group gets scale 0 and values 0.
TEST_F(SafeTensorsTest, QuantizeInt8GroupsRoundTrip) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.3f);
  const int64_t rows = 5, cols = 96, group = kInt8Group;
  std::vector<float> w(size_t(rows * cols));
  for (float& x : w) x = nd(rng);
  for (int64_t j = 32; j < 64; ++j) w[size_t(2 * cols + j)] = 0.f;
  std::vector<int8_t> q(w.size());
  std::vector<uint16_t> scale(w.size() / size_t(group));
  quantize_int8_groups(w.data(), rows, cols, group, q.data(), scale.data());
  const std::string p = path("q.safetensors");
  write_safetensors(p, {{"w", DType::I8, Shape{rows, cols}, q.data()},
                        {"w_scale", DType::F16, Shape{rows, cols / group}, scale.data()}}, {});
  std::vector<float> back = SafeTensors::open(p).read_f32("w", Shape{rows, cols});
  int max_q = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const float s = f16_to_f32(scale[i / size_t(group)]);
    EXPECT_LE(std::fabs(back[i] - w[i]), 0.5f * s * 1.001f + 1e-7f) << i;
    max_q = std::max(max_q, std::abs(int(q[i])));
  }
  EXPECT_EQ(max_q, 127);
  EXPECT_EQ(scale[size_t(2 * (cols / group) + 1)], 0);
  for (int64_t j = 32; j < 64; ++j) EXPECT_EQ(back[size_t(2 * cols + j)], 0.f);
  EXPECT_TRUE(int8_candidate("blocks.3.ffn.0.weight", Shape{256, 64}));
  EXPECT_FALSE(int8_candidate("blocks.3.ffn.0.bias", Shape{256}));
  EXPECT_FALSE(int8_candidate("blocks.3.ffn.0.weight", Shape{256, 48}));
  EXPECT_FALSE(int8_candidate("decoder.0.weight", Shape{64, 64}));
}

TEST_F(SafeTensorsTest, ReadF32ChecksShape) {
  Fixture fx;
  const std::string p = path("m.safetensors");
  write_safetensors(p, fx.tensors(), {});
  SafeTensors st = SafeTensors::open(p);
  EXPECT_ERROR(FormatError, st.read_f32("blocks.0.ffn.0.weight", Shape{3, 2}),
               p + ": tensor 'blocks.0.ffn.0.weight' has shape [2, 3], expected [3, 2]");
  EXPECT_ERROR(FormatError, st.read_f32("blocks.0.ffn.0.weight", Shape{2, 3, 1}),
               "has shape [2, 3], expected [2, 3, 1]");
}

TEST_F(SafeTensorsTest, MissingTensorNamesFileAndSuggests) {
  Fixture fx;
  const std::string p = path("m.safetensors");
  write_safetensors(p, fx.tensors(), {});
  SafeTensors st = SafeTensors::open(p);
  EXPECT_FALSE(st.has("blocks.0.ffn.1.weight"));
  EXPECT_ERROR(FormatError, st.info("blocks.0.ffn.1.weight"),
               "model file " + p + " has no tensor 'blocks.0.ffn.1.weight'", "did you mean 'blocks.0.ffn.0.weight'");
  EXPECT_ERROR(FormatError, st.data("zzz"), "has no tensor 'zzz'");
  EXPECT_ERROR(FormatError, st.read_f32("blocks.7.self_attn.q.weight"), "has no tensor 'blocks.7.self_attn.q.weight'");
  // Asked without a wrapper prefix the file has: point at the prefixed name.
  std::vector<float> w(4, 1.0f);
  write_safetensors(p, {{"model.blocks.0.self_attn.q.weight", DType::F32, Shape{2, 2}, w.data()}}, {});
  SafeTensors st2 = SafeTensors::open(p);
  EXPECT_ERROR(FormatError, st2.info("blocks.0.self_attn.q.weight"),
               "did you mean 'model.blocks.0.self_attn.q.weight'");
}

TEST_F(SafeTensorsTest, MoveKeepsMappingAlive) {
  Fixture fx;
  const std::string p = path("m.safetensors");
  write_safetensors(p, fx.tensors(), kMeta);
  SafeTensors a = SafeTensors::open(p);
  SafeTensors b = std::move(a);
  EXPECT_EQ(b.read_f32("blocks.0.ffn.0.weight"), fx.f32);
  SafeTensors c = SafeTensors::open(p);
  c = std::move(b);
  EXPECT_EQ(c.read_f32("blocks.0.ffn.0.weight"), fx.f32);
  EXPECT_EQ(c.metadata(), kMeta);
  static_assert(!std::is_copy_constructible_v<SafeTensors>);
  static_assert(std::is_nothrow_move_constructible_v<SafeTensors>);
}

TEST_F(SafeTensorsTest, OverwriteWhileMappedKeepsOldView) {
  std::vector<float> v1 = {1, 2}, v2 = {3, 4, 5};
  const std::string p = path("m.safetensors");
  write_safetensors(p, {{"x", DType::F32, Shape{2}, v1.data()}}, {});
  SafeTensors old = SafeTensors::open(p);
  write_safetensors(p, {{"x", DType::F32, Shape{3}, v2.data()}}, {});  // rename: a new inode
  EXPECT_EQ(old.read_f32("x"), v1);
  EXPECT_EQ(SafeTensors::open(p).read_f32("x"), v2);
}

// ----------------------------------------------------------------------------------- malformed files

TEST_F(SafeTensorsTest, FileMissingOrNotAFile) {
  const std::string p = path("does_not_exist.safetensors");
  EXPECT_ERROR(IoError, SafeTensors::open(p), "cannot open model file " + p, "No such file or directory");
  EXPECT_ERROR(IoError, SafeTensors::open(dir_.string()), dir_.string(), "directory");
  const std::string fifo = path("pipe.safetensors");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_ERROR(IoError, SafeTensors::open(fifo), fifo, "not a regular file");  // and does not hang
}

TEST_F(SafeTensorsTest, ShorterThanEightBytes) {
  for (size_t n : {0, 1, 7}) {
    std::string p = put("short.safetensors", std::string(n, '\x01'));
    EXPECT_ERROR(FormatError, SafeTensors::open(p), p, "file is " + std::to_string(n) + " bytes", "too short");
  }
}

TEST_F(SafeTensorsTest, HeaderLengthExceedsFile) {
  std::string bytes = le64(123456) + std::string(992, ' ');
  ASSERT_EQ(bytes.size(), 1000u);
  std::string p = put("m.safetensors", bytes);
  EXPECT_ERROR(FormatError, SafeTensors::open(p), p, "header length 123456 exceeds file size 1000");
}

TEST_F(SafeTensorsTest, HeaderLengthAbsurd) {
  std::string p = put("m.safetensors", le64(200'000'000) + "{}");
  EXPECT_ERROR(FormatError, SafeTensors::open(p), p, "header length 200000000", "absurd");
  p = put("m.safetensors", le64(~0ull) + "{}");
  EXPECT_ERROR(FormatError, SafeTensors::open(p), "header length 18446744073709551615", "absurd");
}

TEST_F(SafeTensorsTest, HeaderNotJson) {
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header("{not json", 0)), "header is not valid JSON", "parse error");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header("", 0)), "not valid JSON");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header("{\"a\": \"\xff\xfe\"}", 0)), "not valid JSON");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header("{} {}", 0)), "not valid JSON");
  // Padding with spaces is fine.
  EXPECT_NO_THROW(SafeTensors::open(put_header("{}      ", 0)));
}

TEST_F(SafeTensorsTest, HeaderNotObject) {
  std::string p = put_header("[1, 2]", 0);
  EXPECT_ERROR(FormatError, SafeTensors::open(p), p, "header is a JSON array, expected an object");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header("42", 0)), "header is a JSON number");
}

TEST_F(SafeTensorsTest, EntryFieldsMissingOrWrong) {
  std::string p = put_header(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8);
  EXPECT_ERROR(FormatError, SafeTensors::open(p), p + ": tensor 'w' has no \"dtype\"");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", 8)),
               "tensor 'w' has no \"shape\"");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2]}})", 8)),
               "tensor 'w' has no \"data_offsets\"");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header(R"({"w": [1, 2]})", 0)),
               "tensor 'w': header entry is an array, expected an object");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": 3, "shape": [2], "data_offsets": [0, 8]}})", 8)),
               "tensor 'w': \"dtype\" is a number");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", 8)),
               "tensor 'w': \"shape\" is a number");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8)),
               "tensor 'w': \"data_offsets\" is [0], expected [begin, end]");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8)),
               "tensor 'w': \"data_offsets\" [-8,0] are not two non-negative integers");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", 8)),
               "are not two non-negative integers");
}

TEST_F(SafeTensorsTest, UnsupportedDType) {
  std::string p = put_header(R"({"x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8);
  EXPECT_ERROR(FormatError, SafeTensors::open(p),
               p + ": tensor 'x' has unsupported dtype F64 (supported: F32, F16, BF16, I32, U8, I8)");
  for (const char* dt : {"I64", "BOOL", "F8_E4M3", "U16", "bf16", ""})
    EXPECT_ERROR(FormatError,
                 SafeTensors::open(put_header(
                     std::string(R"({"x": {"dtype": ")") + dt + R"(", "shape": [1], "data_offsets": [0, 1]}})", 1)),
                 std::string("unsupported dtype ") + dt + " (supported:");
}

TEST_F(SafeTensorsTest, BadShapeEntries) {
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 0]}})", 0)),
               "tensor 'w' has a negative dimension -2 in its shape [2,-2]");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8)),
               "tensor 'w': shape entry 2.5 is not a non-negative integer");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})", 8)),
               "shape entry \"2\" is not a non-negative integer");
  EXPECT_ERROR(
      FormatError,
      SafeTensors::open(put_header(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1], "data_offsets": [0, 4]}})", 4)),
      "tensor 'w' has 6 dimensions; at most 5 are supported");
}

TEST_F(SafeTensorsTest, ShapeProductOverflow) {
  // 2^32 * 2^32 = 2^64 elements.
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(
                   R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0)),
               "tensor 'w': shape [4294967296, 4294967296] has more elements than fit in 64 bits");
  // Elements fit, bytes do not: 2^62 F32 values.
  EXPECT_ERROR(FormatError,
               SafeTensors::open(
                   put_header(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", 0)),
               "more elements than fit in 64 bits");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(
                   put_header(R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", 0)),
               "shape entry 18446744073709551615 is too large");
  // A zero dimension makes the product 0, whatever the other dimensions are (still < 2^63).
  EXPECT_NO_THROW(SafeTensors::open(
      put_header(R"({"w": {"dtype": "F32", "shape": [0, 9223372036854775807], "data_offsets": [0, 0]}})", 0)));
}

TEST_F(SafeTensorsTest, OffsetsEndBeforeBegin) {
  std::string p = put_header(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}})", 8);
  EXPECT_ERROR(FormatError, SafeTensors::open(p), p + ": tensor 'w': data_offsets [8, 4] end before they begin");
}

TEST_F(SafeTensorsTest, ByteLengthMismatch) {
  std::string p = put_header(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 20);
  EXPECT_ERROR(FormatError, SafeTensors::open(p),
               p + ": tensor 'w': shape [2, 3] of F32 needs 24 bytes, but data_offsets [0, 20) hold 20");
}

TEST_F(SafeTensorsTest, OffsetsBeyondDataSection) {
  std::string p = put_header(
      R"({"blocks.3.ffn.0.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [16, 80]},
          "blocks.3.ffn.0.bias": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
      40);
  EXPECT_ERROR(FormatError, SafeTensors::open(p),
               "model file " + p +
                   " truncated at tensor 'blocks.3.ffn.0.weight': expected bytes [16, 80), file data section has 40");
}

TEST_F(SafeTensorsTest, TruncatedRealFile) {
  std::vector<float> big(1 << 16, 0.5f), small(16, 1.0f);
  const std::string p = path("m.safetensors");
  write_safetensors(p,
                    {{"blocks.0.ffn.0.bias", DType::F32, Shape{16}, small.data()},
                     {"blocks.3.ffn.0.weight", DType::F32, Shape{256, 256}, big.data()}},
                    {});
  fs::resize_file(p, fs::file_size(p) - 1000);
  EXPECT_ERROR(FormatError, SafeTensors::open(p), "model file " + p + " truncated at tensor 'blocks.3.ffn.0.weight'",
               "expected bytes [64, 262208)");
}

TEST_F(SafeTensorsTest, OverlapGapAndTrailingBytes) {
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                            12)),
               "tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                            8)),
               "overlap");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
                                            20)),
               "tensor 'b' starts at data byte 12 but the previous tensor ends at 8 (gap of 4 bytes");
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 12)),
               "4 bytes after the last tensor");
  // Zero-size tensors may share an offset.
  EXPECT_NO_THROW(SafeTensors::open(put_header(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                                                   "b": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})",
                                               0)));
}

TEST_F(SafeTensorsTest, DuplicateTensorName) {
  EXPECT_ERROR(FormatError,
               SafeTensors::open(put_header(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                                "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                                            2)),
               "tensor 'a' appears twice in the header");
}

TEST_F(SafeTensorsTest, MetadataMustBeStrings) {
  std::string p = put_header(R"({"__metadata__": {"format": "vmla-dit/1", "layers": 5}})", 0);
  EXPECT_ERROR(FormatError, SafeTensors::open(p),
               p + ": __metadata__ value for 'layers' is a number, expected a string");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header(R"({"__metadata__": {"config": {"dim": 1}}})", 0)),
               "__metadata__ value for 'config' is an object");
  EXPECT_ERROR(FormatError, SafeTensors::open(put_header(R"({"__metadata__": "x"})", 0)),
               "__metadata__ is a string, expected an object of strings");
}

// ---------------------------------------------------------------------------------------------- fuzz

// Mutations of a valid file (byte flips, mostly in the header; truncations; header-length edits;
// digit swaps in the JSON): every one must load or throw vmla::Error, never crash or throw anything
// else. Run under tests/run_asan.sh this also proves no out-of-bounds read or UB.
TEST_F(SafeTensorsTest, MutationFuzz) {
  Fixture fx;
  const std::string good = path("good.safetensors");
  write_safetensors(good, fx.tensors(), kMeta);
  std::string valid;
  {
    std::ifstream in(good, std::ios::binary);
    valid.assign(std::istreambuf_iterator<char>(in), {});
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(valid[size_t(i)]);
  const size_t header_end = size_t(8 + hlen);

  std::mt19937_64 rng(20261126);
  auto pick = [&](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi - 1)(rng); };
  int loaded = 0, rejected = 0;
  const std::string p = path("fuzz.safetensors");
  for (int iter = 0; iter < 2000; ++iter) {
    std::string m = valid;
    switch (iter % 6) {
      case 0:
      case 1: {  // 1-3 random bytes anywhere in the header (incl. the length)
        for (size_t k = pick(1, 4); k > 0; --k) m[pick(0, header_end)] = char(pick(0, 256));
        break;
      }
      case 2: {  // flip one bit anywhere
        m[pick(0, m.size())] ^= char(1 << pick(0, 8));
        break;
      }
      case 3: {  // truncate
        m.resize(pick(0, m.size()));
        break;
      }
      case 4: {  // change a digit in the JSON (offsets, shapes)
        std::vector<size_t> digits;
        for (size_t i = 8; i < header_end; ++i)
          if (m[i] >= '0' && m[i] <= '9') digits.push_back(i);
        m[digits[pick(0, digits.size())]] = char('0' + pick(0, 10));
        break;
      }
      case 5: {  // header length off by a little or a lot, or bytes inserted / erased in the header
        uint64_t n = hlen;
        switch (pick(0, 4)) {
          case 0:
            n += pick(1, 64);
            break;
          case 1:
            n -= pick(1, 64);
            break;
          case 2:
            n = rng();
            break;
          default:
            if (pick(0, 2))
              m.insert(pick(8, header_end), 1, char(pick(0, 256)));
            else
              m.erase(pick(8, header_end), 1);
        }
        m.replace(0, 8, le64(n));
        break;
      }
    }
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(m.data(), std::streamsize(m.size()));
    try {
      SafeTensors st = SafeTensors::open(p);
      st.apply_name_map(NameMap::detect(st.names()));
      for (const std::string& n : st.names()) {
        const TensorInfo& info = st.info(n);
        std::vector<float> v = st.read_f32(n);
        ASSERT_EQ(v.size(), size_t(info.shape.numel()));
        const unsigned char* d = static_cast<const unsigned char*>(st.data(n));
        volatile unsigned sum = 0;
        for (size_t i = 0; i < info.nbytes; ++i) sum = sum + d[i];
      }
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << iter << " threw a non-vmla exception: " << e.what();
    }
  }
  std::printf("mutations: %d loaded, %d rejected with vmla::Error\n", loaded, rejected);
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 1000);
}

// -------------------------------------------------------------------------------------------- writer

TEST_F(SafeTensorsTest, WriterMissingDirectory) {
  std::vector<float> v = {1, 2};
  const std::string p = path("no/such/dir/m.safetensors");
  EXPECT_ERROR(IoError, write_safetensors(p, {{"x", DType::F32, Shape{2}, v.data()}}, {}),
               "cannot write model file " + p, "No such file or directory");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(SafeTensorsTest, WriterRenameFailureRemovesTemp) {
  // The target is a non-empty directory: the temp file is written, the rename fails.
  const std::string p = path("occupied");
  fs::create_directory(p);
  put("occupied/keep", "x");
  std::vector<float> v = {1, 2};
  EXPECT_ERROR(IoError, write_safetensors(p, {{"x", DType::F32, Shape{2}, v.data()}}, {}),
               "cannot write model file " + p, "rename");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_FALSE(leftovers());
  EXPECT_TRUE(fs::is_directory(p));
}

TEST_F(SafeTensorsTest, WriterWriteFailureRemovesTempAndKeepsOldFile) {
  std::vector<float> old = {1, 2, 3};
  const std::string p = path("m.safetensors");
  write_safetensors(p, {{"x", DType::F32, Shape{3}, old.data()}}, {});

  // A file size limit makes write() fail with EFBIG partway through the data.
  std::vector<float> big(1 << 18, 2.0f);
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto prev_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = saved;
  lim.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    write_safetensors(p, {{"x", DType::F32, Shape{1 << 18}, big.data()}}, {});
  } catch (const IoError& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, prev_handler);

  EXPECT_NE(msg.find("cannot write model file " + p), std::string::npos) << msg;
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_EQ(SafeTensors::open(p).read_f32("x"), old);
}

TEST_F(SafeTensorsTest, WriterRejectsBadInputBeforeCreatingFiles) {
  std::vector<float> v = {1, 2};
  const std::string p = path("m.safetensors");
  EXPECT_ERROR(FormatError,
               write_safetensors(p, {{"x", DType::F32, Shape{2}, v.data()}, {"x", DType::F32, Shape{2}, v.data()}}, {}),
               "tensor 'x' is given twice");
  EXPECT_ERROR(FormatError, write_safetensors(p, {{"", DType::F32, Shape{2}, v.data()}}, {}), "empty name");
  EXPECT_ERROR(FormatError, write_safetensors(p, {{"__metadata__", DType::F32, Shape{2}, v.data()}}, {}), "reserved");
  EXPECT_ERROR(FormatError, write_safetensors(p, {{"x", DType::F32, Shape{2, -1}, v.data()}}, {}),
               "negative dimension");
  EXPECT_ERROR(FormatError, write_safetensors(p, {{"x", DType::F32, Shape{2}, nullptr}}, {}), "tensor 'x' has no data");
  EXPECT_ERROR(FormatError, write_safetensors(p, {{"bad\xff", DType::F32, Shape{2}, v.data()}}, {}), "UTF-8");
  EXPECT_ERROR(IoError, write_safetensors("", {}, {}), "empty");
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(leftovers());
}

// ------------------------------------------------------------------------------------------ name map

TEST_F(SafeTensorsTest, ApplyNameMapAnswersToCanonicalNames) {
  std::vector<float> q(4, 1.0f), mod(6, 2.0f), head(2, 3.0f);
  const std::string p = path("diffusers.safetensors");
  write_safetensors(p,
                    {{"blocks.0.attn1.to_q.weight", DType::F32, Shape{2, 2}, q.data()},
                     {"blocks.0.scale_shift_table", DType::F32, Shape{1, 6, 1}, mod.data()},
                     {"scale_shift_table", DType::F32, Shape{1, 2, 1}, head.data()}},
                    {});
  SafeTensors st = SafeTensors::open(p);
  NameMap map = NameMap::detect(st.names());
  st.apply_name_map(map);
  EXPECT_EQ(st.names(),
            (std::vector<std::string>{"blocks.0.modulation", "blocks.0.self_attn.q.weight", "head.modulation"}));
  EXPECT_EQ(st.read_f32("blocks.0.self_attn.q.weight", Shape{2, 2}), q);
  EXPECT_EQ(st.read_f32("head.modulation"), head);
  EXPECT_EQ(st.info("blocks.0.modulation").name, "blocks.0.scale_shift_table");  // stored name kept for messages
  EXPECT_TRUE(st.has("blocks.0.attn1.to_q.weight"));                             // stored names still answer
  EXPECT_EQ(st.data("blocks.0.modulation"), st.data("blocks.0.scale_shift_table"));
  EXPECT_ERROR(FormatError, st.info("blocks.0.self_attn.k.weight"), "did you mean 'blocks.0.self_attn.q.weight'");
}

TEST_F(SafeTensorsTest, ApplyNameMapRejectsCollisions) {
  std::vector<float> a(2, 1.0f);
  const std::string p = path("m.safetensors");
  write_safetensors(p,
                    {{"model.blocks.0.norm3.weight", DType::F32, Shape{2}, a.data()},
                     {"blocks.0.norm3.weight", DType::F32, Shape{2}, a.data()}},
                    {});
  SafeTensors st = SafeTensors::open(p);
  EXPECT_ERROR(FormatError, st.apply_name_map(NameMap::detect(st.names())), p,
               "the name map (model. + wan-native) gives tensors", "'model.blocks.0.norm3.weight'",
               "the same name 'blocks.0.norm3.weight'");
}
