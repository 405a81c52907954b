#include "ui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QCloseEvent>
#include <QComboBox>
#include <QDateTime>
#include <QDialogButtonBox>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPushButton>
#include <QRadioButton>
#include <QScreen>
#include <QScrollArea>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QStatusBar>
#include <QStyle>
#include <QToolBar>
#include <QVBoxLayout>
#include <unistd.h>

#include "core/io/project.h"
#include "ui/error_dialog.h"
#include "ui/export_dialog.h"
#include "ui/model_locator.h"
#include "ui/preview_panel.h"
#include "ui/prompt_editor.h"
#include "ui/seed_control.h"
#include "ui/settings_panel.h"
#include "ui/stats_panel.h"
#include "ui/studio_controller.h"
#include "ui/timeline_widget.h"
#include "ui/video_view.h"

namespace vmla::ui {

namespace {

constexpr int kMaxRecent = 8;  // entries in File > Open recent and in the model list (docs/USER-GUIDE.md)
constexpr const char* kProjectFilter = "VideoMLA projects (*.vmlaproj);;JSON (*.json);;All files (*)";

QDockWidget* make_dock(const QString& title, const char* name, QWidget* content, QMainWindow* parent) {
  auto* d = new QDockWidget(title, parent);
  d->setObjectName(name);
  d->setWidget(content);
  d->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable | QDockWidget::DockWidgetClosable);
  return d;
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent), ctl_(new StudioController(this)) {
  setObjectName("mainWindow");
  setWindowIcon(QIcon(QStringLiteral(":/vmla/icon.png")));
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  resize(1480, 920);

  preview_ = new PreviewPanel(ctl_, this);
  setCentralWidget(preview_);
  build_actions();
  build_docks();
  build_menus();

  auto* bar = addToolBar(tr("Model"));
  bar->setObjectName("modelToolbar");
  bar->setMovable(false);
  bar->addWidget(new QLabel(tr(" Model "), this));
  model_combo_ = new QComboBox(this);
  model_combo_->setObjectName("modelCombo");
  model_combo_->setMinimumContentsLength(28);
  model_combo_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  model_combo_->setToolTip(tr("The model file (.safetensors); drop one on the window to open it"));
  bar->addWidget(model_combo_);
  bar->addAction(act_open_model_);
  bar->addSeparator();
  bar->addAction(act_generate_);
  bar->addAction(act_extend_);
  bar->addAction(act_keep_going_);
  bar->addAction(act_pause_);
  bar->addAction(act_stop_);
  bar->addSeparator();
  bar->addAction(act_export_);
  connect(model_combo_, qOverload<int>(&QComboBox::activated), this, [this](int i) {
    const QString path = model_combo_->itemData(i).toString();
    if (path.isEmpty()) open_model_dialog();
    else if (path != ctl_->modelPath()) loadModelFile(path);
  });

  status_state_ = new QLabel(this);
  status_state_->setObjectName("statusState");
  status_model_ = new QLabel(this);
  status_device_ = new QLabel(this);
  status_device_->setObjectName("statusDevice");
  statusBar()->addWidget(status_state_, 1);
  statusBar()->addPermanentWidget(status_model_);
  statusBar()->addPermanentWidget(status_device_);

  connect(ctl_, &StudioController::modelLoaded, this, &MainWindow::on_model_loaded);
  connect(ctl_, &StudioController::modelLoadStarted, this, [this](const QString& p) {
    status_model_->setText(tr("loading %1…").arg(QFileInfo(p).fileName()));
    update_actions();
  });
  connect(ctl_, &StudioController::warmUpStarted, this, &MainWindow::update_status);
  connect(ctl_, &StudioController::warmUpFinished, this, [this](double seconds) {
    status_device_->setToolTip(tr("Start-up warm-up: %1 s (paid at loading instead of by the first chunk)")
                                   .arg(seconds, 0, 'f', 2));
    update_status();
  });
  connect(ctl_, &StudioController::sessionReady, this, [this] {
    settings_->setSettings(ctl_->settings());
    update_actions();
    update_status();
  });
  connect(ctl_, &StudioController::settingsReverted, settings_, &SettingsPanel::setSettings);
  connect(ctl_, &StudioController::errorOccurred, this, &MainWindow::on_error);
  connect(ctl_, &StudioController::generatingChanged, this, [this] {
    update_actions();
    update_status();
  });
  connect(ctl_, &StudioController::pausedChanged, this, [this] {
    update_actions();
    update_status();
  });
  connect(ctl_, &StudioController::keepGoingChanged, act_keep_going_, &QAction::setChecked);
  connect(ctl_, &StudioController::treeChanged, this, [this] {
    update_actions();
    update_title();
  });
  connect(ctl_, &StudioController::liveStats, this, &MainWindow::update_status);
  connect(ctl_, &StudioController::chunkDone, this, &MainWindow::update_status);
  connect(ctl_, &StudioController::promptChanged, this, [this](const QString& p) {
    if (prompt_->prompt() != p.simplified()) prompt_->setPlainText(p);
    const QSignalBlocker b(smooth_);
    smooth_->setChecked(ctl_->smoothTransition());
  });
  connect(ctl_, &StudioController::modelHashed, this, [this](const QString&, const QString& sha) {
    if (!expected_sha_.isEmpty() && !sha.isEmpty() && sha != expected_sha_)
      show_error(this, tr("The model file has changed"),
                 tr("This project was made with a model file whose SHA-256 differs from %1: the video may not "
                    "regenerate exactly.")
                     .arg(ctl_->modelPath()),
                 tr("Expected SHA-256: %1\nFound SHA-256: %2").arg(expected_sha_, sha));
    expected_sha_.clear();
  });
  connect(preview_->surface(), &VideoView::uploadPathChanged, this,
          [this](const QString& p) { stats_->setUploadPath(p, preview_->surface()->uploadNote()); });
  connect(preview_, &PreviewPanel::playheadChanged, this,
          [this](qint64, int node) { timeline_->timeline()->setPlayheadNode(node); });

  autosave_timer_.setInterval(20000);
  connect(&autosave_timer_, &QTimer::timeout, this, &MainWindow::autosave);

  default_state_ = saveState();
  restore_layout();
  refresh_model_combo();
  update_actions();
  update_title();
  update_status();
}

MainWindow::~MainWindow() { ctl_->shutdown(); }

// ---- building -----------------------------------------------------------------------------------

void MainWindow::build_actions() {
  auto action = [this](const QString& text, const QKeySequence& key, const QString& tip, auto slot) {
    auto* a = new QAction(text, this);
    if (!key.isEmpty()) a->setShortcut(key);
    a->setToolTip(key.isEmpty() ? tip : tip + " (" + key.toString(QKeySequence::NativeText) + ")");
    a->setStatusTip(tip);
    connect(a, &QAction::triggered, this, slot);
    addAction(a);
    return a;
  };
  act_generate_ = action(tr("Generate"), QKeySequence(Qt::CTRL | Qt::Key_Return), tr("Generate a new video from the prompt"),
                         [this] { generate(); });
  act_generate_->setObjectName("actGenerate");
  act_extend_ = action(tr("Extend +1"), QKeySequence(Qt::CTRL | Qt::Key_E), tr("Add one chunk to the end of the video"),
                       [this] { extendOne(); });
  act_extend_->setObjectName("actExtend");
  act_extend_n_ = action(tr("Extend +N"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E),
                         tr("Add the number of chunks set next to Generate"), [this] { extendMany(); });
  act_keep_going_ = action(tr("Keep going"), QKeySequence(Qt::CTRL | Qt::Key_K),
                           tr("Keep adding chunks until Stop (edit the prompt meanwhile to steer)"), [this] {});
  act_keep_going_->setCheckable(true);
  connect(act_keep_going_, &QAction::toggled, this, [this](bool on) {
    ctl_->setPrompt(prompt_->prompt());
    ctl_->setKeepGoing(on);
  });
  act_pause_ = action(tr("Pause"), QKeySequence(Qt::CTRL | Qt::Key_P), tr("Pause or resume generation"), [this] {
    ctl_->paused() ? ctl_->resume() : ctl_->pause();
  });
  act_pause_->setObjectName("actPause");
  act_stop_ = action(tr("Stop"), QKeySequence(Qt::Key_Escape), tr("Stop generating (the chunks done are kept)"),
                     [this] { ctl_->stop(); });
  act_stop_->setObjectName("actStop");
  act_new_ = action(tr("&New project"), QKeySequence::New, tr("Start an empty project"), [this] { newProject(); });
  act_open_ = action(tr("&Open project…"), QKeySequence::Open, tr("Open a project"), [this] { open_project_dialog(); });
  act_save_ = action(tr("&Save project"), QKeySequence::Save, tr("Save the project"), [this] { save(); });
  act_save_as_ = action(tr("Save project &as…"), QKeySequence::SaveAs, tr("Save the project under a new name"),
                        [this] { save_as(); });
  act_open_model_ = action(tr("Open model…"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O),
                           tr("Open a model file (.safetensors)"), [this] { open_model_dialog(); });
  act_export_ = action(tr("Export…"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_X),
                       tr("Export the video as MP4 or PNG frames"), [this] { openExportDialog(); });
  act_quit_ = action(tr("&Quit"), QKeySequence::Quit, tr("Quit VideoMLA Studio"), [this] { close(); });
  act_play_ = action(tr("Play / pause"), QKeySequence(Qt::Key_Space), tr("Play or pause the preview"),
                     [this] { preview_->togglePlay(); });
  act_live_ = action(tr("Go live"), QKeySequence(Qt::Key_End), tr("Follow the newest frames"), [this] { preview_->goLive(); });
  act_prev_frame_ = action(tr("Previous frame"), QKeySequence(Qt::Key_Left), tr("One frame back"), [this] { preview_->step(-1); });
  act_next_frame_ = action(tr("Next frame"), QKeySequence(Qt::Key_Right), tr("One frame on"), [this] { preview_->step(1); });
  act_focus_prompt_ = action(tr("Edit prompt"), QKeySequence(Qt::CTRL | Qt::Key_L), tr("Put the cursor in the prompt"), [this] {
    prompt_->setFocus();
  });
  act_reset_layout_ = action(tr("Reset layout"), {}, tr("Put the panels back where they started"), [this] {
    restoreState(default_state_);
  });
  // Space, arrows and End still reach text fields with focus: they accept the shortcut override.
}

void MainWindow::build_docks() {
  // Prompt and generation controls.
  auto* gen = new QWidget(this);
  prompt_ = new PromptEditor(gen);
  prompt_->setObjectName("promptEditor");
  prompt_->setMinimumHeight(70);
  prompt_info_ = new QLabel(gen);
  prompt_info_->setObjectName("promptInfo");
  prompt_info_->setWordWrap(true);
  smooth_ = new QCheckBox(tr("Smooth prompt transitions (re-cache the window)"), gen);
  smooth_->setObjectName("smoothTransition");
  smooth_->setToolTip(tr("When the prompt changes between chunks: off = hard cut, on = the cached frames are re-read "
                         "under the new prompt so the scene changes gradually"));
  seed_ = new SeedControl(ctl_, gen);
  chunks_ = new QSpinBox(gen);
  chunks_->setObjectName("chunksSpin");
  chunks_->setRange(1, 500);
  chunks_->setValue(3);
  chunks_->setSuffix(tr(" chunks"));
  chunks_->setToolTip(tr("How many chunks Generate and Extend +N add"));
  auto button = [gen](QAction* a, const char* name) {
    auto* b = new QPushButton(a->text(), gen);
    b->setObjectName(name);
    b->setToolTip(a->toolTip());
    b->setCheckable(a->isCheckable());
    QObject::connect(b, &QPushButton::clicked, a, [a, b] {
      if (a->isCheckable()) a->setChecked(b->isChecked());
      else a->trigger();
    });
    QObject::connect(a, &QAction::changed, b, [a, b] {
      b->setEnabled(a->isEnabled());
      b->setText(a->text());
      b->setChecked(a->isChecked());
    });
    return b;
  };
  generate_btn_ = button(act_generate_, "generateButton");
  generate_btn_->setProperty("primary", true);
  extend_btn_ = button(act_extend_, "extendButton");
  extend_n_btn_ = button(act_extend_n_, "extendManyButton");
  keep_going_btn_ = button(act_keep_going_, "keepGoingButton");
  pause_btn_ = button(act_pause_, "pauseButton");
  stop_btn_ = button(act_stop_, "stopButton");
  auto* grid = new QGridLayout;
  grid->addWidget(generate_btn_, 0, 0);
  grid->addWidget(chunks_, 0, 1);
  grid->addWidget(extend_btn_, 1, 0);
  grid->addWidget(extend_n_btn_, 1, 1);
  grid->addWidget(keep_going_btn_, 2, 0);
  auto* ps = new QHBoxLayout;
  ps->addWidget(pause_btn_);
  ps->addWidget(stop_btn_);
  grid->addLayout(ps, 2, 1);
  auto* gl = new QVBoxLayout(gen);
  gl->addWidget(new QLabel(tr("Prompt"), gen));
  gl->addWidget(prompt_, 1);
  gl->addWidget(prompt_info_);
  gl->addWidget(smooth_);
  gl->addWidget(seed_);
  gl->addLayout(grid);
  connect(prompt_, &PromptEditor::analysisChanged, this, &MainWindow::update_prompt_info);
  connect(prompt_, &PromptEditor::submitted, this, [this] { generate(); });
  connect(prompt_, &QPlainTextEdit::textChanged, this, [this] { ctl_->setPrompt(prompt_->prompt()); });
  connect(smooth_, &QCheckBox::toggled, this, [this](bool on) { ctl_->setSmoothTransition(on); });

  settings_ = new SettingsPanel(this);
  settings_->setObjectName("settingsPanel");
  connect(settings_, &SettingsPanel::applyRequested, this, [this](const vmla::io::ProjectSettings& s) {
    if (interactive_ && !ctl_->path().empty() &&
        QMessageBox::question(this, tr("Apply settings"),
                              tr("The %1 chunks on screen are generated again with the new settings. "
                                 "Prompts, seeds and branches are kept.")
                                  .arg(ctl_->path().size()),
                              QMessageBox::Ok | QMessageBox::Cancel) != QMessageBox::Ok)
      return;
    ctl_->applySettings(s);
    settings_->setSettings(s);
  });

  timeline_ = new TimelinePanel(ctl_, this);
  auto* tl = timeline_->timeline();
  connect(tl, &TimelineWidget::chunkActivated, this, [this](int node) {
    const qint64 f = ctl_->firstFrameOf(node);
    if (f >= 0) preview_->seek(f);
  });
  connect(tl, &TimelineWidget::rewindRequested, ctl_, &StudioController::rewindTo);
  connect(tl, &TimelineWidget::switchRequested, ctl_, &StudioController::switchTo);
  connect(tl, &TimelineWidget::retryRequested, ctl_, &StudioController::retry);
  connect(tl, &TimelineWidget::rerollRequested, this, [this](int node) { ctl_->reroll(node, SeedPolicy::random()); });
  connect(tl, &TimelineWidget::changePromptRequested, this, &MainWindow::ask_change_prompt);
  connect(tl, &TimelineWidget::useSeedRequested, this, [this](quint64 seed) {
    ctl_->seeds().set_value(seed);
    ctl_->seeds().set_mode(SeedPolicy::Mode::Fixed);
    seed_->refresh();
  });

  stats_ = new StatsPanel(ctl_, this);
  stats_->setObjectName("statsPanel");
  auto* stats_scroll = new QScrollArea(this);
  stats_scroll->setWidget(stats_);
  stats_scroll->setWidgetResizable(true);
  stats_scroll->setFrameShape(QFrame::NoFrame);
  stats_scroll->setMinimumWidth(300);

  auto* d_gen = make_dock(tr("Prompt"), "dockPrompt", gen, this);
  auto* d_set = make_dock(tr("Settings"), "dockSettings", settings_, this);
  auto* d_tl = make_dock(tr("Timeline"), "dockTimeline", timeline_, this);
  auto* d_stats = make_dock(tr("Stats"), "dockStats", stats_scroll, this);
  addDockWidget(Qt::LeftDockWidgetArea, d_gen);
  addDockWidget(Qt::LeftDockWidgetArea, d_set);
  addDockWidget(Qt::BottomDockWidgetArea, d_tl);
  addDockWidget(Qt::RightDockWidgetArea, d_stats);
  resizeDocks({d_gen, d_stats}, {340, 330}, Qt::Horizontal);
  resizeDocks({d_gen, d_set}, {430, 260}, Qt::Vertical);
}

void MainWindow::build_menus() {
  auto* file = menuBar()->addMenu(tr("&File"));
  file->addAction(act_new_);
  file->addAction(act_open_);
  recent_menu_ = file->addMenu(tr("Open &recent"));
  recent_menu_->setObjectName("recentMenu");
  // Another studio window or process may have changed the list since.
  connect(recent_menu_, &QMenu::aboutToShow, this, &MainWindow::rebuild_recent_menu);
  file->addAction(act_save_);
  file->addAction(act_save_as_);
  file->addSeparator();
  file->addAction(act_open_model_);
  file->addAction(act_export_);
  file->addSeparator();
  file->addAction(act_quit_);
  auto* gen = menuBar()->addMenu(tr("&Generate"));
  for (QAction* a : {act_generate_, act_extend_, act_extend_n_, act_keep_going_, act_pause_, act_stop_}) gen->addAction(a);
  auto* play = menuBar()->addMenu(tr("&Playback"));
  for (QAction* a : {act_play_, act_live_, act_prev_frame_, act_next_frame_}) play->addAction(a);
  view_menu_ = menuBar()->addMenu(tr("&View"));
  for (auto* d : findChildren<QDockWidget*>()) view_menu_->addAction(d->toggleViewAction());
  view_menu_->addSeparator();
  view_menu_->addAction(act_focus_prompt_);
  view_menu_->addAction(act_reset_layout_);
  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("Quick start"), this, [this] {
    QMessageBox::information(
        this, tr("Quick start"),
        tr("<ol><li>Type a prompt (words the model does not know are underlined in red).</li>"
           "<li><b>Generate</b> (Ctrl+Enter) makes a new video, chunk by chunk, shown live.</li>"
           "<li><b>Extend</b> (Ctrl+E) adds chunks; <b>Keep going</b> (Ctrl+K) adds them until Stop. Edit the "
           "prompt meanwhile to switch scenes.</li>"
           "<li>In the timeline: click a chunk to play it, double-click to rewind there; the old continuation "
           "stays as a branch (‹ 1/2 › switches). Right-click to re-roll or change the prompt from there.</li>"
           "<li><b>Export</b> (Ctrl+Shift+X) writes an MP4 or PNG frames. Save the project (Ctrl+S) to "
           "regenerate it later.</li></ol>"));
  });
  help->addAction(tr("About VideoMLA Studio"), this, [this] {
    QMessageBox::about(this, tr("About VideoMLA Studio"),
                       tr("<b>VideoMLA Studio %1</b><br>Streaming video generation with a low-rank latent (MLA) "
                          "KV cache.<br>Qt %2")
                           .arg(VMLA_VERSION, qVersion()));
  });
  rebuild_recent_menu();
}

