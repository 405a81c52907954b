#pragma once
// Live statistics: cache memory (MLA next to what MHA would need), device and host memory,
// throughput, and small charts over the session's chunks. Charts are drawn with QPainter.
#include <QTimer>
#include <QWidget>
#include <vector>

class QLabel;

namespace vmla::ui {

class StudioController;
struct LiveStats;

class SparkChart : public QWidget {
  Q_OBJECT
 public:
  struct Series {
    QString name;
    QColor color;
    std::vector<double> values;
  };
  explicit SparkChart(const QString& title, const QString& unit, QWidget* parent = nullptr);
  void setSeries(std::vector<Series> s);
  void setReference(double value, const QString& label);  // a dashed line (e.g. real time)
  QSize sizeHint() const override { return {260, 86}; }
  QSize minimumSizeHint() const override { return {160, 70}; }

 protected:
  void paintEvent(QPaintEvent*) override;

 private:
  QString title_, unit_, ref_label_;
  double ref_ = -1;
  std::vector<Series> series_;
};

// Two bars to scale: the MLA cache in use and the MHA cache the same window would need.
class CacheBars : public QWidget {
  Q_OBJECT
 public:
  explicit CacheBars(QWidget* parent = nullptr);
  void setBytes(size_t mla, size_t mha, size_t capacity);
  QSize sizeHint() const override { return {260, 44}; }

 protected:
  void paintEvent(QPaintEvent*) override;

 private:
  size_t mla_ = 0, mha_ = 0, capacity_ = 0;
};

class StatsPanel : public QWidget {
  Q_OBJECT
 public:
  explicit StatsPanel(StudioController* ctl, QWidget* parent = nullptr);
  void setUploadPath(const QString& path, const QString& note = {});
  QString uploadPath() const { return upload_path_; }
  static QString bytes(double b);
  static size_t hostResidentBytes();

 private:
  void on_live(const LiveStats& s);
  void refresh();

  StudioController* ctl_;
  QString upload_path_;
  QLabel *device_, *upload_, *attn_, *progress_, *cache_, *memory_, *speed_;
  CacheBars* bars_;
  SparkChart *ms_chart_, *fps_chart_, *cache_chart_;
  QTimer host_timer_;
};

}  // namespace vmla::ui
