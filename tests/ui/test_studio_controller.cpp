// The studio's logic without widgets (offscreen): generation on the worker thread against an engine
// run of our own, rewind, branches, prompt switches, settings, projects, cancel, pause, shutdown,
// the start-up warm-up.
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <filesystem>
#include <fstream>

#include "core/io/project.h"
#include "ui/studio_controller.h"
#include "ui_test_util.h"

using namespace vmla::ui;
using namespace vmla::ui::test;

class TestStudioController : public QObject {
  Q_OBJECT

  StudioController* ctl_ = nullptr;
  QTemporaryDir dir_;

  // The frames of each chunk on screen equal an engine run of their specs from an empty video.
  void verify_path_matches_engine(const StudioController& c, const vmla::io::ProjectSettings& settings = {}) {
    const auto path = c.path();
    QVERIFY(!path.empty());
    const auto expected = engine_chunks(specs_of(c, path), settings);
    for (size_t i = 0; i < path.size(); ++i) {
      const ChunkNode* n = c.tree().node(path[i]);
      QCOMPARE(n->state, ChunkState::Done);
      QVERIFY2(n->frames == bytes(expected[i]), qPrintable(QString("chunk %1 differs from the engine").arg(i + 1)));
    }
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    ctl_ = new StudioController;
    QSignalSpy loaded(ctl_, &StudioController::modelLoaded);
    ctl_->loadModel(model_path());
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(loaded.count(), 1);
    QVERIFY(ctl_->hasModel());
    QCOMPARE(ctl_->model().backend, QString("cpu"));
    QVERIFY(!ctl_->model().vocabulary.isEmpty());
    QTRY_VERIFY(!ctl_->modelSha256().isEmpty());
  }

  void cleanupTestCase() { delete ctl_; }

  void generateTwoChunksMatchesEngine() {
    ctl_->setPrompt("a red ball bouncing on the beach");
    ctl_->seeds().set_mode(SeedPolicy::Mode::Increment);
    ctl_->seeds().set_value(10);
    QSignalSpy done(ctl_, &StudioController::chunkDone);
    QSignalSpy live(ctl_, &StudioController::liveStats);
    ctl_->generateNew(2);
    QVERIFY(ctl_->generating());
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(done.count(), 2);
    QVERIFY(live.count() >= 2);
    QCOMPARE(ctl_->path().size(), size_t(2));
    QCOMPARE(ctl_->tree().node(ctl_->path()[0])->spec.seed, quint64(10));
    QCOMPARE(ctl_->tree().node(ctl_->path()[1])->spec.seed, quint64(11));
    QCOMPARE(ctl_->seeds().value(), quint64(12));
    QCOMPARE(ctl_->frameCount(), qint64(2 * ctl_->model().config.frames_per_chunk()));
    verify_path_matches_engine(*ctl_);
    QVERIFY(ctl_->lastMetrics().has_value());
    QVERIFY(ctl_->lastMetrics()->cache_bytes > 0);
    QVERIFY(ctl_->lastMetrics()->mha_cache_bytes > ctl_->lastMetrics()->cache_bytes);
    QCOMPARE(ctl_->history().size(), size_t(2));
  }

  void rewindAndExtendDiffersWithNewSeedMatchesWithOld() {
    const auto path = ctl_->path();
    QCOMPARE(path.size(), size_t(2));
    const ChunkNode old = *ctl_->tree().node(path[1]);

    ctl_->rewindTo(path[0]);
    QCOMPARE(ctl_->path().size(), size_t(1));
    QCOMPARE(ctl_->ghost(), std::vector<int>{path[1]});  // the old continuation is kept
    QCOMPARE(ctl_->frameCount(), qint64(old.frame_count));

    ctl_->seeds().set_mode(SeedPolicy::Mode::Fixed);
    ctl_->seeds().set_value(old.spec.seed + 1000);
    ctl_->extend(1);
    QVERIFY(wait_idle(*ctl_));
    const ChunkNode* fresh = ctl_->tree().node(ctl_->path()[1]);
    QVERIFY(fresh->id != old.id);
    QVERIFY(fresh->frames != old.frames);

    ctl_->rewindTo(path[0]);
    ctl_->seeds().set_value(old.spec.seed);
    ctl_->extend(1);
    QVERIFY(wait_idle(*ctl_));
    const ChunkNode* same = ctl_->tree().node(ctl_->path()[1]);
    QVERIFY(same->id != old.id);
    QVERIFY(same->frames == old.frames);
    QCOMPARE(ctl_->tree().children(path[0]).size(), size_t(3));  // three branches at chunk 2
  }

