#include "core/io/video_probe.h"

#include <cstring>
#include <filesystem>
#include <memory>

#include "core/tensor/tensor.h"

#include "core/io/ffmpeg_util.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace vmla::io {
namespace {

namespace fs = std::filesystem;

std::string str_or_empty(const char* s) { return s ? s : ""; }

// The best video stream of a file, opened for decoding.
class Demuxer {
 public:
  explicit Demuxer(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw IoError("video '" + path + "': no such file");
    if (fs::is_directory(path, ec)) throw IoError("video '" + path + "': is a folder");
    // "file:" keeps a ':' in the path from being read as a protocol name.
    int r = avformat_open_input(&fmt_, ("file:" + path).c_str(), nullptr, nullptr);
    if (r == AVERROR_INVALIDDATA) fail<FormatError>("not a video file FFmpeg can read", r);
    if (r < 0) fail<IoError>("cannot open", r);
    r = avformat_find_stream_info(fmt_, nullptr);
    if (r < 0) fail<FormatError>("cannot read the stream parameters", r);
    const AVCodec* codec = nullptr;
    r = av_find_best_stream(fmt_, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r == AVERROR_STREAM_NOT_FOUND) fail<FormatError>("no video stream", r);
    if (r < 0 || !codec) fail<FormatError>("no decoder for its video stream", r < 0 ? r : AVERROR_DECODER_NOT_FOUND);
    st_ = fmt_->streams[r];
    dec_ = avcodec_alloc_context3(codec);
    frame_ = av_frame_alloc();
    pkt_ = av_packet_alloc();
    if (!dec_ || !frame_ || !pkt_) fail<IoError>("out of memory", AVERROR(ENOMEM));
    r = avcodec_parameters_to_context(dec_, st_->codecpar);
    if (r < 0) fail<FormatError>("bad codec parameters", r);
    dec_->thread_count = 0;  // auto
    r = avcodec_open2(dec_, codec, nullptr);
    if (r < 0) fail<FormatError>(std::string("cannot open the ") + codec->name + " decoder", r);
  }
  ~Demuxer() {
    av_packet_free(&pkt_);
    av_frame_free(&frame_);
    avcodec_free_context(&dec_);
    avformat_close_input(&fmt_);
  }
  Demuxer(const Demuxer&) = delete;
  Demuxer& operator=(const Demuxer&) = delete;

  const AVFormatContext* format() const { return fmt_; }
  const AVStream* stream() const { return st_; }

  // Calls fn(const AVFrame&) for every decoded frame in order until it returns false.
  template <class F> void decode(F&& fn) {
    bool more = true;
    int r = 0;
    while (more && (r = av_read_frame(fmt_, pkt_)) >= 0) {
      if (pkt_->stream_index == st_->index) {
        r = avcodec_send_packet(dec_, pkt_);
        av_packet_unref(pkt_);
        if (r < 0) fail<FormatError>("corrupt video data", r);
        more = receive(fn);
      } else {
        av_packet_unref(pkt_);
      }
    }
    if (!more) return;
    if (r != AVERROR_EOF) fail<IoError>("read error", r);
    r = avcodec_send_packet(dec_, nullptr);
    if (r < 0) fail<FormatError>("cannot flush the decoder", r);
    receive(fn);
  }

 private:
  template <class F> bool receive(F& fn) {
    for (;;) {
      const int r = avcodec_receive_frame(dec_, frame_);
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return true;
      if (r < 0) fail<FormatError>("cannot decode a frame", r);
      const bool go_on = fn(*frame_);
      av_frame_unref(frame_);
      if (!go_on) return false;
    }
  }
  template <class E> [[noreturn]] void fail(const std::string& what, int err) const {
    throw E("video '" + path_ + "': " + what + ": " + av_error(err));
  }

  std::string path_;
  AVFormatContext* fmt_ = nullptr;
  AVStream* st_ = nullptr;
  AVCodecContext* dec_ = nullptr;
  AVFrame* frame_ = nullptr;
  AVPacket* pkt_ = nullptr;
};

int sws_matrix(AVColorSpace cs, int height) {
  switch (cs) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M: return SWS_CS_ITU601;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    default: return height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601;  // the usual guess if untagged
  }
}

bool is_full_range_format(AVPixelFormat f) {
  return f == AV_PIX_FMT_YUVJ420P || f == AV_PIX_FMT_YUVJ422P || f == AV_PIX_FMT_YUVJ444P ||
         f == AV_PIX_FMT_YUVJ440P || f == AV_PIX_FMT_YUVJ411P;
}

}  // namespace

