#pragma once
// Writes frames to an MP4 (H.264) or to numbered PNGs on its own thread. The frames are implicitly
// shared copies of the chunks' buffers, so generation can go on meanwhile. Nothing existing is
// damaged by a failed or cancelled export: the MP4 goes through a temporary file and a rename, and
// PNGs written by a cancelled export are removed again.
#include <QByteArray>
#include <QThread>
#include <atomic>
#include <map>
#include <string>
#include <vector>

namespace vmla::ui {

struct ExportRequest {
  enum class Format { Mp4, Png } format = Format::Mp4;
  QString path;  // the .mp4 file, or the folder for PNGs
  int width = 0, height = 0, fps = 16;
  int crf = 18;
  QString preset = QStringLiteral("medium");
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<QByteArray, int>> chunks;  // frames of each chunk, in order
  qint64 frames() const;
};

struct ExportPreset {
  QString name;
  int crf;
  QString preset;
};
std::vector<ExportPreset> export_presets();

class ExportJob : public QThread {
  Q_OBJECT
 public:
  explicit ExportJob(ExportRequest req, QObject* parent = nullptr);
  ~ExportJob() override;
  void cancel() { cancel_ = true; }
  const ExportRequest& request() const { return req_; }
  QStringList written() const { return written_; }

 signals:
  void progress(qint64 done, qint64 total);
  void succeeded(const QString& path);
  void failed(const QString& message, bool cancelled);

 protected:
  void run() override;

 private:
  ExportRequest req_;
  std::atomic<bool> cancel_{false};
  QStringList written_;
};

}  // namespace vmla::ui
