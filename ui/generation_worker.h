#pragma once
// The worker owns the engine: the Model, the Session and the snapshots at chunk boundaries, all
// created, used and destroyed on the worker's thread. The GUI sends one command at a time through
// queued invocations and waits for its answer (modelLoaded / sessionReady / chunkFinished / failed).
#include <QObject>
#include <QVector>
#include <map>
#include <memory>

#include "ui/engine_types.h"
#include "ui/frame_ring.h"
#include "ui/generation_control.h"

namespace vmla {
class Model;
class Session;
class SessionWorkspace;
class Snapshot;
}  // namespace vmla

namespace vmla::ui {

class GenerationWorker : public QObject {
  Q_OBJECT
 public:
  GenerationWorker(std::shared_ptr<GenerationControl> control, std::shared_ptr<FrameRing> ring);
  ~GenerationWorker() override;

 public slots:
  // Loads the model onto a new backend, warms it up where that pays (CUDA: warmUpStarted, then
  // warmUpFinished) and starts a session. Answers modelLoaded + sessionReady or failed; the model's
  // SHA-256 follows with modelHashed.
  void loadModel(const QString& path, const QString& backend, const vmla::io::ProjectSettings& settings);
  // A new session on the loaded model (all snapshots dropped). Answers sessionReady or failed.
  void configure(const vmla::io::ProjectSettings& settings);
  void run(const vmla::ui::GenJob& job);  // answers chunkFinished or failed
  void forget(const QVector<int>& nodes);  // drop the snapshots of these chunks
  void forgetAll();
  void shutdown();  // releases the session and the model (call before the thread ends)

 signals:
  void modelLoaded(const vmla::ui::ModelSummary& summary);
  void warmUpStarted();
  void warmUpFinished(double seconds);
  void modelHashed(const QString& path, const QString& sha256);
  void sessionReady(const vmla::ui::SessionSummary& summary);
  void chunkFinished(const vmla::ui::ChunkResult& result);
  void progress(const vmla::ui::LiveStats& stats);
  void failed(const vmla::ui::Failure& failure);
  void framesAvailable();

 private:
  void start_session(const vmla::io::ProjectSettings& settings);
  void warm_up(const vmla::io::ProjectSettings& settings);

  std::shared_ptr<GenerationControl> control_;
  std::shared_ptr<FrameRing> ring_;
  std::shared_ptr<vmla::Model> model_;
  // The warm-up's workspace, shared by every session of the model (one at a time); null without one.
  std::shared_ptr<vmla::SessionWorkspace> workspace_;
  std::unique_ptr<vmla::Session> session_;
  std::shared_ptr<const vmla::Snapshot> root_;  // the empty video
  // State after each chunk, least recently used first out beyond max_snapshots_ (the GUI is told, and
  // regenerates a chunk deterministically when it needs a state that was dropped).
  struct Kept {
    std::shared_ptr<const vmla::Snapshot> snapshot;
    uint64_t used = 0;
  };
  std::map<int, Kept> snapshots_;
  uint64_t use_clock_ = 0;
  size_t max_snapshots_;
  int at_node_ = -1;  // the chunk whose end state the session holds; -1: the empty video
};

}  // namespace vmla::ui