  void switchBackToABranchNeedsNoRegeneration() {
    const int first = ctl_->path()[0];
    const int original = ctl_->tree().children(first)[0];
    const QByteArray frames = ctl_->tree().node(original)->frames;
    ctl_->switchTo(original);
    QCOMPARE(ctl_->path(), (std::vector<int>{first, original}));
    QVERIFY(!ctl_->generating());
    QVERIFY(ctl_->tree().node(original)->frames == frames);
    // Extending the restored branch continues from its own engine state.
    ctl_->seeds().set_mode(SeedPolicy::Mode::Increment);
    ctl_->seeds().set_value(40);
    ctl_->extend(1);
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(ctl_->path().size(), size_t(3));
    verify_path_matches_engine(*ctl_);
  }

  void changePromptFromAChunkHardCutAndSmooth() {
    const auto before = ctl_->path();
    QCOMPARE(before.size(), size_t(3));
    ctl_->changePromptFrom(before[1], "a blue fish swimming in the sea", false);
    QCOMPARE(ctl_->prompt(), QString("a blue fish swimming in the sea"));
    QVERIFY(wait_idle(*ctl_));
    auto after = ctl_->path();
    QCOMPARE(after.size(), size_t(3));
    QCOMPARE(after[0], before[0]);
    for (size_t i = 1; i < 3; ++i) {
      const auto& spec = ctl_->tree().node(after[i])->spec;
      QCOMPARE(spec.prompt, std::string("a blue fish swimming in the sea"));
      QCOMPARE(spec.seed, ctl_->tree().node(before[i])->spec.seed);  // same seeds: only the prompt differs
      QVERIFY(!spec.recache);
    }
    verify_path_matches_engine(*ctl_);

    ctl_->changePromptFrom(after[2], "a green bird flying over the grass", true);
    QVERIFY(wait_idle(*ctl_));
    after = ctl_->path();
    QVERIFY(ctl_->tree().node(after[2])->spec.recache);
    verify_path_matches_engine(*ctl_);
  }

  void livePromptSwitchWhileExtending() {
    ctl_->setSmoothTransition(true);
    ctl_->setPrompt("a white cloud drifting across the sky");
    ctl_->extend(1);
    ctl_->setPrompt("a yellow star spinning in space");
    ctl_->extend(1);  // queued behind the first
    QVERIFY(wait_idle(*ctl_));
    const auto p = ctl_->path();
    QCOMPARE(ctl_->tree().node(p[p.size() - 2])->spec.prompt, std::string("a white cloud drifting across the sky"));
    QVERIFY(ctl_->tree().node(p.back())->spec.recache);
    verify_path_matches_engine(*ctl_);
    ctl_->setSmoothTransition(false);
  }

  void keepGoingUntilStopped() {
    const size_t start = ctl_->path().size();
    ctl_->setPrompt("a red ball bouncing on the beach");
    QSignalSpy done(ctl_, &StudioController::chunkDone);
    ctl_->setKeepGoing(true);
    QTRY_VERIFY_WITH_TIMEOUT(done.count() >= 3, 60000);
    ctl_->stop();
    QVERIFY(!ctl_->keepGoing());
    QVERIFY(wait_idle(*ctl_));
    QVERIFY(ctl_->path().size() >= start + 3);
    for (int id : ctl_->path()) QCOMPARE(ctl_->tree().node(id)->state, ChunkState::Done);
  }

