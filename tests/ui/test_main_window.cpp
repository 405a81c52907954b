// The whole studio under Xvfb: the main window on the default model, driven through its buttons and
// timeline like a user would, checked against an engine run of our own.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QFile>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QScopeGuard>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/io/project.h"
#include "core/io/video_probe.h"
#include "ui/export_dialog.h"
#include "ui/main_window.h"
#include "ui/preview_panel.h"
#include "ui/prompt_editor.h"
#include "ui/stats_panel.h"
#include "ui/theme.h"
#include "ui/timeline_widget.h"
#include "ui/video_view.h"
#include "fake_uploader.h"
#include "ui_test_util.h"

using namespace vmla::ui;
using namespace vmla::ui::test;

class TestMainWindow : public QObject {
  Q_OBJECT

  MainWindow* w_ = nullptr;
  QTemporaryDir dir_;

  StudioController& ctl() { return *w_->controller(); }
  TimelineWidget* timeline() { return w_->timeline()->timeline(); }

  void click(const char* button) {
    auto* b = w_->findChild<QPushButton*>(button);
    QVERIFY2(b, button);
    QVERIFY2(b->isEnabled(), button);
    QTest::mouseClick(b, Qt::LeftButton);
  }

  // The preview, paused on `frame`, shows exactly the engine's pixels for it.
  void verify_preview_shows(qint64 frame, const uint8_t* want) {
    w_->preview()->pausePlayback();
    w_->preview()->seek(frame);
    VideoView* gl = w_->preview()->surface();
    const QImage img = gl->grabFramebuffer().convertToFormat(QImage::Format_RGB888);
    const QSize fs = ctl().frameSize();
    const QRect r = gl->videoRect();
    QVERIFY2(r.width() % fs.width() == 0, "preview not at an integer scale");
    const int s = r.width() / fs.width();
    for (int y = 0; y < fs.height(); ++y)
      for (int x = 0; x < fs.width(); ++x) {
        const uint8_t* p = want + (size_t(y) * fs.width() + x) * 3;
        const uchar* g = img.constScanLine(r.y() + y * s + s / 2) + (r.x() + x * s + s / 2) * 3;
        if (g[0] != p[0] || g[1] != p[1] || g[2] != p[2])
          QFAIL(qPrintable(QString("frame %1 pixel (%2, %3) differs in the preview").arg(frame).arg(x).arg(y)));
      }
  }

  void verify_path_matches_engine() {
    const auto path = ctl().path();
    const auto expected = engine_chunks(specs_of(ctl(), path));
    for (size_t i = 0; i < path.size(); ++i)
      QVERIFY2(ctl().tree().node(path[i])->frames == bytes(expected[i]), qPrintable(QString("chunk %1").arg(i + 1)));
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    apply_dark_theme(*qApp);
    w_ = new MainWindow;
    w_->setInteractive(false);
    w_->show();
    QVERIFY(QTest::qWaitForWindowExposed(w_));
    w_->start();
    QTRY_VERIFY_WITH_TIMEOUT(ctl().hasModel() && !ctl().workerBusy(), 60000);
  }

  void cleanupTestCase() { delete w_; }

  void opensOnTheDefaultModel() {
    QVERIFY(ctl().modelPath() == QFileInfo(model_path()).absoluteFilePath());
    QVERIFY(w_->findChild<QComboBox*>("modelCombo")->currentText().contains("(default)"));
    QVERIFY(w_->findChild<QLabel*>("statusDevice")->text().contains("CPU"));
    QVERIFY(!w_->promptEditor()->toPlainText().isEmpty());
    QVERIFY(w_->findChild<QPushButton*>("generateButton")->isEnabled());
    QVERIFY(w_->stats()->uploadPath().contains("host upload"));
  }

  void keyboardShortcutsLeaveTypingAlone() {
    auto* editor = w_->promptEditor();
    editor->setFocus();
    editor->setPlainText("a red");
    editor->moveCursor(QTextCursor::End);
    const bool playing = w_->preview()->playing();
    QTest::keyClick(editor, Qt::Key_Space);
    QTest::keyClicks(editor, "ball");
    QCOMPARE(editor->toPlainText(), QString("a red ball"));
    QCOMPARE(w_->preview()->playing(), playing);
    // Ctrl+K toggles keep going from anywhere; the button follows.
    auto* keep = w_->findChild<QPushButton*>("keepGoingButton");
    QTest::keyClick(w_, Qt::Key_K, Qt::ControlModifier);
    QVERIFY(ctl().keepGoing());
    QVERIFY(keep->isChecked());
    QTest::keyClick(w_, Qt::Key_Escape);
    QVERIFY(!ctl().keepGoing());
    QVERIFY(!keep->isChecked());
    QVERIFY(wait_idle(ctl()));
    w_->newProject();
  }

