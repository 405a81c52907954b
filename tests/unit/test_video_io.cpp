// MP4/PNG export and probing through FFmpeg (core/io/video_writer, png_writer, video_probe).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/io/png_writer.h"
#include "core/io/video_probe.h"
#include "core/io/video_writer.h"
#include "core/tensor/tensor.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
}

namespace fs = std::filesystem;
using vmla::io::Mp4Writer;
using vmla::io::VideoWriterOptions;

namespace {

class VideoIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    av_log_set_level(AV_LOG_ERROR);  // x264 prints its settings at INFO level
    std::string tmpl = (fs::temp_directory_path() / "vmla_video_io_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> dir_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    return names;
  }
  fs::path dir_;
};

VideoWriterOptions opts(int w = 128, int h = 128, int fps = 24) {
  VideoWriterOptions o;
  o.width = w;
  o.height = h;
  o.fps = fps;
  return o;
}

// A coloured gradient with a white square moving one step per frame.
std::vector<uint8_t> pattern(int w, int h, int t) {
  std::vector<uint8_t> img(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img[(size_t(y) * size_t(w) + size_t(x)) * 3];
      p[0] = uint8_t((x * 2 + t * 4) & 255);
      p[1] = uint8_t((y * 2) & 255);
      p[2] = uint8_t((x + y + t * 8) & 255);
      const int sx = (t * 3) % (w - 16), sy = (t * 2) % (h - 16);
      if (x >= sx && x < sx + 16 && y >= sy && y < sy + 16) p[0] = p[1] = p[2] = 255;
    }
  return img;
}

std::vector<uint8_t> flat(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> img(size_t(w) * size_t(h) * 3);
  for (size_t i = 0; i < img.size(); i += 3) {
    img[i] = r;
    img[i + 1] = g;
    img[i + 2] = b;
  }
  return img;
}

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// Mean Y, Cb, Cr of the first decoded frame, read straight from the decoder (no swscale), to
// check the matrix the writer used rather than a writer/reader pair that could agree on a wrong one.
std::array<double, 3> first_frame_mean_yuv(const std::string& p) {
  AVFormatContext* fmt = nullptr;
  EXPECT_EQ(avformat_open_input(&fmt, ("file:" + p).c_str(), nullptr, nullptr), 0);
  EXPECT_GE(avformat_find_stream_info(fmt, nullptr), 0);
  const AVCodec* codec = nullptr;
  const int si = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  EXPECT_GE(si, 0);
  AVCodecContext* dec = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(dec, fmt->streams[si]->codecpar);
  EXPECT_EQ(avcodec_open2(dec, codec, nullptr), 0);
  AVPacket* pkt = av_packet_alloc();
  AVFrame* f = av_frame_alloc();
  std::array<double, 3> mean{};
  bool got = false;
  while (!got && av_read_frame(fmt, pkt) >= 0) {
    if (pkt->stream_index == si) avcodec_send_packet(dec, pkt);
    av_packet_unref(pkt);
    got = avcodec_receive_frame(dec, f) == 0;
  }
  if (!got) {
    avcodec_send_packet(dec, nullptr);
    got = avcodec_receive_frame(dec, f) == 0;
  }
  EXPECT_TRUE(got);
  if (got) {
    EXPECT_EQ(f->format, AV_PIX_FMT_YUV420P);
    for (int c = 0; c < 3; ++c) {
      const int w = c ? f->width / 2 : f->width, h = c ? f->height / 2 : f->height;
      double s = 0;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) s += f->data[c][y * f->linesize[c] + x];
      mean[size_t(c)] = s / (double(w) * h);
    }
  }
  av_frame_free(&f);
  av_packet_free(&pkt);
  avcodec_free_context(&dec);
  avformat_close_input(&fmt);
  return mean;
}