  void cancelTakesEffectWithinOnePass() {
    ctl_->setPrompt("a red ball bouncing on the beach");
    QSignalSpy live(ctl_, &StudioController::liveStats);
    ctl_->generateNew(4);
    QTRY_VERIFY_WITH_TIMEOUT(live.count() >= 1 && ctl_->workerBusy(), 30000);
    const double pass_ms = ctl_->lastMetrics() ? ctl_->lastMetrics()->ms_last_pass : 200;
    QElapsedTimer t;
    t.start();
    ctl_->stop();
    QVERIFY(wait_idle(*ctl_, 10000));
    const qint64 ms = t.elapsed();
    qInfo("cancel took %lld ms (one pass %.0f ms)", ms, pass_ms);
    QVERIFY2(ms < qint64(2 * pass_ms) + 500, "the cancel did not take effect within one pass");
    // Chunks finished before the stop are kept, the cancelled and queued ones are gone.
    for (int id : ctl_->path()) QCOMPARE(ctl_->tree().node(id)->state, ChunkState::Done);
    QVERIFY(ctl_->path().size() < 4);
  }

  void pauseHoldsTheWorkerAndResumeContinuesExactly() {
    QSignalSpy live(ctl_, &StudioController::liveStats);
    ctl_->seeds().set_value(77);
    ctl_->generateNew(2);
    QTRY_VERIFY_WITH_TIMEOUT(live.count() >= 1, 30000);
    ctl_->pause();
    QVERIFY(ctl_->paused());
    QTest::qWait(400);
    const int during = int(live.count());
    QTest::qWait(600);
    QCOMPARE(int(live.count()), during);  // nothing runs while paused
    QVERIFY(ctl_->generating());
    ctl_->resume();
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(ctl_->path().size(), size_t(2));
    verify_path_matches_engine(*ctl_);
  }

  void projectRoundTripRegeneratesIdentically() {
    // The tree has several branches by now; save, reload in a fresh controller, compare.
    const std::string file = dir_.filePath("p.vmlaproj").toStdString();
    const auto project = ctl_->toProject();
    QVERIFY(project.chunks.size() > ctl_->path().size());
    QVERIFY(!project.model_sha256.empty());
    vmla::io::save_project(file, project);

    StudioController other;
    other.loadProject(vmla::io::load_project(file), QString::fromStdString(project.model_path));
    QVERIFY(wait_idle(other));
    QCOMPARE(other.path(), ctl_->path());
    for (int id : ctl_->path()) QVERIFY(other.tree().node(id)->frames == ctl_->tree().node(id)->frames);
    QCOMPARE(other.seeds().value(), ctl_->seeds().value());
    QCOMPARE(other.prompt(), ctl_->prompt());

    // Another branch is generated when it is shown, and matches too.
    int leaf = -1;
    for (int l : ctl_->tree().leaves())
      if (l != ctl_->tip() && ctl_->tree().node(l)->state == ChunkState::Done) leaf = l;
    QVERIFY(leaf != -1);
    other.switchTo(leaf);
    QVERIFY(other.generating());
    QVERIFY(wait_idle(other));
    for (int id : other.path()) QVERIFY(other.tree().node(id)->frames == ctl_->tree().node(id)->frames);
  }

  void settingsRegenerateTheBranch() {
    vmla::io::ProjectSettings s = ctl_->settings();
    s.steps = 2;
    ctl_->applySettings(s);
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(ctl_->session().steps, 2);
    verify_path_matches_engine(*ctl_, s);
    ctl_->applySettings({});
    QVERIFY(wait_idle(*ctl_));
    verify_path_matches_engine(*ctl_);
  }

  void badSettingsAreRevertedAndReported() {
    QSignalSpy errors(ctl_, &StudioController::errorOccurred);
    vmla::io::ProjectSettings s;
    s.attn_path = "sideways";
    ctl_->applySettings(s);
    QVERIFY(wait_idle(*ctl_));
    QCOMPARE(errors.count(), 1);
    QVERIFY(errors[0][0].value<Failure>().message.contains("sideways"));
    QCOMPARE(ctl_->settings(), vmla::io::ProjectSettings{});
    QVERIFY(ctl_->hasModel());
    ctl_->extend(1);
    QVERIFY(wait_idle(*ctl_));
    verify_path_matches_engine(*ctl_);
  }