  void unknownWordsAreFlagged() {
    w_->promptEditor()->setPlainText("a purple dragon flying over the sea");
    QCOMPARE(w_->promptEditor()->unknownWords(), QStringList{"dragon"});
    QVERIFY(w_->findChild<QLabel*>("promptInfo")->text().contains("dragon"));
  }

  void generateTwoChunksAndThePreviewShowsTheEngineFrames() {
    w_->promptEditor()->setPlainText("a red ball bouncing on the beach at sunset");
    w_->findChild<QSpinBox*>("chunksSpin")->setValue(2);
    ctl().seeds().set_mode(SeedPolicy::Mode::Increment);
    ctl().seeds().set_value(5);
    StallMeter stalls;
    stalls.start();
    click("generateButton");
    QVERIFY(ctl().generating());
    QVERIFY(wait_idle(ctl()));
    stalls.stop();
    qInfo("longest event-loop stall while generating: %lld ms (%lld ms without waiting for the CPU)",
          stalls.worst(), stalls.worst_own());
    if (stalls.worst() >= 100 && stalls.worst_own() < 100)
      qWarning("the machine is overloaded: other processes held the CPU for %lld ms", stalls.worst() - stalls.worst_own());
    QVERIFY2(stalls.worst_own() < 100, qPrintable(QString("the GUI stalled for %1 ms").arg(stalls.worst_own())));

    QCOMPARE(ctl().path().size(), size_t(2));
    const auto engine = engine_chunks(specs_of(ctl(), ctl().path()));
    const int per = ctl().model().config.frames_per_chunk();
    const size_t frame_bytes = size_t(ctl().frameSize().width()) * ctl().frameSize().height() * 3;
    for (qint64 f : {qint64(0), qint64(per / 2), qint64(per + 3), qint64(2 * per - 1)})
      verify_preview_shows(f, engine[size_t(f / per)].data() + size_t(f % per) * frame_bytes);
    QCOMPARE(timeline()->cells().size(), size_t(2));
  }

  void statsDockFollowsAnUploadFallback() {
    // The interop uploader can fall back to host upload for good while running; the dock must say so.
    auto failed = std::make_shared<bool>(false);
    VideoView* view = w_->preview()->surface();
    view->setUploaderFactory([failed] { return std::make_unique<test::FallingBackUploader>(failed); });
    QTRY_COMPARE(w_->stats()->uploadPath(), QString("CUDA-OpenGL interop (fake)"));
    *failed = true;
    w_->preview()->pausePlayback();
    w_->preview()->seek(1);
    w_->preview()->seek(2);
    QTRY_VERIFY(w_->stats()->uploadPath().contains("after CUDA-OpenGL interop failed: fake error"));
    view->setUploaderFactory({});
    QTRY_COMPARE(w_->stats()->uploadPath(), QString("host upload (glTexSubImage2D)"));
  }

  void rewindToChunkOneAndExtend() {
    const auto path = ctl().path();
    const ChunkNode old = *ctl().tree().node(path[1]);
    // Double-click chunk 1: the video ends there, chunk 2 stays as a branch.
    QTest::mouseDClick(timeline(), Qt::LeftButton, {}, timeline()->cellRect(0).center());
    QCOMPARE(ctl().path().size(), size_t(1));

    ctl().seeds().set_mode(SeedPolicy::Mode::Fixed);
    ctl().seeds().set_value(old.spec.seed + 1);
    click("extendButton");
    QVERIFY(wait_idle(ctl()));
    QVERIFY(ctl().tree().node(ctl().path()[1])->frames != old.frames);

    QTest::mouseDClick(timeline(), Qt::LeftButton, {}, timeline()->cellRect(0).center());
    ctl().seeds().set_value(old.spec.seed);
    click("extendButton");
    QVERIFY(wait_idle(ctl()));
    QVERIFY(ctl().tree().node(ctl().path()[1])->frames == old.frames);
    const int per = ctl().model().config.frames_per_chunk();
    verify_preview_shows(per + 1, reinterpret_cast<const uint8_t*>(old.frames.constData()) +
                                      size_t(ctl().frameSize().width()) * ctl().frameSize().height() * 3);
  }