// Durations of the video packets as stored in the container, in seconds.
std::vector<double> packet_durations(const std::string& p) {
  std::vector<double> d;
  AVFormatContext* fmt = nullptr;
  if (avformat_open_input(&fmt, ("file:" + p).c_str(), nullptr, nullptr) < 0) return d;
  AVPacket* pkt = av_packet_alloc();
  while (av_read_frame(fmt, pkt) >= 0) {
    d.push_back(double(pkt->duration) * av_q2d(fmt->streams[pkt->stream_index]->time_base));
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  avformat_close_input(&fmt);
  return d;
}

// Top-level ISO-BMFF box types in file order.
std::vector<std::string> top_level_boxes(const std::string& bytes) {
  std::vector<std::string> types;
  size_t pos = 0;
  while (pos + 8 <= bytes.size()) {
    auto u8 = [&](size_t i) { return uint64_t(uint8_t(bytes[i])); };
    uint64_t size = (u8(pos) << 24) | (u8(pos + 1) << 16) | (u8(pos + 2) << 8) | u8(pos + 3);
    types.push_back(bytes.substr(pos + 4, 4));
    if (size == 1 && pos + 16 <= bytes.size()) {
      size = 0;
      for (int i = 0; i < 8; ++i) size = (size << 8) | u8(pos + 8 + size_t(i));
    } else if (size == 0) {
      size = bytes.size() - pos;
    }
    if (size < 8) break;
    pos += size;
  }
  return types;
}

TEST_F(VideoIoTest, Writes48FramesAndProbes) {
  const std::string out = path("clip.mp4");
  VideoWriterOptions o = opts();
  std::string params = R"({"prompt":"a red \"fox\" runs, ünïcödé","seed":42,"steps":[)";
  for (int i = 0; i < 800; ++i) params += std::to_string(i) + ",";
  params += "0]}";
  o.metadata["comment"] = "made by VideoMLA Studio";
  o.metadata["vmla_params"] = params;

  std::vector<std::vector<uint8_t>> frames;
  for (int t = 0; t < 48; ++t) frames.push_back(pattern(128, 128, t));
  const auto t0 = std::chrono::steady_clock::now();
  {
    Mp4Writer w(out, o);
    for (const auto& f : frames) w.write_rgb(f.data());
    EXPECT_EQ(w.frames_written(), 48);
    EXPECT_FALSE(fs::exists(out)) << "the final path appears only at finish()";
    EXPECT_TRUE(fs::exists(out + ".partial"));
    w.finish();
    w.finish();  // idempotent
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[  TIMING  ] encode 48 frames 128x128 (preset medium, crf 18): %.1f ms\n", ms);
  RecordProperty("encode_48x128x128_ms", std::to_string(ms));

  EXPECT_EQ(dir_entries(), std::vector<std::string>{"clip.mp4"});
  const vmla::io::VideoInfo info = vmla::io::probe_video(out);
  EXPECT_EQ(info.width, 128);
  EXPECT_EQ(info.height, 128);
  EXPECT_EQ(info.frames, 48);
  EXPECT_NEAR(info.fps, 24.0, 1e-9);
  EXPECT_NEAR(info.duration_s, 2.0, 1e-3);
  EXPECT_EQ(info.codec, "h264");
  EXPECT_EQ(info.pix_fmt, "yuv420p");
  EXPECT_EQ(info.color_space, "bt709");
  EXPECT_EQ(info.color_primaries, "bt709");
  EXPECT_EQ(info.color_trc, "bt709");
  EXPECT_EQ(info.color_range, "tv");
  ASSERT_TRUE(info.metadata.count("comment"));
  EXPECT_EQ(info.metadata.at("comment"), "made by VideoMLA Studio");
  ASSERT_TRUE(info.metadata.count("vmla_params"));
  EXPECT_EQ(info.metadata.at("vmla_params"), params);
  const auto durations = packet_durations(out);
  ASSERT_EQ(durations.size(), 48u);
  for (double d : durations) EXPECT_NEAR(d, 1.0 / 24, 1e-9);

  const auto decoded = vmla::io::decode_video_rgb(out);
  ASSERT_EQ(decoded.size(), 48u);
  double err = 0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    ASSERT_EQ(decoded[i].size(), frames[i].size());
    for (size_t k = 0; k < decoded[i].size(); ++k)
      err += std::abs(int(decoded[i][k]) - int(frames[i][k]));
  }
  err /= 48.0 * 128 * 128 * 3;
  EXPECT_LT(err, 6.0) << "mean absolute error per channel, crf 18";
  EXPECT_EQ(vmla::io::decode_video_rgb(out, 5).size(), 5u);
  EXPECT_EQ(vmla::io::decode_video_rgb(out, 0).size(), 0u);
}

TEST_F(VideoIoTest, DurationIsExactAtOtherRates) {
  const std::string out = path("16fps.mp4");
  Mp4Writer w(out, opts(64, 32, 16));
  for (int t = 0; t < 20; ++t) w.write_rgb(pattern(64, 32, t).data());
  w.finish();
  const auto info = vmla::io::probe_video(out);
  EXPECT_EQ(info.frames, 20);
  EXPECT_NEAR(info.fps, 16.0, 1e-9);
  EXPECT_NEAR(info.duration_s, 20.0 / 16.0, 1e-3);
  EXPECT_EQ(info.width, 64);
  EXPECT_EQ(info.height, 32);
}

TEST_F(VideoIoTest, FlatColoursSurviveTheBt709Path) {
  struct C { const char* name; uint8_t r, g, b; };
  const C colours[] = {{"red", 255, 0, 0},  {"green", 0, 255, 0},   {"blue", 0, 0, 255},
                       {"grey", 128, 128, 128}, {"white", 255, 255, 255}, {"black", 0, 0, 0},
                       {"orange", 230, 120, 30}};
  const int kRepeat = 4;
  const std::string out = path("flat.mp4");
  {
    Mp4Writer w(out, opts());
    for (const C& c : colours) {
      const auto img = flat(128, 128, c.r, c.g, c.b);
      for (int i = 0; i < kRepeat; ++i) w.write_rgb(img.data());
    }
    w.finish();
  }
  const auto decoded = vmla::io::decode_video_rgb(out);
  ASSERT_EQ(decoded.size(), std::size(colours) * kRepeat);
  for (size_t i = 0; i < decoded.size(); ++i) {
    const C& c = colours[i / kRepeat];
    double m[3] = {0, 0, 0};
    for (size_t k = 0; k < decoded[i].size(); ++k) m[k % 3] += decoded[i][k];
    for (double& v : m) v /= 128.0 * 128.0;
    EXPECT_NEAR(m[0], c.r, 3.0) << c.name << " frame " << i;
    EXPECT_NEAR(m[1], c.g, 3.0) << c.name << " frame " << i;
    EXPECT_NEAR(m[2], c.b, 3.0) << c.name << " frame " << i;
  }

  // The stored YUV of pure red: BT.709 limited range gives Y 63, Cb 102, Cr 240
  // (BT.601 would give Y 82, Cb 90).
  const std::string red = path("red.mp4");
  {
    Mp4Writer w(red, opts(64, 64));
    const auto img = flat(64, 64, 255, 0, 0);
    for (int i = 0; i < 3; ++i) w.write_rgb(img.data());
    w.finish();
  }
  const auto yuv = first_frame_mean_yuv(red);
  EXPECT_NEAR(yuv[0], 16 + 219 * 0.2126, 1.5);
  EXPECT_NEAR(yuv[1], 128 - 112 * 0.2126 / (1 - 0.0722), 1.5);
  EXPECT_NEAR(yuv[2], 240, 1.5);
}

TEST_F(VideoIoTest, MoovPrecedesMdat) {
  const std::string out = path("fast.mp4");
  Mp4Writer w(out, opts());
  for (int t = 0; t < 24; ++t) w.write_rgb(pattern(128, 128, t).data());
  w.finish();
  const auto boxes = top_level_boxes(slurp(out));
  const auto moov = std::find(boxes.begin(), boxes.end(), "moov");
  const auto mdat = std::find(boxes.begin(), boxes.end(), "mdat");
  ASSERT_NE(moov, boxes.end());
  ASSERT_NE(mdat, boxes.end());
  EXPECT_LT(moov - boxes.begin(), mdat - boxes.begin());
  EXPECT_EQ(boxes.front(), "ftyp");
}

TEST_F(VideoIoTest, UnwritablePathsThrowIoErrorAndCreateNothing) {
  const std::string paths[] = {
      "/proc/vmla_forbidden/x.mp4",  // folder does not exist
      path("no/such/dir/x.mp4"),     // folder does not exist, inside a writable one
      "/proc/vmla_test_x.mp4",       // folder exists but refuses new files, even for root
  };
  for (const std::string& p : paths) {
    try {
      Mp4Writer w(p, opts());
      ADD_FAILURE() << "no error for " << p;
    } catch (const vmla::IoError& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      std::printf("[  MESSAGE ] %s\n", e.what());
    }
    EXPECT_FALSE(fs::exists(p));
    EXPECT_FALSE(fs::exists(p + ".partial"));
  }
  EXPECT_TRUE(dir_entries().empty());
  fs::create_directory(path("adir"));
  EXPECT_THROW(Mp4Writer(path("adir"), opts()), vmla::IoError);
  EXPECT_TRUE(fs::is_directory(path("adir")));
}

TEST_F(VideoIoTest, AbortMidwayLeavesNothing) {
  const std::string out = path("aborted.mp4");
  Mp4Writer w(out, opts());
  for (int t = 0; t < 10; ++t) w.write_rgb(pattern(128, 128, t).data());
  EXPECT_TRUE(fs::exists(out + ".partial"));
  w.abort();
  EXPECT_TRUE(dir_entries().empty());
  w.abort();  // no-op
  EXPECT_THROW(w.write_rgb(pattern(128, 128, 0).data()), vmla::Error);
  EXPECT_THROW(w.finish(), vmla::Error);
  EXPECT_TRUE(dir_entries().empty());
}

TEST_F(VideoIoTest, DestructorWithoutFinishKeepsExistingFile) {
  const std::string out = path("keep.mp4");
  spit(out, "previous export");
  {
    Mp4Writer w(out, opts());
    for (int t = 0; t < 10; ++t) w.write_rgb(pattern(128, 128, t).data());
    EXPECT_EQ(slurp(out), "previous export");
  }
  EXPECT_EQ(slurp(out), "previous export");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"keep.mp4"});

  // An exception between frames unwinds through the destructor the same way.
  try {
    Mp4Writer w(out, opts());
    w.write_rgb(pattern(128, 128, 0).data());
    throw std::runtime_error("generation failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(slurp(out), "previous export");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"keep.mp4"});

  // finish() replaces it.
  {
    Mp4Writer w(out, opts());
    for (int t = 0; t < 12; ++t) w.write_rgb(pattern(128, 128, t).data());
    w.finish();
  }
  EXPECT_EQ(vmla::io::probe_video(out).frames, 12);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"keep.mp4"});
}