  void brokenModelFileIsReportedAndTheWorkKept() {
    const QString broken = dir_.filePath("broken.safetensors");
    {
      std::ifstream in(model_path().toStdString(), std::ios::binary);
      std::string head(4096, '\0');
      in.read(head.data(), std::streamsize(head.size()));
      std::ofstream(broken.toStdString(), std::ios::binary) << head;
    }
    StudioController c;
    QSignalSpy errors(&c, &StudioController::errorOccurred);
    c.loadModel(broken);
    QVERIFY(wait_idle(c));
    QCOMPARE(errors.count(), 1);
    const Failure f = errors[0][0].value<Failure>();
    QVERIFY(!f.message.isEmpty());
    QVERIFY(f.details.contains(broken));
    QVERIFY(!c.hasModel());
    c.loadModel(model_path());
    QVERIFY(wait_idle(c));
    QVERIFY(c.hasModel());
  }

  void droppedSnapshotsAreRegeneratedWhenNeeded() {
    qputenv("VMLA_MAX_SNAPSHOTS", "2");
    StudioController c;
    qunsetenv("VMLA_MAX_SNAPSHOTS");
    c.loadModel(model_path());
    QVERIFY(wait_idle(c));
    c.setPrompt("a red ball bouncing on the beach");
    c.seeds().set_value(3);
    c.generateNew(4);
    QVERIFY(wait_idle(c));
    const auto path = c.path();
    QCOMPARE(c.snapshotsKept(), 2);
    QVERIFY(!c.tree().node(path[0])->has_snapshot);
    const ChunkNode old = *c.tree().node(path[1]);
    // Rewinding to chunk 1 needs its state, which was dropped: chunk 1 is generated again first.
    c.rewindTo(path[0]);
    c.seeds().set_mode(SeedPolicy::Mode::Fixed);
    c.seeds().set_value(old.spec.seed);
    QSignalSpy done(&c, &StudioController::chunkDone);
    c.extend(1);
    QVERIFY(wait_idle(c));
    QCOMPARE(done.count(), 2);
    QCOMPARE(done[0][0].toInt(), path[0]);
    QVERIFY(c.tree().node(c.path()[1])->frames == old.frames);
    verify_path_matches_engine(c);
  }

  // The CPU backend gains nothing from a warm-up; VMLA_WARMUP=1 makes it run one, so this drives the
  // studio's CUDA path: the warm-up is the last step of loading and changes no frame.
  void warmUpIsPartOfLoadingAndChangesNoFrame() {
    qputenv("VMLA_WARMUP", "1");
    StudioController c;
    QSignalSpy started(&c, &StudioController::warmUpStarted);
    QSignalSpy finished(&c, &StudioController::warmUpFinished);
    bool loading_while_warming = false, ready_after_warm_up = false;
    connect(&c, &StudioController::warmUpStarted, this, [&] { loading_while_warming = c.modelLoading() && c.warmingUp(); });
    connect(&c, &StudioController::sessionReady, this, [&] { ready_after_warm_up = finished.count() == 1; });
    c.loadModel(model_path());
    const bool idle = wait_idle(c);
    qunsetenv("VMLA_WARMUP");
    QVERIFY(idle);
    QCOMPARE(started.count(), 1);
    QCOMPARE(finished.count(), 1);
    QVERIFY(loading_while_warming);
    QVERIFY(ready_after_warm_up);
    QVERIFY(!c.warmingUp());
    QVERIFY(c.warmUpSeconds() > 0);
    c.setPrompt("a red ball bouncing on the beach");
    c.seeds().set_mode(SeedPolicy::Mode::Increment);
    c.seeds().set_value(70);
    c.generateNew(2);
    QVERIFY(wait_idle(c));
    verify_path_matches_engine(c);
  }

  void closingDuringGenerationShutsDownPromptly() {
    auto* c = new StudioController;
    c->loadModel(model_path());
    QVERIFY(wait_idle(*c));
    QSignalSpy live(c, &StudioController::liveStats);
    c->generateNew(10);
    QTRY_VERIFY_WITH_TIMEOUT(live.count() >= 1, 30000);
    QElapsedTimer t;
    t.start();
    delete c;
    qInfo("shutdown during generation took %lld ms", t.elapsed());
    QVERIFY(t.elapsed() < 3000);
  }
};

QTEST_MAIN(TestStudioController)
#include "test_studio_controller.moc"
