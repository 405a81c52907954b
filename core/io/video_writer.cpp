#include "core/io/video_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <utility>

#include "core/tensor/tensor.h"

#include "core/io/ffmpeg_util.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

namespace vmla::io {
namespace {

namespace fs = std::filesystem;

// "file:" keeps a ':' in the path from being read as a protocol name ("take:2.mp4").
std::string file_url(const std::string& path) { return "file:" + path; }

constexpr std::array<const char*, 10> kX264Presets = {
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium",    "slow",      "slower",   "veryslow", "placebo"};

void check_options(const std::string& path, const VideoWriterOptions& o) {
  const std::string where = "MP4 export to '" + path + "': ";
  if (o.width <= 0 || o.height <= 0)
    throw Error(where + "frame size " + std::to_string(o.width) + "x" + std::to_string(o.height) +
                " is not positive");
  if (o.width % 2 || o.height % 2)
    throw Error(where + "frame size " + std::to_string(o.width) + "x" + std::to_string(o.height) +
                " must be even in both dimensions (H.264 yuv420p stores colour at half "
                "resolution); crop or pad by one pixel");
  if (o.fps <= 0 || o.fps > 1000)
    throw Error(where + "frame rate " + std::to_string(o.fps) + " fps is outside 1..1000");
  if (o.crf < 0 || o.crf > 51)
    throw Error(where + "crf " + std::to_string(o.crf) + " is outside 0..51");
  bool preset_ok = false;
  for (const char* p : kX264Presets) preset_ok = preset_ok || o.preset == p;
  if (!preset_ok) {
    std::string list;
    for (const char* p : kX264Presets) list += std::string(list.empty() ? "" : ", ") + p;
    throw Error(where + "unknown x264 preset '" + o.preset + "' (expected one of: " + list + ")");
  }
  for (const auto& [k, v] : o.metadata)
    if (k.empty()) throw Error(where + "metadata key is empty (value '" + v + "')");
}

}  // namespace

struct Mp4Writer::Impl {
  enum class State { Open, Finished, Dead };

  std::string path, tmp;
  VideoWriterOptions opt;
  State state = State::Open;
  bool tmp_created = false;
  int64_t frames = 0;

  AVFormatContext* fmt = nullptr;
  AVCodecContext* enc = nullptr;
  AVStream* st = nullptr;
  SwsContext* sws = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* pkt = nullptr;

  ~Impl() { abort(); }

  [[noreturn]] void fail(const std::string& what, int err) const {
    throw IoError("MP4 export to '" + path + "': " + what + ": " + av_error(err));
  }

  void release() noexcept {
    sws_freeContext(sws);
    sws = nullptr;
    av_frame_free(&frame);
    av_packet_free(&pkt);
    avcodec_free_context(&enc);
    if (fmt) {
      if (fmt->pb) avio_closep(&fmt->pb);
      avformat_free_context(fmt);  // runs the muxer's deinit even without a trailer
      fmt = nullptr;
    }
  }

  void abort() noexcept {
    if (state != State::Open) return;  // never touch a finished export
    release();
    if (tmp_created) {
      std::error_code ec;
      fs::remove(tmp, ec);
    }
    state = State::Dead;
  }

  // Runs f; on any exception the export is dead and its temporary file gone before rethrowing.
  template <class F> void guarded(F&& f) {
    try {
      f();
    } catch (...) {
      abort();
      throw;
    }
  }