TEST_F(VideoIoTest, MovedWriterKeepsItsExport) {
  const std::string out = path("moved.mp4");
  Mp4Writer a(out, opts(32, 32));
  a.write_rgb(flat(32, 32, 9, 9, 9).data());
  Mp4Writer b(std::move(a));
  b.write_rgb(flat(32, 32, 9, 9, 9).data());
  EXPECT_EQ(b.frames_written(), 2);
  b.finish();
  EXPECT_EQ(vmla::io::probe_video(out).frames, 2);
}

TEST_F(VideoIoTest, BadOptionsAreRejectedClearly) {
  auto expect_error = [&](VideoWriterOptions o, const std::string& needle) {
    const std::string out = path("bad.mp4");
    try {
      Mp4Writer w(out, o);
      ADD_FAILURE() << "accepted options expected to fail with '" << needle << "'";
    } catch (const vmla::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(out), std::string::npos) << e.what();
    }
    EXPECT_TRUE(dir_entries().empty());
  };
  expect_error(opts(127, 128), "even");
  expect_error(opts(128, 95), "even");
  expect_error(opts(0, 128), "not positive");
  expect_error(opts(128, 128, 0), "frame rate");
  VideoWriterOptions o = opts();
  o.crf = 60;
  expect_error(o, "crf");
  o = opts();
  o.preset = "warp";
  expect_error(o, "preset");
}