  void branchAndSwitchBack() {
    const int first = ctl().path()[0];
    const auto branches = ctl().tree().children(first);
    QCOMPARE(branches.size(), size_t(3));
    // The "›" arrow of chunk 2 walks through the three branches and back.
    const QRect r = timeline()->cellRect(1);
    std::vector<int> seen;
    for (int i = 0; i < 3; ++i) {
      QTest::mouseClick(timeline(), Qt::LeftButton, {}, QPoint(r.right() - 8, r.top() + 10));
      QVERIFY(!ctl().generating());  // every branch is kept with its frames
      seen.push_back(ctl().path()[1]);
    }
    std::sort(seen.begin(), seen.end());
    QCOMPARE(seen, branches);
    ctl().switchTo(branches[0]);
    QCOMPARE(ctl().path(), (std::vector<int>{first, branches[0]}));
    auto* combo = w_->findChild<QComboBox*>("branchCombo");
    QCOMPARE(combo->count(), 3);
  }

  void switchPromptHardCutAndSmooth() {
    const auto path = ctl().path();
    w_->changePromptFrom(path[1], "a blue fish swimming in the sea", false);
    QVERIFY(wait_idle(ctl()));
    QCOMPARE(ctl().tree().node(ctl().path()[1])->spec.prompt, std::string("a blue fish swimming in the sea"));
    QCOMPARE(w_->promptEditor()->prompt(), QString("a blue fish swimming in the sea"));
    verify_path_matches_engine();

    // A live switch at the end, smooth: type a new prompt and extend.
    w_->findChild<QCheckBox*>("smoothTransition")->setChecked(true);
    w_->promptEditor()->setPlainText("a green bird flying over the grass");
    click("extendButton");
    QVERIFY(wait_idle(ctl()));
    const ChunkNode* last = ctl().tree().node(ctl().path().back());
    QCOMPARE(last->spec.prompt, std::string("a green bird flying over the grass"));
    QVERIFY(last->spec.recache);
    verify_path_matches_engine();
    w_->findChild<QCheckBox*>("smoothTransition")->setChecked(false);
  }

  void exportMp4AndDecodeItBack() {
    const QString out = dir_.filePath("studio.mp4");
    ExportDialog* dlg = w_->openExportDialog();
    QVERIFY(dlg);
    dlg->setPath(out);
    dlg->setPreset(3);  // lossless
    QSignalSpy finished(dlg, &ExportDialog::finishedExport);
    dlg->start();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY2(dlg->succeeded(), qPrintable(dlg->lastError()));
    dlg->close();

    const auto info = vmla::io::probe_video(out.toStdString());
    QCOMPARE(info.frames, ctl().frameCount());
    QCOMPARE(info.width, ctl().frameSize().width());
    QCOMPARE(info.fps, double(ctl().fps()));
    QCOMPARE(info.codec, std::string("h264"));
    QVERIFY(info.metadata.count("vmla_params"));
    const auto params = nlohmann::json::parse(info.metadata.at("vmla_params"));
    QCOMPARE(params["chunks"].size(), ctl().path().size());
    QCOMPARE(params["chunks"][1]["prompt"].get<std::string>(), std::string("a blue fish swimming in the sea"));
    QCOMPARE(params["chunks"][0]["seed"].get<uint64_t>(), ctl().tree().node(ctl().path()[0])->spec.seed);

    // yuv420p subsamples colour even at CRF 0: compare by PSNR, and check each decoded frame is
    // closer to its own source frame than to its neighbours (order and count preserved).
    const auto decoded = vmla::io::decode_video_rgb(out.toStdString());
    QCOMPARE(qint64(decoded.size()), ctl().frameCount());
    auto mse = [&](const std::vector<uint8_t>& a, const uint8_t* b) {
      double s = 0;
      for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      return s / double(a.size());
    };
    double worst_psnr = 1e9;
    for (qint64 i = 0; i < ctl().frameCount(); ++i) {
      const double e = mse(decoded[size_t(i)], ctl().frame(i));
      worst_psnr = std::min(worst_psnr, 10 * std::log10(255.0 * 255.0 / std::max(e, 1e-9)));
      if (i + 1 < ctl().frameCount()) QVERIFY(e < mse(decoded[size_t(i)], ctl().frame(i + 1)));
    }
    qInfo("exported MP4: worst frame PSNR %.1f dB", worst_psnr);
    QVERIFY(worst_psnr > 24);
  }