void MainWindow::restore_layout() {
  QSettings s;
  if (!restoreGeometry(s.value("window/geometry").toByteArray())) {
    // First start: most of the screen, centred.
    if (const QScreen* screen = QGuiApplication::primaryScreen()) {
      const QRect avail = screen->availableGeometry();
      const QSize size(std::min(1600, avail.width() * 9 / 10), std::min(1000, avail.height() * 9 / 10));
      setGeometry(QStyle::alignedRect(Qt::LeftToRight, Qt::AlignCenter, size, avail));
    }
  }
  restoreState(s.value("window/state").toByteArray());
  chunks_->setValue(s.value("generate/chunks", 3).toInt());
}

// ---- startup and projects -----------------------------------------------------------------------

QString MainWindow::autosave_path() const {
  return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("autosave.vmlaproj");
}

QString MainWindow::lock_path() const {
  return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("running.lock");
}

bool MainWindow::offer_recovery() {
  // A lock left by a process that is gone means the last session ended without closing.
  QFile lock(lock_path());
  bool crashed = false;
  if (lock.open(QIODevice::ReadOnly)) {
    const qint64 pid = lock.readAll().trimmed().toLongLong();
    crashed = pid > 0 && pid != qint64(getpid()) && !QFileInfo::exists(QStringLiteral("/proc/%1").arg(pid));
    lock.close();
  }
  QDir().mkpath(QFileInfo(lock_path()).absolutePath());
  if (lock.open(QIODevice::WriteOnly | QIODevice::Truncate)) lock.write(QByteArray::number(qint64(getpid())));
  lock.close();
  autosave_timer_.start();
  if (!crashed || !QFileInfo::exists(autosave_path())) return false;
  const QDateTime when = QFileInfo(autosave_path()).lastModified();
  if (interactive_ &&
      QMessageBox::question(this, tr("Recover unsaved work?"),
                            tr("VideoMLA Studio did not close properly last time. Recover the project autosaved at %1?")
                                .arg(QLocale().toString(when, QLocale::ShortFormat)),
                            QMessageBox::Yes | QMessageBox::No) != QMessageBox::Yes)
    return false;
  const QString origin = QSettings().value("autosave/origin").toString();
  if (!openProject(autosave_path())) return false;
  project_path_ = origin;
  update_title();
  statusBar()->showMessage(tr("Recovered the autosaved project"), 8000);
  return true;
}

