#include "core/io/png_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/tensor/tensor.h"

#include "core/io/ffmpeg_util.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace vmla::io {
namespace {

namespace fs = std::filesystem;

struct CodecCtxDel { void operator()(AVCodecContext* c) const { avcodec_free_context(&c); } };
struct FrameDel { void operator()(AVFrame* f) const { av_frame_free(&f); } };
struct PacketDel { void operator()(AVPacket* p) const { av_packet_free(&p); } };
using CodecCtxPtr = std::unique_ptr<AVCodecContext, CodecCtxDel>;
using FramePtr = std::unique_ptr<AVFrame, FrameDel>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDel>;

// Writes all of [data, data+size) to <tmp>, syncs it, renames it over <path>; on any failure the
// temporary file is removed and <path> is untouched.
void write_file_atomically(const std::string& path, const std::string& tmp, const uint8_t* data,
                           size_t size) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    throw IoError("PNG export to '" + path + "': cannot create the temporary file '" + tmp +
                  "': " + std::strerror(errno));
  auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw IoError("PNG export to '" + path + "': " + what + ": " + std::strerror(err));
  };
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write '" + tmp + "'", n < 0 ? errno : ENOSPC);
    done += size_t(n);
  }
  if (::fsync(fd) != 0) fail("cannot flush '" + tmp + "' to disk", errno);
  if (::close(fd) != 0) {
    const int e = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    throw IoError("PNG export to '" + path + "': cannot close '" + tmp + "': " + std::strerror(e));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove(tmp, ec2);
    throw IoError("PNG export to '" + path + "': cannot rename '" + tmp + "' to it: " +
                  ec.message());
  }
}

}  // namespace

void write_png(const std::string& path, int width, int height, const uint8_t* rgb) {
  const std::string where = "PNG export to '" + path + "': ";
  if (width <= 0 || height <= 0)
    throw Error(where + "image size " + std::to_string(width) + "x" + std::to_string(height) +
                " is not positive");
  if (!rgb) throw Error(where + "no pixel data");
  const fs::path p(path);
  if (p.filename().empty()) throw IoError(where + "not a file name");
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  const fs::file_status ds = fs::status(dir, ec);
  if (!fs::exists(ds)) throw IoError(where + "folder '" + dir.string() + "' does not exist");
  if (!fs::is_directory(ds)) throw IoError(where + "'" + dir.string() + "' is not a folder");
  if (fs::is_directory(fs::status(p, ec))) throw IoError(where + "a folder of that name exists");

  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
  if (!codec) throw Error(where + "the FFmpeg libraries in use have no PNG encoder");
  CodecCtxPtr enc(avcodec_alloc_context3(codec));
  FramePtr frame(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  if (!enc || !frame || !pkt) throw IoError(where + "out of memory");
  auto check = [&](int r, const char* what) {
    if (r < 0) throw IoError(where + what + ": " + av_error(r));
  };

  enc->width = width;
  enc->height = height;
  enc->pix_fmt = AV_PIX_FMT_RGB24;
  enc->time_base = AVRational{1, 1};
  check(avcodec_open2(enc.get(), codec, nullptr), "cannot open the PNG encoder");

  frame->format = AV_PIX_FMT_RGB24;
  frame->width = width;
  frame->height = height;
  frame->color_primaries = AVCOL_PRI_BT709;   // sRGB primaries: cHRM chunk
  frame->color_trc = AVCOL_TRC_IEC61966_2_1;  // sRGB curve: gAMA chunk
  check(av_frame_get_buffer(frame.get(), 0), "cannot allocate the frame");
  const size_t row = size_t(width) * 3;
  for (int y = 0; y < height; ++y)
    std::memcpy(frame->data[0] + size_t(y) * size_t(frame->linesize[0]), rgb + size_t(y) * row,
                row);
  frame->pts = 0;

  check(avcodec_send_frame(enc.get(), frame.get()), "PNG encoding failed");
  check(avcodec_send_frame(enc.get(), nullptr), "PNG encoding failed");
  check(avcodec_receive_packet(enc.get(), pkt.get()), "PNG encoding failed");
  write_file_atomically(path, path + ".partial", pkt->data, size_t(pkt->size));
}

std::vector<uint8_t> read_png_rgb(const std::string& path, int* width, int* height) {
  const std::string where = "reading PNG '" + path + "': ";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(where + "cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError(where + "read error");
  static constexpr uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSig, 8) != 0)
    throw FormatError(where + "not a PNG file (bad signature)");

  const AVCodec* codec = avcodec_find_decoder(AV_CODEC_ID_PNG);
  if (!codec) throw Error(where + "the FFmpeg libraries in use have no PNG decoder");
  CodecCtxPtr dec(avcodec_alloc_context3(codec));
  FramePtr frame(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  if (!dec || !frame || !pkt) throw IoError(where + "out of memory");
  int r = avcodec_open2(dec.get(), codec, nullptr);
  if (r < 0) throw IoError(where + "cannot open the PNG decoder: " + av_error(r));
  r = av_new_packet(pkt.get(), int(bytes.size()));
  if (r < 0) throw IoError(where + "out of memory: " + av_error(r));
  std::memcpy(pkt->data, bytes.data(), bytes.size());
  r = avcodec_send_packet(dec.get(), pkt.get());
  if (r >= 0) r = avcodec_send_packet(dec.get(), nullptr);
  if (r >= 0) r = avcodec_receive_frame(dec.get(), frame.get());
  if (r < 0) throw FormatError(where + "cannot decode: " + av_error(r));

  const int w = frame->width, h = frame->height;
  const AVFrame* src = frame.get();
  FramePtr rgb;
  if (frame->format != AV_PIX_FMT_RGB24) {  // grey, palette, RGBA, 16-bit; same size, point sampling
    const char* name = av_get_pix_fmt_name(AVPixelFormat(frame->format));
    SwsContext* sws = sws_getContext(w, h, AVPixelFormat(frame->format), w, h, AV_PIX_FMT_RGB24,
                                     SWS_POINT | SWS_ACCURATE_RND, nullptr, nullptr, nullptr);
    rgb.reset(av_frame_alloc());
    if (!sws || !rgb)
      throw FormatError(where + "cannot convert pixel format " + (name ? name : "?") + " to RGB");
    rgb->format = AV_PIX_FMT_RGB24;
    rgb->width = w;
    rgb->height = h;
    r = av_frame_get_buffer(rgb.get(), 0);  // padded: SIMD converters may write past the row
    if (r >= 0) r = sws_scale(sws, frame->data, frame->linesize, 0, h, rgb->data, rgb->linesize);
    sws_freeContext(sws);
    if (r != h) throw FormatError(where + "conversion from " + (name ? name : "?") + " to RGB failed");
    src = rgb.get();
  }
  std::vector<uint8_t> out(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    std::memcpy(out.data() + size_t(y) * size_t(w) * 3,
                src->data[0] + size_t(y) * size_t(src->linesize[0]), size_t(w) * 3);
  if (width) *width = w;
  if (height) *height = h;
  return out;
}

}  // namespace vmla::io
