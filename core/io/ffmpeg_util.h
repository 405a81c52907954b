#pragma once
// Small helpers shared by the FFmpeg-based readers and writers.
#include <string>

extern "C" {
#include <libavutil/error.h>
}

namespace vmla::io {

// FFmpeg's error text. (av_err2str is a compound-literal macro that does not compile as C++.)
inline std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

}  // namespace vmla::io