void MainWindow::start(const QString& path) {
  if (offer_recovery()) return;
  if (!path.isEmpty()) {
    if (path.endsWith(".safetensors", Qt::CaseInsensitive)) loadModelFile(path);
    else openProject(path);
    return;
  }
  const QString model = default_model_path();
  if (!model.isEmpty()) {
    loadModelFile(model);
    if (prompt_->toPlainText().isEmpty()) prompt_->setPlainText(tr("a red ball bouncing on the beach at sunset"));
    return;
  }
  show_error(this, tr("No default model found"),
             tr("Open a model file with File > Open model, or drop a .safetensors file on the window."),
             tr("Looked in:\n") + default_model_candidates().join('\n'));
}

void MainWindow::loadModelFile(const QString& path) {
  if (!QFileInfo(path).isFile()) {
    show_error(this, tr("Model not found"), tr("%1 does not exist.").arg(path));
    return;
  }
  if (interactive_ && !ctl_->path().empty() && ctl_->hasModel() &&
      QMessageBox::question(this, tr("Change model"),
                            tr("Load %1? The chunks on screen are generated again with it; prompts, seeds and "
                               "branches are kept.")
                                .arg(QFileInfo(path).fileName()),
                            QMessageBox::Ok | QMessageBox::Cancel) != QMessageBox::Ok) {
    refresh_model_combo();
    return;
  }
  ctl_->loadModel(path);
}

