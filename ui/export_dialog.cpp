#include "ui/export_dialog.h"

#include <QButtonGroup>
#include <QComboBox>
#include <QDesktopServices>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRadioButton>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>
#include <nlohmann/json.hpp>

#include "ui/studio_controller.h"

namespace vmla::ui {

std::string export_params_json(const StudioController& ctl, const std::vector<int>& chunk_ids) {
  const auto project = ctl.toProject();
  nlohmann::json chunks = nlohmann::json::array();
  for (int id : chunk_ids) {
    const ChunkNode* n = ctl.tree().node(id);
    chunks.push_back({{"prompt", n->spec.prompt}, {"seed", n->spec.seed}, {"recache", n->spec.recache}});
  }
  const auto& s = project.settings;
  nlohmann::json j = {
      {"generator", "VideoMLA Studio " VMLA_VERSION},
      {"model", {{"name", project.model_name}, {"sha256", project.model_sha256},
                 {"file", QFileInfo(QString::fromStdString(project.model_path)).fileName().toStdString()}}},
      {"settings", {{"steps", s.steps}, {"sink_frames", s.sink_frames}, {"window_frames", s.window_frames},
                    {"attn_path", s.attn_path}, {"backend", ctl.hasModel() ? ctl.model().backend.toStdString() : s.backend}}},
      {"first_chunk", chunk_ids.empty() ? 0 : ctl.tree().depth(chunk_ids.front())},
      {"chunks", chunks},
  };
  return j.dump();
}

ExportDialog::ExportDialog(StudioController* ctl, std::pair<int, int> selection, const QString& suggested_path,
                           QWidget* parent)
    : QDialog(parent), ctl_(ctl), selection_(selection) {
  setWindowTitle(tr("Export video"));
  setObjectName("exportDialog");
  mp4_ = new QRadioButton(tr("MP4 video (H.264)"), this);
  mp4_->setObjectName("exportMp4");
  png_ = new QRadioButton(tr("PNG frames (a folder of numbered images)"), this);
  png_->setObjectName("exportPng");
  preset_ = new QComboBox(this);
  preset_->setObjectName("exportPreset");
  for (const auto& p : export_presets()) preset_->addItem(p.name);
  preset_->setCurrentIndex(1);
  whole_ = new QRadioButton(this);
  whole_->setObjectName("exportWhole");
  branch_ = new QRadioButton(this);
  selected_ = new QRadioButton(this);
  path_ = new QLineEdit(suggested_path, this);
  path_->setObjectName("exportPath");
  auto* browse = new QToolButton(this);
  browse->setText(tr("…"));
  summary_ = new QLabel(this);
  status_ = new QLabel(this);
  status_->setObjectName("exportStatus");
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  bar_ = new QProgressBar(this);
  bar_->setObjectName("exportProgress");
  bar_->setRange(0, 1);
  bar_->setValue(0);

  export_ = new QPushButton(tr("Export"), this);
  export_->setObjectName("exportStart");
  export_->setProperty("primary", true);
  export_->setDefault(true);
  cancel_ = new QPushButton(tr("Cancel export"), this);
  cancel_->setObjectName("exportCancel");
  cancel_->setEnabled(false);
  open_folder_ = new QPushButton(tr("Open folder"), this);
  open_folder_->setObjectName("exportOpenFolder");
  open_folder_->setEnabled(false);
  close_ = new QPushButton(tr("Close"), this);

  auto* format = new QGroupBox(tr("Format"), this);
  auto* fl = new QVBoxLayout(format);
  fl->addWidget(mp4_);
  auto* pl = new QHBoxLayout;
  pl->addSpacing(20);
  pl->addWidget(new QLabel(tr("Quality"), this));
  pl->addWidget(preset_, 1);
  fl->addLayout(pl);
  fl->addWidget(png_);
  auto* range = new QGroupBox(tr("Range"), this);
  auto* rl = new QVBoxLayout(range);
  rl->addWidget(whole_);
  rl->addWidget(branch_);
  rl->addWidget(selected_);
  auto* where = new QHBoxLayout;
  where->addWidget(new QLabel(tr("Save to"), this));
  where->addWidget(path_, 1);
  where->addWidget(browse);
  auto* buttons = new QHBoxLayout;
  buttons->addWidget(open_folder_);
  buttons->addStretch(1);
  buttons->addWidget(cancel_);
  buttons->addWidget(export_);
  buttons->addWidget(close_);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(format);
  layout->addWidget(range);
  layout->addLayout(where);
  layout->addWidget(summary_);
  layout->addWidget(bar_);
  layout->addWidget(status_);
  layout->addLayout(buttons);
  // Only now, with each group in its own box: radio buttons are exclusive among siblings, and while
  // all five were children of the dialog, checking "whole video" unchecked "MP4".
  mp4_->setChecked(true);
  whole_->setChecked(true);

  for (auto* b : {mp4_, png_, whole_, branch_, selected_}) connect(b, &QRadioButton::toggled, this, &ExportDialog::update_summary);
  connect(preset_, &QComboBox::currentIndexChanged, this, &ExportDialog::update_summary);
  connect(png_, &QRadioButton::toggled, this, [this](bool on) {
    preset_->setEnabled(!on);
    QString p = path_->text();
    if (on && p.endsWith(".mp4")) path_->setText(p.left(p.size() - 4) + "_frames");
    if (!on && p.endsWith("_frames")) path_->setText(p.left(p.size() - 7) + ".mp4");
  });
  connect(browse, &QToolButton::clicked, this, [this] {
    const QString p = png_->isChecked()
                          ? QFileDialog::getExistingDirectory(this, tr("Folder for the PNG frames"), path_->text())
                          : QFileDialog::getSaveFileName(this, tr("Export MP4"), path_->text(), tr("MP4 video (*.mp4)"));
    if (!p.isEmpty()) path_->setText(png_->isChecked() || p.endsWith(".mp4") ? p : p + ".mp4");
  });
  connect(export_, &QPushButton::clicked, this, &ExportDialog::start);
  connect(cancel_, &QPushButton::clicked, this, [this] {
    if (job_) job_->cancel();
  });
  connect(open_folder_, &QPushButton::clicked, this, [this] {
    const QFileInfo fi(path());
    QDesktopServices::openUrl(QUrl::fromLocalFile(png_->isChecked() ? fi.absoluteFilePath() : fi.absolutePath()));
  });
  connect(close_, &QPushButton::clicked, this, &ExportDialog::reject);
  update_summary();
}

ExportDialog::~ExportDialog() = default;

void ExportDialog::setFormat(ExportRequest::Format f) { (f == ExportRequest::Format::Mp4 ? mp4_ : png_)->setChecked(true); }
void ExportDialog::setRange(Range r) { (r == Range::Whole ? whole_ : r == Range::Branch ? branch_ : selected_)->setChecked(true); }
void ExportDialog::setPath(const QString& p) { path_->setText(p); }
void ExportDialog::setPreset(int index) { preset_->setCurrentIndex(index); }
QString ExportDialog::path() const { return path_->text().trimmed(); }

std::pair<int, int> ExportDialog::range_indices() const {
  const auto p = ctl_->path();
  int last = -1;  // the last chunk with frames
  for (int i = 0; i < int(p.size()) && ctl_->tree().node(p[size_t(i)])->frame_count > 0 &&
                  ctl_->firstFrameOf(p[size_t(i)]) >= 0;
       ++i)
    last = i;
  if (last < 0) return {-1, -1};
  if (branch_->isChecked()) {
    const auto bp = std::find(p.begin(), p.end(), ctl_->branchPoint());
    return {bp == p.end() ? 0 : int(bp - p.begin()), last};
  }
  if (selected_->isChecked()) {
    if (selection_.first < 0) return {-1, -1};
    return {selection_.first, std::min(selection_.second, last)};
  }
  return {0, last};
}

void ExportDialog::update_summary() {
  const int total = int(ctl_->path().size());
  const auto bp = ctl_->path();
  const int branch_first = int(std::find(bp.begin(), bp.end(), ctl_->branchPoint()) - bp.begin());
  whole_->setText(tr("Whole video (chunks 1–%1)").arg(total));
  branch_->setText(tr("Current branch (chunks %1–%2, from where it diverges)").arg(branch_first + 1).arg(total));
  selected_->setEnabled(selection_.first >= 0);
  selected_->setText(selection_.first >= 0 ? tr("Selection (chunks %1–%2)").arg(selection_.first + 1).arg(selection_.second + 1)
                                           : tr("Selection (select chunks in the timeline; Shift-click for a range)"));
  const auto [a, b] = range_indices();
  qint64 frames = 0;
  for (int i = a; i >= 0 && i <= b; ++i) frames += ctl_->tree().node(bp[size_t(i)])->frame_count;
  summary_->setText(a < 0 ? tr("Nothing to export in this range yet.")
                          : tr("%1 frames · %2 s at %3 fps · %4×%5")
                                .arg(frames)
                                .arg(double(frames) / ctl_->fps(), 0, 'f', 2)
                                .arg(ctl_->fps())
                                .arg(ctl_->frameSize().width())
                                .arg(ctl_->frameSize().height()));
  export_->setEnabled(a >= 0 && !job_);
}

ExportRequest ExportDialog::build_request() const {
  ExportRequest r;
  r.format = png_->isChecked() ? ExportRequest::Format::Png : ExportRequest::Format::Mp4;
  r.path = path();
  r.width = ctl_->frameSize().width();
  r.height = ctl_->frameSize().height();
  r.fps = ctl_->fps();
  const auto preset = export_presets()[size_t(std::max(0, preset_->currentIndex()))];
  r.crf = preset.crf;
  r.preset = preset.preset;
  const auto p = ctl_->path();
  const auto [a, b] = range_indices();
  std::vector<int> ids;
  for (int i = a; i >= 0 && i <= b; ++i) {
    const ChunkNode* n = ctl_->tree().node(p[size_t(i)]);
    r.chunks.emplace_back(n->frames, n->frame_count);
    ids.push_back(n->id);
  }
  r.metadata["vmla_params"] = export_params_json(*ctl_, ids);
  r.metadata["comment"] = "Made with VideoMLA Studio " VMLA_VERSION;
  if (!ids.empty()) r.metadata["title"] = ctl_->tree().node(ids.front())->spec.prompt;
  return r;
}

void ExportDialog::start() {
  if (job_) return;
  if (path().isEmpty()) {
    status_->setText(tr("Choose where to save."));
    return;
  }
  ExportRequest req = build_request();
  if (req.chunks.empty()) return;
  if (req.format == ExportRequest::Format::Mp4 && !req.path.endsWith(".mp4", Qt::CaseInsensitive)) {
    req.path += ".mp4";
    path_->setText(req.path);
  }
  succeeded_ = false;
  last_error_.clear();
  bar_->setRange(0, int(req.frames()));
  bar_->setValue(0);
  status_->setText(tr("Exporting…"));
  job_ = std::make_unique<ExportJob>(std::move(req));
  connect(job_.get(), &ExportJob::progress, this, &ExportDialog::on_progress);
  connect(job_.get(), &ExportJob::succeeded, this, [this](const QString& p) { on_done(true, p, false); });
  connect(job_.get(), &ExportJob::failed, this, [this](const QString& m, bool c) { on_done(false, m, c); });
  export_->setEnabled(false);
  cancel_->setEnabled(true);
  open_folder_->setEnabled(false);
  clock_.start();
  job_->start();
}

void ExportDialog::on_progress(qint64 done, qint64 total) {
  bar_->setValue(int(done));
  const double elapsed = clock_.elapsed() / 1000.0;
  const double eta = done > 0 ? elapsed / double(done) * double(total - done) : 0;
  status_->setText(tr("Exporting frame %1 of %2 · %3 s left").arg(done).arg(total).arg(eta, 0, 'f', 1));
}

void ExportDialog::on_done(bool ok, const QString& message, bool cancelled) {
  if (job_) job_->wait();
  job_.reset();
  cancel_->setEnabled(false);
  succeeded_ = ok;
  if (ok) {
    status_->setText(tr("Done: %1 (%2 s)").arg(QDir::toNativeSeparators(message)).arg(clock_.elapsed() / 1000.0, 0, 'f', 1));
    open_folder_->setEnabled(true);
  } else {
    last_error_ = message;
    bar_->setValue(0);
    status_->setText(cancelled ? message : tr("Export failed: %1\nThe project and earlier files are untouched.").arg(message));
  }
  update_summary();
  emit finishedExport(ok, ok ? message : QString());
}

void ExportDialog::reject() {
  if (job_) {
    job_->cancel();
    job_->wait();
    job_.reset();
  }
  QDialog::reject();
}

}  // namespace vmla::ui
