#include "ui/export_job.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <exception>

#ifdef VMLA_WITH_FFMPEG
#include "core/io/png_writer.h"
#include "core/io/video_writer.h"
#endif

namespace vmla::ui {

qint64 ExportRequest::frames() const {
  qint64 n = 0;
  for (const auto& c : chunks) n += c.second;
  return n;
}

std::vector<ExportPreset> export_presets() {
  return {{QObject::tr("High quality (CRF 16, slow)"), 16, QStringLiteral("slow")},
          {QObject::tr("Standard (CRF 20)"), 20, QStringLiteral("medium")},
          {QObject::tr("Small file (CRF 28, fast)"), 28, QStringLiteral("fast")},
          {QObject::tr("Lossless (CRF 0)"), 0, QStringLiteral("medium")}};
}

ExportJob::ExportJob(ExportRequest req, QObject* parent) : QThread(parent), req_(std::move(req)) {}

ExportJob::~ExportJob() {
  cancel();
  wait();
}

void ExportJob::run() {
#ifndef VMLA_WITH_FFMPEG
  emit failed(tr("This build has no FFmpeg: MP4 and PNG export are not available."), false);
  return;
#else
  const qint64 total = req_.frames();
  qint64 done = 0;
  const size_t frame_bytes = size_t(req_.width) * size_t(req_.height) * 3;
  try {
    if (req_.format == ExportRequest::Format::Mp4) {
      vmla::io::VideoWriterOptions o;
      o.width = req_.width;
      o.height = req_.height;
      o.fps = req_.fps;
      o.crf = req_.crf;
      o.preset = req_.preset.toStdString();
      o.metadata = req_.metadata;
      vmla::io::Mp4Writer w(req_.path.toStdString(), o);
      for (const auto& [buf, count] : req_.chunks) {
        for (int i = 0; i < count; ++i) {
          if (cancel_) {
            w.abort();
            emit failed(tr("Export cancelled; nothing was written."), true);
            return;
          }
          w.write_rgb(reinterpret_cast<const uint8_t*>(buf.constData()) + size_t(i) * frame_bytes);
          emit progress(++done, total);
        }
      }
      w.finish();
    } else {
      QDir().mkpath(req_.path);
      const int digits = std::max(5, int(QString::number(total).size()));
      for (const auto& [buf, count] : req_.chunks) {
        for (int i = 0; i < count; ++i) {
          if (cancel_) {
            for (const auto& f : written_) QFile::remove(f);
            written_.clear();
            emit failed(tr("Export cancelled; the frames written were removed."), true);
            return;
          }
          const QString file = QDir(req_.path).filePath(QStringLiteral("frame_%1.png").arg(done, digits, 10, QLatin1Char('0')));
          vmla::io::write_png(file.toStdString(), req_.width, req_.height,
                              reinterpret_cast<const uint8_t*>(buf.constData()) + size_t(i) * frame_bytes);
          written_ << file;
          emit progress(++done, total);
        }
      }
    }
  } catch (const std::exception& e) {
    for (const auto& f : written_) QFile::remove(f);
    written_.clear();
    emit failed(QString::fromStdString(e.what()), false);
    return;
  }
  emit succeeded(req_.path);
#endif
}

}  // namespace vmla::ui