VideoInfo probe_video(const std::string& path) {
  Demuxer d(path);
  const AVStream* st = d.stream();
  const AVCodecParameters* par = st->codecpar;
  VideoInfo info;
  info.width = par->width;
  info.height = par->height;
  info.codec = avcodec_get_name(par->codec_id);
  info.pix_fmt = str_or_empty(av_get_pix_fmt_name(AVPixelFormat(par->format)));
  AVColorSpace cs = par->color_space;
  AVColorPrimaries prim = par->color_primaries;
  AVColorTransferCharacteristic trc = par->color_trc;
  AVColorRange range = par->color_range;
  d.decode([&](const AVFrame& f) {
    if (info.frames++ == 0) {  // the bitstream's tags if the container had none
      if (cs == AVCOL_SPC_UNSPECIFIED) cs = f.colorspace;
      if (prim == AVCOL_PRI_UNSPECIFIED) prim = f.color_primaries;
      if (trc == AVCOL_TRC_UNSPECIFIED) trc = f.color_trc;
      if (range == AVCOL_RANGE_UNSPECIFIED) range = f.color_range;
    }
    return true;
  });
  info.color_space = str_or_empty(av_color_space_name(cs));
  info.color_primaries = str_or_empty(av_color_primaries_name(prim));
  info.color_trc = str_or_empty(av_color_transfer_name(trc));
  info.color_range = str_or_empty(av_color_range_name(range));

  AVRational rate = st->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0) rate = st->r_frame_rate;
  if (rate.num > 0 && rate.den > 0) info.fps = av_q2d(rate);

  const AVFormatContext* fmt = d.format();
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
    info.duration_s = double(st->duration) * av_q2d(st->time_base);
  else if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0)
    info.duration_s = double(fmt->duration) / AV_TIME_BASE;
  else if (info.fps > 0)
    info.duration_s = double(info.frames) / info.fps;

  const AVDictionaryEntry* e = nullptr;
  while ((e = av_dict_get(fmt->metadata, "", e, AV_DICT_IGNORE_SUFFIX)))
    info.metadata[e->key] = e->value;
  return info;
}

std::vector<std::vector<uint8_t>> decode_video_rgb(const std::string& path, int max_frames) {
  Demuxer d(path);
  const int w = d.stream()->codecpar->width, h = d.stream()->codecpar->height;
  std::vector<std::vector<uint8_t>> out;
  if (max_frames == 0) return out;
  if (w <= 0 || h <= 0)
    throw FormatError("video '" + path + "': stream has no frame size");

  SwsContext* sws = nullptr;
  AVFrame* rgb = av_frame_alloc();
  struct Cleanup {
    SwsContext*& s;
    AVFrame*& f;
    ~Cleanup() {
      sws_freeContext(s);
      av_frame_free(&f);
    }
  } cleanup{sws, rgb};
  if (!rgb) throw IoError("video '" + path + "': out of memory");
  rgb->format = AV_PIX_FMT_RGB24;
  rgb->width = w;
  rgb->height = h;
  int r = av_frame_get_buffer(rgb, 0);  // padded rows: SIMD converters may write past the width
  if (r < 0) throw IoError("video '" + path + "': cannot allocate an RGB frame: " + av_error(r));

  int cur_w = 0, cur_h = 0, cur_fmt = -1, cur_cs = -1, cur_range = -1;
  d.decode([&](const AVFrame& f) {
    const AVPixelFormat pf = AVPixelFormat(f.format);
    if (!sws || f.width != cur_w || f.height != cur_h || f.format != cur_fmt ||
        f.colorspace != cur_cs || f.color_range != cur_range) {
      sws_freeContext(sws);
      // Scales only if a frame's size differs from the stream's; every output frame is w x h.
      sws = sws_getContext(f.width, f.height, pf, w, h, AV_PIX_FMT_RGB24,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr,
                           nullptr);
      if (!sws)
        throw FormatError("video '" + path + "': cannot convert " +
                          str_or_empty(av_get_pix_fmt_name(pf)) + " to RGB");
      const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(pf);
      const bool yuv = desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
      if (yuv) {
        const int full = f.color_range == AVCOL_RANGE_JPEG || is_full_range_format(pf);
        const int* rgb_table = sws_getCoefficients(SWS_CS_DEFAULT);  // unused for RGB output
        if (sws_setColorspaceDetails(sws, sws_getCoefficients(sws_matrix(f.colorspace, f.height)),
                                     full, rgb_table, 1, 0, 1 << 16, 1 << 16) < 0)
          throw FormatError("video '" + path + "': swscale refused the stream's colour matrix");
      }
      cur_w = f.width;
      cur_h = f.height;
      cur_fmt = f.format;
      cur_cs = f.colorspace;
      cur_range = f.color_range;
    }
    const int got = sws_scale(sws, f.data, f.linesize, 0, f.height, rgb->data, rgb->linesize);
    if (got != h) throw FormatError("video '" + path + "': conversion to RGB failed");
    std::vector<uint8_t> img(size_t(w) * size_t(h) * 3);
    for (int y = 0; y < h; ++y)
      std::memcpy(img.data() + size_t(y) * size_t(w) * 3,
                  rgb->data[0] + size_t(y) * size_t(rgb->linesize[0]), size_t(w) * 3);
    out.push_back(std::move(img));
    return max_frames < 0 || int(out.size()) < max_frames;
  });
  return out;
}

}  // namespace vmla::io