QString MainWindow::resolve_model(const vmla::io::Project& p) {
  const QString saved = QString::fromStdString(p.model_path);
  if (QFileInfo(saved).isFile()) return saved;
  const QString fallback = default_model_path();
  if (!fallback.isEmpty()) {
    const QString sha = QString::fromStdString(p.model_sha256);
    try {
      if (sha.isEmpty() || QString::fromStdString(vmla::io::file_sha256(fallback.toStdString())) == sha) return fallback;
    } catch (const std::exception&) {
    }
  }
  if (!interactive_) return {};
  QMessageBox::information(this, tr("Locate the model"),
                           tr("The project's model %1 was not found. Please locate it.").arg(saved));
  return QFileDialog::getOpenFileName(this, tr("Locate %1").arg(QFileInfo(saved).fileName()), QFileInfo(saved).path(),
                                      tr("Models (*.safetensors)"));
}

bool MainWindow::openProject(const QString& path) {
  vmla::io::Project p;
  try {
    p = vmla::io::load_project(path.toStdString());
  } catch (const std::exception& e) {
    show_error(this, tr("Could not open the project"), QString::fromStdString(e.what()));
    return false;
  }
  const QString model = resolve_model(p);
  if (model.isEmpty()) {
    show_error(this, tr("Could not open the project"),
               tr("Its model file %1 is missing.").arg(QString::fromStdString(p.model_path)));
    return false;
  }
  expected_sha_ = QString::fromStdString(p.model_sha256);
  ctl_->loadProject(p, model);
  settings_->setSettings(p.settings);
  const QSignalBlocker b(prompt_);
  prompt_->setPlainText(QString::fromStdString(p.prompt));
  smooth_->setChecked(p.smooth_transition);
  seed_->refresh();
  project_path_ = path == autosave_path() ? QString() : path;
  if (!project_path_.isEmpty()) remember_recent("recentProjects", path);
  update_title();
  return true;
}