  void saveReloadAndRegenerateIdentically() {
    const QString file = dir_.filePath("story.vmlaproj");
    QVERIFY(w_->saveProject(file));
    QVERIFY(!w_->windowTitle().contains('*'));
    const auto path = ctl().path();
    std::vector<QByteArray> frames;
    for (int id : path) frames.push_back(ctl().tree().node(id)->frames);
    const size_t total = ctl().tree().size();

    w_->newProject();
    QVERIFY(ctl().tree().empty());
    QCOMPARE(ctl().frameCount(), qint64(0));
    QVERIFY(w_->openProject(file));
    QCOMPARE(ctl().tree().size(), total);
    QVERIFY(wait_idle(ctl()));
    QCOMPARE(ctl().path(), path);
    for (size_t i = 0; i < path.size(); ++i) QVERIFY(ctl().tree().node(path[i])->frames == frames[i]);
    QCOMPARE(w_->projectPath(), file);
  }

  void recoversAfterACrash() {
    // A lock from a process that is gone plus an autosave: the next start offers (here: takes) them.
    const QString data = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QDir().mkpath(data);
    vmla::io::save_project(QDir(data).filePath("autosave.vmlaproj").toStdString(), ctl().toProject());
    QFile lock(QDir(data).filePath("running.lock"));
    QVERIFY(lock.open(QIODevice::WriteOnly));
    lock.write("999999999");
    lock.close();
    MainWindow other;
    other.setInteractive(false);
    other.start();
    QCOMPARE(other.controller()->tree().size(), ctl().tree().size());
    QVERIFY(wait_idle(*other.controller()));
    for (int id : ctl().path())
      QVERIFY(other.controller()->tree().node(id)->frames == ctl().tree().node(id)->frames);
    other.close();
    QVERIFY(!QFileInfo::exists(QDir(data).filePath("autosave.vmlaproj")));
  }

  void droppedBrokenModelShowsAnErrorAndKeepsTheWork() {
    const auto path = ctl().path();
    std::vector<QByteArray> frames;
    for (int id : path) frames.push_back(ctl().tree().node(id)->frames);
    const QString broken = dir_.filePath("broken.safetensors");
    {
      QFile in(model_path()), out(broken);
      QVERIFY(in.open(QIODevice::ReadOnly) && out.open(QIODevice::WriteOnly));
      out.write(in.read(5000));
    }
    auto drop = [this](const QString& file) {
      QMimeData mime;
      mime.setUrls({QUrl::fromLocalFile(file)});
      QDragEnterEvent enter(QPoint(200, 200), Qt::CopyAction, &mime, Qt::LeftButton, {});
      QApplication::sendEvent(w_, &enter);
      QVERIFY(enter.isAccepted());
      QDropEvent drop(QPointF(200, 200), Qt::CopyAction, &mime, Qt::LeftButton, {});
      QApplication::sendEvent(w_, &drop);
    };
    drop(broken);
    QMessageBox* box = nullptr;
    QTRY_VERIFY_WITH_TIMEOUT((box = w_->findChild<QMessageBox*>("errorBox")) && box->isVisible(), 30000);
    QVERIFY(box->detailedText().contains(broken));
    QVERIFY(box->informativeText().contains("kept"));
    box->close();
    QVERIFY(!ctl().hasModel());
    QCOMPARE(ctl().path(), path);  // prompts, seeds, branches stay

    // Dropping the default model back regenerates the video exactly.
    drop(model_path());
    QTRY_VERIFY_WITH_TIMEOUT(ctl().hasModel(), 30000);
    QVERIFY(wait_idle(ctl()));
    for (size_t i = 0; i < path.size(); ++i) QVERIFY(ctl().tree().node(path[i])->frames == frames[i]);
  }

