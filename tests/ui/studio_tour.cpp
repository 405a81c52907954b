// studio_tour: drives the studio on the default model through a short session and saves
// screenshots (tools/screenshots.sh runs it under Xvfb).  Usage: studio_tour OUTPUT_DIR
#include <QApplication>
#include <QCheckBox>
#include <QDir>
#include <QPushButton>
#include <QScreen>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTest>
#include <QTimer>
#include <cstdio>

#include "ui/export_dialog.h"
#include "ui/main_window.h"
#include "ui/preview_panel.h"
#include "ui/prompt_editor.h"
#include "ui/studio_controller.h"
#include "ui/theme.h"
#include "ui/timeline_widget.h"

using namespace vmla::ui;

namespace {

QString out_dir;

void shot(const char* name) {
  QTest::qWait(300);  // let the last paints reach the screen
  const QString path = QDir(out_dir).filePath(QString(name) + ".png");
  QGuiApplication::primaryScreen()->grabWindow(0).save(path);
  std::printf("wrote %s\n", qPrintable(path));
}

bool wait_for(const std::function<bool()>& done, int timeout_ms = 300000) {
  QElapsedTimer t;
  t.start();
  while (!done()) {
    if (t.elapsed() > timeout_ms) return false;
    QTest::qWait(20);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: studio_tour OUTPUT_DIR\n");
    return 2;
  }
  out_dir = QString::fromLocal8Bit(argv[1]);
  QDir().mkpath(out_dir);
  QStandardPaths::setTestModeEnabled(true);  // no settings or autosaves of the user's
  QApplication::setApplicationName("VideoMLA Studio");
  apply_dark_theme(app);

  MainWindow w;
  w.setInteractive(false);
  w.setGeometry(QGuiApplication::primaryScreen()->availableGeometry());
  w.show();
  w.start();
  StudioController& c = *w.controller();
  if (!wait_for([&] { return c.hasModel() && !c.workerBusy(); })) return 1;
  std::printf("model: %s (%s)\n", qPrintable(c.model().path), c.model().trained ? "trained" : "UNTRAINED");
  if (!c.model().trained) std::fprintf(stderr, "warning: the model is untrained: the screenshots will show noise\n");
  auto idle = [&] { return !c.generating() && !c.workerBusy(); };

  // A prompt with a word the model does not know, then a clean one; generate four chunks.
  w.promptEditor()->setPlainText("a red ball bouncing on the beach at sunset with a dragon");
  QTest::qWait(200);
  w.promptEditor()->setPlainText("a red ball bouncing on the beach at sunset");
  w.findChild<QSpinBox*>("chunksSpin")->setValue(4);
  c.seeds().set_value(1);
  QTest::mouseClick(w.findChild<QPushButton*>("generateButton"), Qt::LeftButton);
  wait_for([&] { return c.path().size() == 4 && c.tree().node(c.path()[2])->state == ChunkState::Rendering &&
                        c.tree().node(c.path()[2])->progress > 0.3; });
  shot("studio-generating");
  if (!wait_for(idle)) return 1;

  // Rewind to chunk 2 and re-roll chunk 3 (a branch), then change the prompt from chunk 1: another
  // branch, in a setting and time of day the trained model renders (it keeps the setting of a
  // running video, so a switch in the middle would not show).
  const auto path = c.path();
  c.rewindTo(path[1]);
  shot("studio-rewound");
  c.reroll(path[2], 4242);
  if (!wait_for(idle)) return 1;
  w.changePromptFrom(c.path()[0], "a red ball bouncing on a grass field at noon", false);
  c.extend(1);
  if (!wait_for(idle)) return 1;
  w.timeline()->timeline()->select(c.path()[0]);
  w.preview()->pausePlayback();
  w.preview()->seek(c.firstFrameOf(c.path()[1]) + 6);
  shot("studio-branches");

  ExportDialog* dlg = w.openExportDialog();
  dlg->setPath(QDir(QDir::tempPath()).filePath("videomla-tour.mp4"));
  dlg->start();
  wait_for([&] { return !dlg->running(); });
  shot("studio-export");
  dlg->close();
  return 0;
}
