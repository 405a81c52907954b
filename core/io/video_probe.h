#pragma once
// Reading videos back: stream facts for "info" and tests, RGB frames for tests and "open clip".
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vmla::io {

struct VideoInfo {
  int width = 0, height = 0;
  int64_t frames = 0;      // counted by decoding every frame, not read from the header
  double fps = 0;          // average frame rate of the stream
  double duration_s = 0;   // stream duration (container duration if the stream has none)
  std::string codec;       // FFmpeg codec name, e.g. "h264"
  std::string pix_fmt;     // e.g. "yuv420p"
  std::string color_space, color_primaries, color_trc;  // FFmpeg names, e.g. "bt709"
  std::string color_range;                              // "tv" (limited) or "pc" (full)
  std::map<std::string, std::string> metadata;          // container metadata
};

// vmla::IoError if the file cannot be opened, vmla::FormatError if it holds no decodable video.
VideoInfo probe_video(const std::string& path);

// Decodes up to max_frames frames (all if negative) of the best video stream as row-major RGB8,
// width*height*3 bytes each, converting with the matrix and range the stream is tagged with.
std::vector<std::vector<uint8_t>> decode_video_rgb(const std::string& path, int max_frames = -1);

}  // namespace vmla::io