bool MainWindow::saveProject(const QString& path) {
  try {
    ctl_->setPrompt(prompt_->prompt());
    vmla::io::save_project(path.toStdString(), ctl_->toProject());
  } catch (const std::exception& e) {
    show_error(this, tr("Could not save the project"), QString::fromStdString(e.what()),
               tr("The project stays open; try another folder."));
    return false;
  }
  project_path_ = path;
  ctl_->markClean();
  remember_recent("recentProjects", path);
  QSettings().setValue("autosave/origin", path);
  update_title();
  statusBar()->showMessage(tr("Saved %1").arg(path), 5000);
  return true;
}

bool MainWindow::save() { return project_path_.isEmpty() ? save_as() : saveProject(project_path_); }

bool MainWindow::save_as() {
  const QString dir = QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation);
  QString path = QFileDialog::getSaveFileName(this, tr("Save project"),
                                              project_path_.isEmpty() ? QDir(dir).filePath("untitled.vmlaproj") : project_path_,
                                              tr(kProjectFilter));
  if (path.isEmpty()) return false;
  if (QFileInfo(path).suffix().isEmpty()) path += ".vmlaproj";
  return saveProject(path);
}

bool MainWindow::maybe_save() {
  if (!interactive_ || !ctl_->dirty() || ctl_->tree().empty()) return true;
  const auto answer = QMessageBox::question(this, tr("Save changes?"), tr("Save the project before closing it?"),
                                            QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel);
  if (answer == QMessageBox::Cancel) return false;
  return answer == QMessageBox::Discard || save();
}