  void recentProjectsNewestFirstCappedPersistedAndPruned() {
    // A settings scope of its own, removed afterwards: nothing of the user's or the other tests'.
    const QString org = QCoreApplication::organizationName();
    QCoreApplication::setOrganizationName(QString("VideoMLA-test-recent-%1").arg(QCoreApplication::applicationPid()));
    const auto restore = qScopeGuard([&] {
      QSettings s;
      const QString file = s.fileName();
      s.clear();
      s.sync();
      QFile::remove(file);
      QDir().rmdir(QFileInfo(file).path());
      QCoreApplication::setOrganizationName(org);
    });
    QVERIFY(w_->recentProjects().isEmpty());
    auto* menu = w_->findChild<QMenu*>("recentMenu");
    QVERIFY(menu);
    auto entries = [](QMenu* m) {
      QStringList out;
      for (QAction* a : m->actions())
        if (!a->data().toString().isEmpty()) out << a->data().toString();
      return out;
    };
    auto entry = [](QMenu* m, const QString& path) -> QAction* {
      for (QAction* a : m->actions())
        if (a->data().toString() == path) return a;
      return nullptr;
    };

    // Ten saved projects, told apart by their prompts: the newest eight are listed, newest first.
    const QStringList colours = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "gray"};
    QStringList files;
    w_->newProject();
    for (const QString& colour : colours) {
      files << QFileInfo(dir_.filePath(colour + ".vmlaproj")).absoluteFilePath();
      w_->promptEditor()->setPlainText("a " + colour + " ball bouncing on the beach");
      QVERIFY(w_->saveProject(files.back()));
    }
    const int kMax = 8;  // as documented in docs/USER-GUIDE.md
    QStringList want;
    for (int i = 9; i >= 10 - kMax; --i) want << files[i];
    QCOMPARE(w_->recentProjects(), want);
    QCOMPARE(entries(menu), want);
    QVERIFY(menu->isEnabled());

    // Saving a listed project again moves it to the top without a duplicate.
    w_->promptEditor()->setPlainText("a blue ball bouncing on the beach");
    QVERIFY(w_->saveProject(files[4]));
    want.removeAll(files[4]);
    want.prepend(files[4]);
    QCOMPARE(w_->recentProjects(), want);

    // Opening one that had dropped off the list puts it back on top; the oldest goes.
    QVERIFY(w_->openProject(files[1]));
    QVERIFY(wait_idle(ctl()));
    want.prepend(files[1]);
    want.removeLast();
    QCOMPARE(w_->recentProjects(), want);
    QCOMPARE(w_->recentProjects().size(), kMax);

    // A new window (the next start) lists the same projects.
    {
      MainWindow other;
      other.setInteractive(false);
      QCOMPARE(other.recentProjects(), want);
      QCOMPARE(entries(other.findChild<QMenu*>("recentMenu")), want);
    }

    // Choosing an entry in the menu opens that project.
    QAction* green = entry(menu, files[3]);
    QVERIFY(green);
    green->trigger();
    QTRY_COMPARE(w_->projectPath(), files[3]);
    QVERIFY(wait_idle(ctl()));
    QCOMPARE(w_->promptEditor()->toPlainText(), QString("a green ball bouncing on the beach"));
    QCOMPARE(w_->recentProjects().first(), files[3]);

    // A project deleted since is still listed; choosing it says so and drops it, the open one stays.
    QVERIFY(QFile::remove(files[7]));
    QAction* white = entry(menu, files[7]);
    QVERIFY(white);
    white->trigger();
    QMessageBox* box = nullptr;
    QTRY_VERIFY([&] {
      for (auto* b : w_->findChildren<QMessageBox*>("errorBox"))
        if (b->isVisible() && b->informativeText().contains(files[7])) box = b;
      return box != nullptr;
    }());
    QVERIFY(box->text().contains("not found"));
    QVERIFY(box->informativeText().contains("removed from the recent projects"));
    box->close();
    QVERIFY(!w_->recentProjects().contains(files[7]));
    QVERIFY(!entries(menu).contains(files[7]));
    QCOMPARE(w_->recentProjects().size(), kMax - 1);
    QCOMPARE(w_->projectPath(), files[3]);

    // Clear the list.
    QAction* clear = nullptr;
    for (QAction* a : menu->actions())
      if (a->objectName() == "clearRecent") clear = a;
    QVERIFY(clear);
    clear->trigger();
    QVERIFY(w_->recentProjects().isEmpty());
    QTRY_VERIFY(!menu->isEnabled());
  }

  void closingDuringGenerationShutsDownCleanly() {
    w_->findChild<QSpinBox*>("chunksSpin")->setValue(10);
    QSignalSpy live(&ctl(), &StudioController::liveStats);
    click("generateButton");
    QTRY_VERIFY_WITH_TIMEOUT(live.count() >= 1, 30000);
    QElapsedTimer t;
    t.start();
    QVERIFY(w_->close());
    qInfo("closing during generation took %lld ms", t.elapsed());
    QVERIFY(t.elapsed() < 3000);
  }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
