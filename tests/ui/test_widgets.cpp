// Widgets without OpenGL (offscreen platform): prompt editor, chunk tree, frame ring, seeds,
// settings, timeline, stats, export dialog.
#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QRadioButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTest>

#include "ui/chunk_tree.h"
#include "ui/export_dialog.h"
#include "ui/export_job.h"
#include "ui/frame_ring.h"
#include "ui/prompt_editor.h"
#include "ui/seed_policy.h"
#include "ui/settings_panel.h"
#include "ui/stats_panel.h"
#include "ui/studio_controller.h"
#include "ui/timeline_widget.h"
#include "ui_test_util.h"

using namespace vmla::ui;
using namespace vmla::ui::test;

class TestWidgets : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

  void promptEditorMarksUnknownAndDroppedWords() {
    PromptEditor e;
    e.setVocabulary({"<pad>", "<unk>", "a", "red", "ball", "on", "the", "beach"}, 6);
    QSignalSpy spy(&e, &PromptEditor::analysisChanged);
    e.setPlainText("A red dragon on\nthe beach éé ball a red");
    QVERIFY(spy.count() >= 1);
    QCOMPARE(e.unknownWords(), QStringList{"dragon"});
    QCOMPARE(e.droppedWords(), (QStringList{"ball", "a", "red"}));
    QCOMPARE(e.wordCount(), 9);
    const QString text = e.toPlainText();
    const PromptWord* dragon = e.wordAt(int(text.indexOf("dragon")) + 2);
    QVERIFY(dragon && !dragon->known);
    QCOMPARE(dragon->word, QString("dragon"));
    QCOMPARE(dragon->length, 6);
    // Positions survive multi-byte characters and line breaks.
    const PromptWord* ball = e.wordAt(int(text.indexOf("ball")));
    QVERIFY(ball && ball->dropped);
    QCOMPARE(ball->begin, int(text.indexOf("ball") - text.indexOf("the")));
    const PromptWord* red = e.wordAt(int(text.indexOf("red")));
    QVERIFY(red && red->known && !red->dropped);
    QCOMPARE(e.prompt(), QString("A red dragon on the beach éé ball a red"));
    // No vocabulary: no checking.
    e.setVocabulary({}, 0);
    QVERIFY(e.unknownWords().isEmpty());
  }

  void chunkTreePathsBranchesAndContinuation() {
    ChunkTree t;
    const int a = t.add(-1, {"p", 1, false}, ChunkState::Done, false);
    const int b = t.add(a, {"p", 2, false}, ChunkState::Done, false);
    const int c = t.add(b, {"p", 3, false}, ChunkState::Done, false);
    const int b2 = t.add(a, {"q", 9, false}, ChunkState::Done, false);
    QCOMPARE(t.path_to(c), (std::vector<int>{a, b, c}));
    QCOMPARE(t.siblings(b), (std::vector<int>{b, b2}));
    QCOMPARE(t.leaf_of(a), b2);  // the last child added is remembered
    t.remember(c);
    QCOMPARE(t.leaf_of(a), c);
    QCOMPARE(t.continuation(a), (std::vector<int>{b, c}));
    QCOMPARE(t.continuation(-1), (std::vector<int>{a, b, c}));
    QCOMPARE(t.leaves(), (std::vector<int>{c, b2}));
    QCOMPARE(t.depth(c), 2);
    const auto removed = t.remove(b);
    QCOMPARE(removed.size(), size_t(2));
    QCOMPARE(t.leaf_of(a), b2);
    // Project round trip keeps ids and parents; transient chunks are left out.
    const int q = t.add(b2, {"r", 5, true}, ChunkState::Queued, true);
    const auto chunks = t.to_project_chunks([](const ChunkNode& n) { return !n.transient; });
    QCOMPARE(chunks.size(), size_t(2));
    ChunkTree u;
    u.from_project_chunks(chunks);
    QCOMPARE(u.path_to(b2), (std::vector<int>{a, b2}));
    QCOMPARE(u.node(b2)->spec.seed, quint64(9));
    QCOMPARE(u.node(a)->state, ChunkState::Pending);
    QVERIFY(u.add(b2, {}, ChunkState::Queued, true) > q - 1);  // new ids never collide
  }

  void frameRingCoalescesNotificationsAndDropsTheOldest() {
    FrameRing r(2);
    QVERIFY(r.push({1, 0, 1, 2, 2, QByteArray(12, 'a')}));
    QVERIFY(!r.push({1, 1, 1, 2, 2, QByteArray(12, 'b')}));  // one notification is pending already
    QVERIFY(!r.push({1, 2, 1, 2, 2, QByteArray(12, 'c')}));
    const auto got = r.drain();
    QCOMPARE(got.size(), size_t(2));
    QCOMPARE(got[0].first_frame, qint64(1));
    QCOMPARE(r.dropped(), size_t(1));
    QVERIFY(r.push({1, 3, 1, 2, 2, QByteArray(12, 'd')}));  // drained: notify again
  }

  void seedPolicies() {
    SeedPolicy s;
    s.set_value(5);
    QCOMPARE(s.take(), quint64(5));
    QCOMPARE(s.take(), quint64(6));
    s.set_mode(SeedPolicy::Mode::Fixed);
    QCOMPARE(s.take(), quint64(7));
    QCOMPARE(s.take(), quint64(7));
    s.set_mode(SeedPolicy::Mode::Random);
    const auto r1 = s.take(), r2 = s.take();
    QVERIFY(r1 != r2);
    QCOMPARE(s.value(), r2);
    QCOMPARE(SeedPolicy::parse(SeedPolicy::name(SeedPolicy::Mode::Fixed)), SeedPolicy::Mode::Fixed);
  }

  void settingsPanelRoundTripAndApply() {
    SettingsPanel p;
    vmla::io::ProjectSettings s;
    s.steps = 3;
    s.sink_frames = 0;
    s.window_frames = 4;
    s.attn_path = "expanded";
    s.backend = "cpu";
    s.decode = false;
    p.setSettings(s);
    QCOMPARE(p.settings(), s);
    QVERIFY(!p.modified());
    auto* apply = p.findChild<QPushButton*>("applySettings");
    QVERIFY(apply && !apply->isEnabled());
    p.findChild<QSpinBox*>("stepsSpin")->setValue(0);  // "model default"
    QVERIFY(p.modified());
    QVERIFY(apply->isEnabled());
    QSignalSpy spy(&p, &SettingsPanel::applyRequested);
    apply->click();
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy[0][0].value<vmla::io::ProjectSettings>().steps, -1);
  }

  void timelineShowsChunksRewindsAndSwitchesBranches() {
    StudioController ctl;
    ctl.loadModel(model_path());
    QVERIFY(wait_idle(ctl));
    ctl.setPrompt("a red ball bouncing on the beach");
    ctl.generateNew(2);
    QVERIFY(wait_idle(ctl));

    TimelinePanel panel(&ctl);
    panel.resize(900, 220);
    panel.show();
    auto* tl = panel.timeline();
    QCOMPARE(tl->cells().size(), size_t(2));
    QVERIFY(!ctl.tree().node(ctl.path()[0])->thumbnail.isNull());

    // Click selects and asks to play; double-click rewinds there.
    QSignalSpy activated(tl, &TimelineWidget::chunkActivated);
    QTest::mouseClick(tl, Qt::LeftButton, {}, tl->cellRect(1).center());
    QCOMPARE(activated.count(), 1);
    QCOMPARE(tl->selected(), ctl.path()[1]);
    connect(tl, &TimelineWidget::rewindRequested, &ctl, &StudioController::rewindTo);
    connect(tl, &TimelineWidget::switchRequested, &ctl, &StudioController::switchTo);
    const int first = ctl.path()[0], second = ctl.path()[1];
    QTest::mouseDClick(tl, Qt::LeftButton, {}, tl->cellRect(0).center());
    QCOMPARE(ctl.path().size(), size_t(1));
    QCOMPARE(tl->cells().size(), size_t(2));  // the rewound chunk stays, as a ghost
    QCOMPARE(tl->ghostStart(), 1);

    // A new chunk makes a branch; the sibling arrows switch between them.
    ctl.extend(1);
    QVERIFY(wait_idle(ctl));
    const int third = ctl.path()[1];
    QVERIFY(third != second);
    auto* combo = panel.findChild<QComboBox*>("branchCombo");
    QCOMPARE(combo->count(), 2);
    QVERIFY(combo->isEnabled());
    const QRect r = tl->cellRect(1);
    QTest::mouseClick(tl, Qt::LeftButton, {}, QPoint(r.right() - 8, r.top() + 10));  // "›"
    QCOMPARE(ctl.path(), (std::vector<int>{first, second}));
    // Clicking a ghost cell goes back to that continuation.
    ctl.rewindTo(first);
    QTest::mouseClick(tl, Qt::LeftButton, {}, tl->cellRect(1).center());
    QCOMPARE(ctl.path(), (std::vector<int>{first, second}));
    const QImage shot = panel.grab().toImage();
    QVERIFY(!shot.isNull());
  }

  void statsPanelShowsCacheAndSpeed() {
    StudioController ctl;
    ctl.loadModel(model_path());
    QVERIFY(wait_idle(ctl));
    StatsPanel stats(&ctl);
    stats.resize(320, 700);
    ctl.setPrompt("a blue cube spinning");
    ctl.generateNew(2);
    QVERIFY(wait_idle(ctl));
    stats.setUploadPath("host upload (glTexSubImage2D)");
    QTest::qWait(50);
    QVERIFY(stats.findChild<QLabel*>("statsDevice")->text().startsWith("cpu"));
    QVERIFY(stats.findChild<QLabel*>("statsUpload")->text().contains("host upload"));
    QVERIFY(stats.findChild<QLabel*>("statsCache")->text().contains("tokens"));
    QVERIFY(stats.findChild<QLabel*>("statsSpeed")->text().contains("fps"));
    QVERIFY(StatsPanel::hostResidentBytes() > 0);
    QCOMPARE(StatsPanel::bytes(1536), QString("1.5 KiB"));
    QVERIFY(!stats.grab().toImage().isNull());
  }

  void cancelledExportsLeaveEarlierFilesAlone() {
    QTemporaryDir dir;
    QByteArray chunk(12 * 64 * 64 * 3, '\0');
    for (qsizetype i = 0; i < chunk.size(); ++i) chunk[i] = char((i * 7919) % 251);
    ExportRequest r;
    r.width = r.height = 64;
    for (int i = 0; i < 400; ++i) r.chunks.emplace_back(chunk, 12);

    r.path = dir.filePath("keep.mp4");
    QFile old(r.path);
    QVERIFY(old.open(QIODevice::WriteOnly));
    old.write("the previous export");
    old.close();
    {
      ExportJob job(r);
      QSignalSpy progress(&job, &ExportJob::progress), failed(&job, &ExportJob::failed);
      job.start();
      QTRY_VERIFY_WITH_TIMEOUT(progress.count() > 0, 30000);
      job.cancel();
      QTRY_VERIFY_WITH_TIMEOUT(failed.count() == 1, 30000);
      QVERIFY(failed[0][1].toBool());
    }
    QVERIFY(old.open(QIODevice::ReadOnly));
    QCOMPARE(old.readAll(), QByteArray("the previous export"));
    QVERIFY(QDir(dir.path()).entryList(QDir::Files).size() == 1);  // no temporary file left

    r.format = ExportRequest::Format::Png;
    r.path = dir.filePath("frames");
    {
      ExportJob job(r);
      QSignalSpy progress(&job, &ExportJob::progress), failed(&job, &ExportJob::failed);
      job.start();
      QTRY_VERIFY_WITH_TIMEOUT(progress.count() > 3, 30000);
      job.cancel();
      QTRY_VERIFY_WITH_TIMEOUT(failed.count() == 1, 30000);
    }
    QVERIFY(QDir(r.path).entryList(QDir::Files).isEmpty());
  }

  void exportDialogWritesMp4AndPngAndAFailureKeepsTheOldFile() {
    StudioController ctl;
    ctl.loadModel(model_path());
    QVERIFY(wait_idle(ctl));
    ctl.setPrompt("a red ball bouncing on the beach");
    ctl.generateNew(2);
    QVERIFY(wait_idle(ctl));
    QTemporaryDir dir;
    const QString out = dir.filePath("clip.mp4");
    ExportDialog dlg(&ctl, {1, 1}, out);
    // Opens on MP4 and the whole video, each shown checked in its group; the groups are independent.
    auto checked = [&dlg](const char* name) { return dlg.findChild<QRadioButton*>(name)->isChecked(); };
    QVERIFY(checked("exportMp4"));
    QVERIFY(!checked("exportPng"));
    QVERIFY(checked("exportWhole"));
    dlg.setRange(ExportDialog::Range::Selection);
    QVERIFY(checked("exportMp4"));
    QVERIFY(!checked("exportWhole"));
    QSignalSpy finished(&dlg, &ExportDialog::finishedExport);
    dlg.start();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY2(dlg.succeeded(), qPrintable(dlg.lastError()));
    QVERIFY(QFileInfo::exists(out));
    QVERIFY(!QFileInfo::exists(out + ".partial"));
    QVERIFY(dlg.findChild<QPushButton*>("exportOpenFolder")->isEnabled());

    // An export into a folder that does not exist fails and leaves nothing behind.
    dlg.setPath(dir.filePath("missing/clip.mp4"));
    dlg.start();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 60000);
    QVERIFY(!dlg.succeeded());
    QVERIFY(!dlg.lastError().isEmpty());
    QVERIFY(QFileInfo::exists(out));

    // PNG frames of the whole video.
    dlg.setFormat(ExportRequest::Format::Png);
    dlg.setRange(ExportDialog::Range::Whole);
    dlg.setPath(dir.filePath("frames"));
    dlg.start();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 3, 60000);
    QVERIFY(dlg.succeeded());
    QCOMPARE(QDir(dir.filePath("frames")).entryList({"*.png"}).size(), int(ctl.frameCount()));
  }
};

QTEST_MAIN(TestWidgets)
#include "test_widgets.moc"