void MainWindow::open_project_dialog() {
  if (!maybe_save()) return;
  const QString path = QFileDialog::getOpenFileName(this, tr("Open project"), QFileInfo(project_path_).path(), tr(kProjectFilter));
  if (!path.isEmpty()) openProject(path);
}

void MainWindow::open_model_dialog() {
  const QString path = QFileDialog::getOpenFileName(this, tr("Open model"), QFileInfo(ctl_->modelPath()).path(),
                                                    tr("Models (*.safetensors);;All files (*)"));
  if (!path.isEmpty()) loadModelFile(path);
  else refresh_model_combo();
}

void MainWindow::newProject() {
  if (!maybe_save()) return;
  ctl_->newProject();
  project_path_.clear();
  update_title();
}

void MainWindow::autosave() {
  if (!ctl_->dirty() || ctl_->tree().empty()) return;
  try {
    QDir().mkpath(QFileInfo(autosave_path()).absolutePath());
    vmla::io::save_project(autosave_path().toStdString(), ctl_->toProject());
    QSettings().setValue("autosave/origin", project_path_);
  } catch (const std::exception& e) {
    statusBar()->showMessage(tr("Autosave failed: %1").arg(QString::fromStdString(e.what())), 8000);
  }
}

void MainWindow::remember_recent(const char* key, const QString& path) {
  QSettings s;
  QStringList list = s.value(key).toStringList();
  const QString abs = QFileInfo(path).absoluteFilePath();
  list.removeAll(abs);
  list.prepend(abs);
  while (list.size() > kMaxRecent) list.removeLast();
  s.setValue(key, list);
  rebuild_recent_menu();
  if (QString(key) == "recentModels") refresh_model_combo();
}

QStringList MainWindow::recentProjects() const { return QSettings().value("recentProjects").toStringList(); }

void MainWindow::openRecent(const QString& path) {
  if (!QFileInfo::exists(path)) {
    QSettings s;
    QStringList list = s.value("recentProjects").toStringList();
    list.removeAll(path);
    s.setValue("recentProjects", list);
    rebuild_recent_menu();
    show_error(this, tr("Project not found"),
               tr("%1 no longer exists (moved, renamed or deleted). It was removed from the recent projects.")
                   .arg(path));
    return;
  }
  if (maybe_save()) openProject(path);
}

void MainWindow::rebuild_recent_menu() {
  if (!recent_menu_) return;
  recent_menu_->clear();
  // Missing files stay listed: choosing one says what happened and drops it (a file on an unmounted
  // drive should not vanish from the list silently). The actions run after the menu has closed: they
  // rebuild this menu, which deletes the action being triggered.
  for (const QString& p : recentProjects()) {
    QAction* a = recent_menu_->addAction(QFileInfo(p).fileName() + "  —  " + QFileInfo(p).path(), this, [this, p] {
      QTimer::singleShot(0, this, [this, p] { openRecent(p); });
    });
    a->setData(p);
    a->setToolTip(p);
  }
  if (!recent_menu_->isEmpty()) {
    recent_menu_->addSeparator();
    recent_menu_->addAction(tr("Clear the list"), this, [this] {
      QSettings().remove("recentProjects");
      QTimer::singleShot(0, this, &MainWindow::rebuild_recent_menu);
    })->setObjectName("clearRecent");
  }
  recent_menu_->setEnabled(!recent_menu_->isEmpty());
}

