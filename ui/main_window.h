#pragma once
// The studio's main window: preview in the middle; prompt, settings, timeline and stats in docks
// (the layout is remembered); menus with keyboard shortcuts; projects with autosave and recovery.
#include <QMainWindow>
#include <QPointer>
#include <QTimer>

#include "core/io/project.h"

class QAction;
class QCheckBox;
class QComboBox;
class QLabel;
class QMenu;
class QPushButton;
class QSpinBox;
class QToolButton;

namespace vmla::ui {

class ExportDialog;
class PreviewPanel;
class PromptEditor;
class SeedControl;
class SettingsPanel;
class StatsPanel;
class StudioController;
class TimelinePanel;
struct Failure;
struct ModelSummary;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // Startup: offers crash recovery, then opens `path` (a project or a model file) or the default model.
  void start(const QString& path = {});

  StudioController* controller() const { return ctl_; }
  PreviewPanel* preview() const { return preview_; }
  TimelinePanel* timeline() const { return timeline_; }
  PromptEditor* promptEditor() const { return prompt_; }
  StatsPanel* stats() const { return stats_; }
  SettingsPanel* settingsPanel() const { return settings_; }
  QString projectPath() const { return project_path_; }

  // For scripted use and tests: no confirmation dialogs on close, model change or settings change.
  void setInteractive(bool on) { interactive_ = on; }

  // Actions, also reachable from menus and buttons.
  bool openProject(const QString& path);
  bool saveProject(const QString& path);
  // File > Open recent: newest first, no duplicates, at most 8, kept in QSettings. Opening a recent
  // project that no longer exists removes it from the list and says so.
  QStringList recentProjects() const;
  void openRecent(const QString& path);
  void loadModelFile(const QString& path);
  ExportDialog* openExportDialog();
  void changePromptFrom(int node, const QString& prompt, bool smooth);

 public slots:
  void generate();
  void extendOne();
  void extendMany();
  void newProject();

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 private:
  void build_actions();
  void build_docks();
  void build_menus();
  void restore_layout();
  void update_actions();
  void update_title();
  void update_status();
  void update_prompt_info(int words, const QStringList& unknown, const QStringList& dropped);
  void on_model_loaded(const ModelSummary& m);
  void on_error(const Failure& f);
  void refresh_model_combo();
  void remember_recent(const char* key, const QString& path);
  void rebuild_recent_menu();
  bool save();
  bool save_as();
  bool maybe_save();
  void open_project_dialog();
  void open_model_dialog();
  void ask_change_prompt(int node);
  void autosave();
  QString autosave_path() const;
  QString lock_path() const;
  bool offer_recovery();
  QString resolve_model(const vmla::io::Project& p);

  StudioController* ctl_;
  PreviewPanel* preview_;
  TimelinePanel* timeline_;
  PromptEditor* prompt_;
  StatsPanel* stats_;
  SettingsPanel* settings_;
  SeedControl* seed_;
  QCheckBox* smooth_;
  QLabel* prompt_info_;
  QSpinBox* chunks_;
  QPushButton *generate_btn_, *extend_btn_, *extend_n_btn_, *keep_going_btn_, *pause_btn_, *stop_btn_;
  QComboBox* model_combo_;
  QLabel *status_state_, *status_device_, *status_model_;
  QMenu* recent_menu_ = nullptr;
  QMenu* view_menu_ = nullptr;

  QAction *act_generate_, *act_extend_, *act_extend_n_, *act_keep_going_, *act_pause_, *act_stop_;
  QAction *act_new_, *act_open_, *act_save_, *act_save_as_, *act_open_model_, *act_export_, *act_quit_;
  QAction *act_play_, *act_live_, *act_prev_frame_, *act_next_frame_, *act_reset_layout_, *act_focus_prompt_;

  QString project_path_;
  QString expected_sha_;
  QTimer autosave_timer_;
  QByteArray default_state_;
  bool interactive_ = true;
  bool closing_ = false;
};

}  // namespace vmla::ui