TEST_F(VideoIoTest, ZeroFramesIsAnErrorAndLeavesNothing) {
  Mp4Writer w(path("empty.mp4"), opts());
  EXPECT_THROW(w.finish(), vmla::Error);
  EXPECT_TRUE(dir_entries().empty());
}

TEST_F(VideoIoTest, ColonInFileName) {
  const std::string out = path("take:2.mp4");
  Mp4Writer w(out, opts(32, 32));
  for (int t = 0; t < 3; ++t) w.write_rgb(pattern(32, 32, t).data());
  w.finish();
  EXPECT_EQ(vmla::io::probe_video(out).frames, 3);
}

// A disk that fills up mid-export: RLIMIT_FSIZE makes write() fail with EFBIG.
TEST_F(VideoIoTest, WriteErrorMidwayLeavesNothing) {
  const std::string out = path("full.mp4");
  spit(out, "previous export");
  struct rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  bool threw = false;
  std::string msg;
  {
    VideoWriterOptions o = opts();
    o.crf = 0;  // lossless noise: about 50 KB a frame
    o.preset = "ultrafast";
    Mp4Writer w(out, o);
    struct rlimit small = old;
    small.rlim_cur = 256 * 1024;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    uint32_t seed = 1;
    std::vector<uint8_t> noise(128 * 128 * 3);
    try {
      for (int t = 0; t < 60; ++t) {
        for (auto& v : noise) v = uint8_t((seed = seed * 1664525u + 1013904223u) >> 24);
        w.write_rgb(noise.data());
      }
      w.finish();
    } catch (const vmla::IoError& e) {
      threw = true;
      msg = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old);
  }
  signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw);
  std::printf("[  MESSAGE ] %s\n", msg.c_str());
  EXPECT_NE(msg.find(out), std::string::npos);
  EXPECT_EQ(slurp(out), "previous export");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"full.mp4"});
}

