#pragma once
// MP4 (H.264 / yuv420p / BT.709, limited range) export through the FFmpeg libraries.
// Nothing is lost on a failed export: frames go to "<path>.partial", which finish() renames over
// <path>; any failure, abort() or destruction before finish() deletes the temporary file and leaves
// whatever was at <path> untouched.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace vmla::io {

struct VideoWriterOptions {
  int width = 0, height = 0;      // even sizes required by yuv420p (vmla::Error otherwise)
  int fps = 16;
  int crf = 18;                   // x264 quality, 0 (lossless) .. 51
  std::string preset = "medium";  // x264 preset: ultrafast .. placebo
  // Container metadata (e.g. "comment", "vmla_params" JSON). Written as QuickTime 'mdta' keys so
  // that any key round-trips, not only the iTunes set.
  std::map<std::string, std::string> metadata;
};

// One writer per file, used from one thread. Errors: vmla::Error for bad options, vmla::IoError
// for anything the file system or FFmpeg refused; both name the path. After an error thrown by
// write_rgb() or finish() the temporary file is already gone and the writer is dead (further calls
// throw).
class Mp4Writer {
 public:
  Mp4Writer(const std::string& path, const VideoWriterOptions& opt);
  Mp4Writer(Mp4Writer&&) noexcept;
  Mp4Writer& operator=(Mp4Writer&&) noexcept;  // aborts the export this writer held, if any
  Mp4Writer(const Mp4Writer&) = delete;
  Mp4Writer& operator=(const Mp4Writer&) = delete;
  ~Mp4Writer();  // abort() unless finish() succeeded

  void write_rgb(const uint8_t* rgb);  // one frame: height*width*3 bytes, row-major RGB8
  int64_t frames_written() const;
  void finish();  // flush, write the index at the front (faststart), close, rename temp -> path
  void abort() noexcept;  // close and delete the temporary file; no-op after finish()

  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmla::io
