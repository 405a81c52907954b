#pragma once
// Export: MP4 with a quality preset or PNG frames; range (whole video, current branch, selection);
// progress with ETA; cancel; "Open folder" when done.
#include <QDialog>
#include <QElapsedTimer>
#include <memory>

#include "ui/export_job.h"

class QButtonGroup;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;

namespace vmla::ui {

class StudioController;

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  enum class Range { Whole, Branch, Selection };
  // selection: path indices (inclusive), or (-1, -1)
  ExportDialog(StudioController* ctl, std::pair<int, int> selection, const QString& suggested_path,
               QWidget* parent = nullptr);
  ~ExportDialog() override;

  void setFormat(ExportRequest::Format f);
  void setRange(Range r);
  void setPath(const QString& p);
  void setPreset(int index);
  QString path() const;
  bool running() const { return job_ != nullptr; }
  QString lastError() const { return last_error_; }
  bool succeeded() const { return succeeded_; }

 public slots:
  void start();

 signals:
  void finishedExport(bool ok, const QString& path);

 protected:
  void reject() override;

 private:
  ExportRequest build_request() const;
  std::pair<int, int> range_indices() const;
  void update_summary();
  void on_progress(qint64 done, qint64 total);
  void on_done(bool ok, const QString& message, bool cancelled);

  StudioController* ctl_;
  std::pair<int, int> selection_;
  QRadioButton *mp4_, *png_, *whole_, *branch_, *selected_;
  QComboBox* preset_;
  QLineEdit* path_;
  QLabel *summary_, *status_;
  QProgressBar* bar_;
  QPushButton *export_, *cancel_, *open_folder_, *close_;
  std::unique_ptr<ExportJob> job_;
  QElapsedTimer clock_;
  QString last_error_;
  bool succeeded_ = false;
};

// The generation parameters embedded in an export: model, settings and chunk specs, as JSON.
std::string export_params_json(const StudioController& ctl, const std::vector<int>& chunk_ids);

}  // namespace vmla::ui