void MainWindow::refresh_model_combo() {
  const QSignalBlocker b(model_combo_);
  model_combo_->clear();
  const QString def = default_model_path();
  QStringList paths;
  if (!def.isEmpty()) paths << def;
  if (!ctl_->modelPath().isEmpty()) paths << ctl_->modelPath();
  paths << QSettings().value("recentModels").toStringList();
  paths.removeDuplicates();
  for (const QString& p : paths) {
    if (!QFileInfo(p).isFile()) continue;
    model_combo_->addItem(QFileInfo(p).fileName() + (p == def ? tr(" (default)") : QString()), p);
    model_combo_->setItemData(model_combo_->count() - 1, p, Qt::ToolTipRole);
  }
  model_combo_->addItem(tr("Open another model…"), QString());
  const int current = model_combo_->findData(ctl_->modelPath());
  model_combo_->setCurrentIndex(current >= 0 ? current : 0);
}

// ---- generation ---------------------------------------------------------------------------------

void MainWindow::generate() {
  ctl_->setPrompt(prompt_->prompt());
  ctl_->setSmoothTransition(smooth_->isChecked());
  ctl_->generateNew(chunks_->value());
  preview_->goLive();
}

void MainWindow::extendOne() {
  ctl_->setPrompt(prompt_->prompt());
  ctl_->extend(1);
}

void MainWindow::extendMany() {
  ctl_->setPrompt(prompt_->prompt());
  ctl_->extend(chunks_->value());
}

void MainWindow::changePromptFrom(int node, const QString& prompt, bool smooth) {
  {
    const QSignalBlocker b(prompt_);
    prompt_->setPlainText(prompt);
  }
  ctl_->changePromptFrom(node, prompt.simplified(), smooth);
}

void MainWindow::ask_change_prompt(int node) {
  const ChunkNode* n = ctl_->tree().node(node);
  if (!n) return;
  QDialog dlg(this);
  dlg.setWindowTitle(tr("Change the prompt from chunk %1").arg(ctl_->tree().depth(node) + 1));
  auto* editor = new PromptEditor(&dlg);
  if (ctl_->hasModel()) editor->setVocabulary(ctl_->model().vocabulary, ctl_->model().config.text_len);
  editor->setPlainText(prompt_->prompt().isEmpty() ? QString::fromStdString(n->spec.prompt) : prompt_->prompt());
  auto* cut = new QRadioButton(tr("Hard cut"), &dlg);
  auto* smooth = new QRadioButton(tr("Smooth transition (re-cache)"), &dlg);
  (smooth_->isChecked() ? smooth : cut)->setChecked(true);
  smooth->setEnabled(n->parent != -1);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &dlg);
  buttons->button(QDialogButtonBox::Ok)->setText(tr("Generate from here"));
  auto* layout = new QVBoxLayout(&dlg);
  layout->addWidget(new QLabel(tr("The chunks from here on are generated again with this prompt and their seeds; "
                                  "the old ones stay as a branch."),
                               &dlg));
  layout->addWidget(editor);
  layout->addWidget(cut);
  layout->addWidget(smooth);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::accepted, &dlg, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, &dlg, &QDialog::reject);
  connect(editor, &PromptEditor::submitted, &dlg, &QDialog::accept);
  if (dlg.exec() == QDialog::Accepted && !editor->prompt().isEmpty())
    changePromptFrom(node, editor->prompt(), smooth->isChecked());
}

ExportDialog* MainWindow::openExportDialog() {
  const QString base = project_path_.isEmpty()
                           ? QDir(QStandardPaths::writableLocation(QStandardPaths::MoviesLocation)).filePath("videomla")
                           : QFileInfo(project_path_).path() + "/" + QFileInfo(project_path_).completeBaseName();
  auto* dlg = new ExportDialog(ctl_, timeline_->timeline()->selectionRange(), base + ".mp4", this);
  dlg->setAttribute(Qt::WA_DeleteOnClose);
  dlg->setWindowModality(Qt::WindowModal);
  dlg->show();
  return dlg;
}

// ---- state display ------------------------------------------------------------------------------

void MainWindow::on_model_loaded(const ModelSummary& m) {
  prompt_->setVocabulary(m.vocabulary, m.config.text_len);
  settings_->setModelDefaults(m.config);
  status_device_->setText(QStringLiteral("  %1 · %2  ").arg(m.backend.toUpper(), m.device));
  status_device_->setToolTip(QString());
  status_model_->setText(QStringLiteral("%1 · %2M parameters%3 · %4×%5 @ %6 fps")
                             .arg(m.name)
                             .arg(double(m.params) / 1e6, 0, 'f', 1)
                             .arg(m.trained ? QString() : tr(" · untrained"))
                             .arg(m.config.width)
                             .arg(m.config.height)
                             .arg(m.config.fps));
  status_model_->setToolTip(m.path + (m.description.isEmpty() ? QString() : "\n" + m.description));
  preview_->surface()->setUploadPreference(m.backend == "cuda" ? VideoView::UploadPreference::Auto
                                                               : VideoView::UploadPreference::Host);
  remember_recent("recentModels", m.path);
  refresh_model_combo();
  update_actions();
}