TEST_F(VideoIoTest, PngRoundTripIsExact) {
  const int w = 37, h = 23;  // odd sizes are fine for PNG
  std::vector<uint8_t> img(size_t(w) * h * 3);
  uint32_t seed = 7;
  for (auto& v : img) v = uint8_t((seed = seed * 1664525u + 1013904223u) >> 24);
  const std::string out = path("still.png");
  spit(out, "old");
  vmla::io::write_png(out, w, h, img.data());
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"still.png"});
  int rw = 0, rh = 0;
  const auto back = vmla::io::read_png_rgb(out, &rw, &rh);
  EXPECT_EQ(rw, w);
  EXPECT_EQ(rh, h);
  EXPECT_EQ(back, img);

  EXPECT_THROW(vmla::io::write_png(path("no/dir/x.png"), w, h, img.data()), vmla::IoError);
  EXPECT_THROW(vmla::io::write_png("/proc/vmla_test_x.png", w, h, img.data()), vmla::IoError);
  EXPECT_FALSE(fs::exists("/proc/vmla_test_x.png.partial"));
  EXPECT_THROW(vmla::io::read_png_rgb(path("missing.png"), &rw, &rh), vmla::IoError);
  spit(path("fake.png"), "not a png at all");
  EXPECT_THROW(vmla::io::read_png_rgb(path("fake.png"), &rw, &rh), vmla::FormatError);
  EXPECT_EQ(dir_entries().size(), 2u);
}

TEST_F(VideoIoTest, ProbeErrors) {
  EXPECT_THROW(vmla::io::probe_video(path("missing.mp4")), vmla::IoError);
  spit(path("junk.mp4"), std::string(1000, 'x'));
  EXPECT_THROW(vmla::io::probe_video(path("junk.mp4")), vmla::Error);
  // A PNG is an image, not a video stream FFmpeg cannot open: it probes as one frame.
  const auto img = flat(8, 6, 1, 2, 3);
  vmla::io::write_png(path("one.png"), 8, 6, img.data());
  const auto info = vmla::io::probe_video(path("one.png"));
  EXPECT_EQ(info.frames, 1);
  EXPECT_EQ(info.codec, "png");
}

}  // namespace