  void open();
  void encode(const AVFrame* f);
  void finish();
};

void Mp4Writer::Impl::open() {
  const fs::path p(path);
  if (p.filename().empty() || p.filename() == "." || p.filename() == "..")
    throw IoError("MP4 export to '" + path + "': not a file name");
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  const fs::file_status ds = fs::status(dir, ec);
  if (!fs::exists(ds))
    throw IoError("MP4 export to '" + path + "': folder '" + dir.string() + "' does not exist");
  if (!fs::is_directory(ds))
    throw IoError("MP4 export to '" + path + "': '" + dir.string() + "' is not a folder");
  if (fs::is_directory(fs::status(p, ec)))
    throw IoError("MP4 export to '" + path + "': a folder of that name exists");

  // Before the file exists: a build without libx264 or bad options create nothing.
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (!codec)
    throw Error("MP4 export to '" + path +
                "': the FFmpeg libraries in use have no libx264 H.264 encoder; install an FFmpeg "
                "build configured with --enable-libx264");

  int r = avformat_alloc_output_context2(&fmt, nullptr, "mp4", file_url(tmp).c_str());
  if (r < 0 || !fmt) fail("cannot set up the MP4 muxer", r < 0 ? r : AVERROR(ENOMEM));

  enc = avcodec_alloc_context3(codec);
  if (!enc) fail("cannot allocate the H.264 encoder", AVERROR(ENOMEM));
  enc->width = opt.width;
  enc->height = opt.height;
  enc->time_base = AVRational{1, opt.fps};
  enc->framerate = AVRational{opt.fps, 1};
  enc->sample_aspect_ratio = AVRational{1, 1};
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->colorspace = AVCOL_SPC_BT709;
  enc->color_primaries = AVCOL_PRI_BT709;
  enc->color_trc = AVCOL_TRC_BT709;
  enc->color_range = AVCOL_RANGE_MPEG;
  if (fmt->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  AVDictionary* eo = nullptr;
  av_dict_set(&eo, "preset", opt.preset.c_str(), 0);
  av_dict_set_int(&eo, "crf", opt.crf, 0);
  r = avcodec_open2(enc, codec, &eo);
  av_dict_free(&eo);
  if (r < 0)
    fail("cannot open the libx264 encoder (" + std::to_string(opt.width) + "x" +
             std::to_string(opt.height) + ", preset " + opt.preset + ", crf " +
             std::to_string(opt.crf) + ")",
         r);

  st = avformat_new_stream(fmt, nullptr);
  if (!st) fail("cannot add the video stream", AVERROR(ENOMEM));
  st->time_base = enc->time_base;  // a hint: the muxer picks its own timescale
  st->avg_frame_rate = enc->framerate;
  r = avcodec_parameters_from_context(st->codecpar, enc);
  if (r < 0) fail("cannot copy the encoder parameters", r);

  for (const auto& [k, v] : opt.metadata) {
    r = av_dict_set(&fmt->metadata, k.c_str(), v.c_str(), 0);
    if (r < 0) fail("cannot set metadata '" + k + "'", r);
  }

  frame = av_frame_alloc();
  pkt = av_packet_alloc();
  if (!frame || !pkt) fail("cannot allocate frame buffers", AVERROR(ENOMEM));
  frame->format = enc->pix_fmt;
  frame->width = enc->width;
  frame->height = enc->height;
  frame->colorspace = enc->colorspace;
  frame->color_primaries = enc->color_primaries;
  frame->color_trc = enc->color_trc;
  frame->color_range = enc->color_range;
  r = av_frame_get_buffer(frame, 0);
  if (r < 0) fail("cannot allocate a " + std::to_string(opt.width) + "x" +
                      std::to_string(opt.height) + " frame", r);

  // swscale assumes BT.601 unless told; the stream is tagged BT.709, limited range.
  sws = sws_getContext(opt.width, opt.height, AV_PIX_FMT_RGB24, opt.width, opt.height,
                       AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP,
                       nullptr, nullptr, nullptr);
  if (!sws) fail("cannot set up RGB to YUV conversion", AVERROR(EINVAL));
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  r = sws_setColorspaceDetails(sws, bt709, /*srcRange full*/ 1, bt709, /*dstRange limited*/ 0,
                               0, 1 << 16, 1 << 16);
  if (r < 0) fail("swscale refused BT.709 conversion coefficients", AVERROR(ENOSYS));

  r = avio_open(&fmt->pb, file_url(tmp).c_str(), AVIO_FLAG_WRITE);
  if (r < 0) fail("cannot create the temporary file '" + tmp + "'", r);
  tmp_created = true;

  // faststart: the index (moov) goes before the media data so players can start at once.
  // use_metadata_tags: free-form keys such as "vmla_params"; the iTunes list would drop them.
  AVDictionary* mo = nullptr;
  av_dict_set(&mo, "movflags", "+faststart+use_metadata_tags", 0);
  r = avformat_write_header(fmt, &mo);
  av_dict_free(&mo);
  if (r < 0) fail("cannot write the MP4 header to '" + tmp + "'", r);
}

void Mp4Writer::Impl::encode(const AVFrame* f) {
  int r = avcodec_send_frame(enc, f);
  if (r < 0) fail(f ? "cannot encode frame " + std::to_string(frames) : "cannot flush the encoder", r);
  for (;;) {
    r = avcodec_receive_packet(enc, pkt);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
    if (r < 0) fail("H.264 encoding failed", r);
    pkt->duration = 1;  // one frame; without it the last frame has no length (1.958 s for 2 s)
    av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
    pkt->stream_index = st->index;
    r = av_interleaved_write_frame(fmt, pkt);  // takes the packet's reference
    if (r < 0) fail("cannot write to '" + tmp + "'", r);
  }
}

void Mp4Writer::Impl::finish() {
  if (frames == 0)
    throw Error("MP4 export to '" + path + "': no frames were written; nothing to save");
  encode(nullptr);
  int r = av_write_trailer(fmt);  // with faststart this rewrites the file with moov in front
  if (r < 0) fail("cannot write the MP4 index to '" + tmp + "'", r);
  avio_flush(fmt->pb);
  if (fmt->pb->error < 0) fail("cannot write to '" + tmp + "'", fmt->pb->error);
  r = avio_closep(&fmt->pb);  // does not report earlier buffered write errors: checked above
  if (r < 0) fail("cannot close '" + tmp + "'", r);

  // Data on disk before the rename makes it visible, so a crash cannot leave a truncated <path>.
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int e = errno;
    if (fd >= 0) ::close(fd);
    fail("cannot flush '" + tmp + "' to disk", AVERROR(e));
  }
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw IoError("MP4 export to '" + path + "': cannot rename '" + tmp + "' to it: " +
                  ec.message());
  release();
  state = State::Finished;
  fs::path dir = fs::path(path).parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);  // best effort: the file is complete either way
    ::close(dfd);
  }
}