void MainWindow::on_error(const Failure& f) {
  if (f.cancelled) return;
  statusBar()->showMessage(f.title + ": " + f.message, 10000);
  if (!closing_) show_error(this, f.title, f.message, f.details);
  refresh_model_combo();
  update_actions();
}

void MainWindow::update_prompt_info(int words, const QStringList& unknown, const QStringList& dropped) {
  if (words == 0) {
    prompt_info_->setText(ctl_->hasModel() ? tr("%1 words known to this model").arg(ctl_->model().vocabulary.size() - 2)
                                           : QString());
    prompt_info_->setStyleSheet("color: #9a9ca4;");
    return;
  }
  QString text = tr("%n word(s)", "", words);
  if (!unknown.isEmpty()) text += tr(" · unknown to this model: %1").arg(unknown.join(", "));
  else text += tr(" · all known");
  if (!dropped.isEmpty()) text += tr(" · %n past the prompt length (ignored)", "", int(dropped.size()));
  prompt_info_->setText(text);
  prompt_info_->setStyleSheet(unknown.isEmpty() ? "color: #7ccf95;" : "color: #ff8080;");
}

void MainWindow::update_actions() {
  const bool model = ctl_->hasModel() && !ctl_->modelLoading();
  const bool gen = ctl_->generating();
  act_generate_->setEnabled(model);
  act_extend_->setEnabled(model);
  act_extend_n_->setEnabled(model);
  act_keep_going_->setEnabled(model);
  act_pause_->setEnabled(gen || ctl_->paused());
  act_pause_->setText(ctl_->paused() ? tr("Resume") : tr("Pause"));
  act_stop_->setEnabled(gen || ctl_->paused());
  act_export_->setEnabled(ctl_->frameCount() > 0 || !ctl_->path().empty());
  act_save_->setEnabled(!ctl_->tree().empty() || !project_path_.isEmpty());
}

void MainWindow::update_title() {
  const QString name = project_path_.isEmpty() ? tr("Untitled") : QFileInfo(project_path_).fileName();
  setWindowTitle(QStringLiteral("%1%2 — VideoMLA Studio").arg(name, ctl_->dirty() ? "*" : ""));
}

void MainWindow::update_status() {
  QString s;
  if (ctl_->modelLoading() && ctl_->warmingUp()) s = tr("Loading the model: warming up %1…").arg(ctl_->model().backend.toUpper());
  else if (ctl_->modelLoading()) s = tr("Loading the model…");
  else if (!ctl_->hasModel()) s = tr("No model: open one (File > Open model)");
  else if (ctl_->paused()) s = tr("Paused");
  else if (ctl_->generating()) {
    int queued = 0, rendering = -1;
    const auto p = ctl_->path();
    for (size_t i = 0; i < p.size(); ++i) {
      const ChunkNode* n = ctl_->tree().node(p[i]);
      if (n->state == ChunkState::Queued) ++queued;
      if (n->state == ChunkState::Rendering) rendering = int(i);
    }
    s = rendering >= 0 ? tr("Generating chunk %1 (%2%)").arg(rendering + 1).arg(int(ctl_->tree().node(p[size_t(rendering)])->progress * 100))
                       : tr("Generating");
    if (queued) s += tr(" · %n queued", "", queued);
    if (ctl_->keepGoing()) s += tr(" · keep going");
  } else {
    s = tr("Ready");
    if (const auto& m = ctl_->lastMetrics()) s += tr(" · last chunk %1 ms (%2× real time)").arg(m->ms_last_chunk, 0, 'f', 0).arg(m->realtime_factor, 0, 'f', 2);
  }
  status_state_->setText(s);
}

// ---- window events ------------------------------------------------------------------------------

void MainWindow::closeEvent(QCloseEvent* e) {
  if (!maybe_save()) {
    e->ignore();
    return;
  }
  closing_ = true;
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("generate/chunks", chunks_->value());
  autosave_timer_.stop();
  ctl_->shutdown();  // cancels the running chunk within one pass
  QFile::remove(autosave_path());
  QFile::remove(lock_path());
  e->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
  for (const QUrl& u : e->mimeData()->urls()) {
    const QString p = u.toLocalFile();
    if (p.endsWith(".safetensors", Qt::CaseInsensitive) || p.endsWith(".vmlaproj", Qt::CaseInsensitive) ||
        p.endsWith(".json", Qt::CaseInsensitive)) {
      e->acceptProposedAction();
      return;
    }
  }
}

void MainWindow::dropEvent(QDropEvent* e) {
  for (const QUrl& u : e->mimeData()->urls()) {
    const QString p = u.toLocalFile();
    if (p.endsWith(".safetensors", Qt::CaseInsensitive)) {
      loadModelFile(p);
      return;
    }
    if (maybe_save()) openProject(p);
    return;
  }
}

}  // namespace vmla::ui