Mp4Writer::Mp4Writer(const std::string& path, const VideoWriterOptions& opt)
    : impl_(std::make_unique<Impl>()) {
  check_options(path, opt);
  impl_->path = path;
  impl_->tmp = path + ".partial";
  impl_->opt = opt;
  impl_->guarded([&] { impl_->open(); });
}

Mp4Writer::Mp4Writer(Mp4Writer&&) noexcept = default;

Mp4Writer& Mp4Writer::operator=(Mp4Writer&& o) noexcept {
  if (this != &o) {
    abort();
    impl_ = std::move(o.impl_);
  }
  return *this;
}

Mp4Writer::~Mp4Writer() = default;  // Impl's destructor aborts an unfinished export

void Mp4Writer::write_rgb(const uint8_t* rgb) {
  if (!impl_ || impl_->state != Impl::State::Open)
    throw Error("MP4 export" + (impl_ ? " to '" + impl_->path + "'" : std::string()) +
                ": write_rgb() after finish(), abort() or an earlier error");
  if (!rgb) throw Error("MP4 export to '" + impl_->path + "': write_rgb(nullptr)");
  Impl& m = *impl_;
  m.guarded([&] {
    int r = av_frame_make_writable(m.frame);  // the encoder may still hold the previous buffer
    if (r < 0) m.fail("cannot get a frame buffer", r);
    const uint8_t* src[4] = {rgb, nullptr, nullptr, nullptr};
    const int src_stride[4] = {3 * m.opt.width, 0, 0, 0};
    r = sws_scale(m.sws, src, src_stride, 0, m.opt.height, m.frame->data, m.frame->linesize);
    if (r != m.opt.height) m.fail("RGB to YUV conversion failed", r < 0 ? r : AVERROR(EINVAL));
    m.frame->pts = m.frames;  // time base 1/fps: pts = frame index
    m.encode(m.frame);
    ++m.frames;
  });
}

int64_t Mp4Writer::frames_written() const { return impl_ ? impl_->frames : 0; }

void Mp4Writer::finish() {
  if (!impl_) throw Error("MP4 export: finish() on a moved-from writer");
  if (impl_->state == Impl::State::Finished) return;
  if (impl_->state == Impl::State::Dead)
    throw Error("MP4 export to '" + impl_->path + "': finish() after abort() or an earlier error");
  impl_->guarded([&] { impl_->finish(); });
}

void Mp4Writer::abort() noexcept {
  if (impl_) impl_->abort();
}

const std::string& Mp4Writer::path() const {
  static const std::string empty;
  return impl_ ? impl_->path : empty;
}

}  // namespace vmla::io
