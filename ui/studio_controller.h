#pragma once
// StudioController: the studio without widgets. Owns the chunk tree, the queue and the worker thread;
// every method is called on the GUI thread and returns at once.
//
// The queue is the list of Queued chunks on the branch on screen (the path to tip()); the worker gets
// one chunk at a time. Navigation (rewind, re-roll, branch switch, new video) stops what is running;
// extending while generating appends to the queue.
#include <QObject>
#include <QSize>
#include <QThread>
#include <memory>
#include <optional>

#include "core/io/project.h"
#include "ui/chunk_tree.h"
#include "ui/engine_types.h"
#include "ui/seed_policy.h"

namespace vmla::ui {

class FrameRing;
class GenerationControl;
class GenerationWorker;

struct ChunkStat {
  int index = 0;  // 1-based position in its video
  double ms = 0, fps = 0, realtime_factor = 0;
  size_t cache_bytes = 0, mha_cache_bytes = 0, device_used = 0;
};

class StudioController : public QObject {
  Q_OBJECT
 public:
  explicit StudioController(QObject* parent = nullptr);
  ~StudioController() override;
  // Cancels the running chunk (effective within one pass), releases the engine, ends the thread.
  void shutdown();

  // ---- model and settings --------------------------------------------------------------------
  void loadModel(const QString& path);
  // Settings change the session; chunks already generated are regenerated (the branch on screen
  // at once, the others when shown) so that frames always match the project's settings.
  void applySettings(const vmla::io::ProjectSettings& s);
  const vmla::io::ProjectSettings& settings() const { return settings_; }
  bool hasModel() const { return model_.has_value(); }
  bool modelLoading() const { return loading_; }
  // The last step of loading on backends that gain from it (CUDA): the start-up warm-up.
  bool warmingUp() const { return warming_up_; }
  double warmUpSeconds() const { return warm_up_s_; }  // of the loaded model; 0: none
  const ModelSummary& model() const { return *model_; }
  const SessionSummary& session() const { return session_; }
  QString modelPath() const { return model_path_; }
  QString modelSha256() const { return model_sha256_; }

  // ---- what new chunks get -------------------------------------------------------------------
  void setPrompt(const QString& p) { prompt_ = p; }
  QString prompt() const { return prompt_; }
  void setSmoothTransition(bool on) { smooth_ = on; }
  bool smoothTransition() const { return smooth_; }
  SeedPolicy& seeds() { return seeds_; }

  // ---- generation ----------------------------------------------------------------------------
  void generateNew(int chunks);  // a new video (the current one stays as a branch)
  void extend(int chunks);
  void setKeepGoing(bool on);
  bool keepGoing() const { return keep_going_; }
  void pause();
  void resume();
  bool paused() const { return paused_; }
  void stop();
  bool generating() const { return generating_; }
  bool workerBusy() const { return busy_; }

  // ---- timeline ------------------------------------------------------------------------------
  void rewindTo(int node);  // the video ends at `node`; what followed stays as a branch
  void reroll(int node, uint64_t seed);
  void changePromptFrom(int node, const QString& prompt, bool smooth);
  void switchTo(int node);  // show the branch through `node` (down to the leaf last viewed)
  void retry(int node);
  int tip() const { return tip_; }
  std::vector<int> path() const { return tree_.path_to(tip_); }
  std::vector<int> ghost() const { return tree_.continuation(tip_); }
  const ChunkTree& tree() const { return tree_; }
  int branchPoint() const;  // first chunk of the branch on screen that has siblings below it (or the first)

  // ---- frames of the video on screen (the path, up to the first chunk without frames) ---------
  qint64 frameCount() const;
  const uint8_t* frame(qint64 i) const;
  QSize frameSize() const;
  int fps() const;
  int nodeAtFrame(qint64 i) const;
  qint64 firstFrameOf(int node) const;  // -1 when not on screen

  // ---- statistics ----------------------------------------------------------------------------
  const std::vector<ChunkStat>& history() const { return history_; }
  const std::optional<vmla::Metrics>& lastMetrics() const { return last_metrics_; }
  int snapshotsKept() const { return snapshots_kept_; }

  // ---- projects ------------------------------------------------------------------------------
  vmla::io::Project toProject() const;
  // Replaces the tree, prompt, seeds and settings; loads `model_path` (or starts a new session) and
  // regenerates the branch on screen.
  void loadProject(const vmla::io::Project& p, const QString& model_path);
  void newProject();
  bool dirty() const { return dirty_; }
  void markClean() { dirty_ = false; }

 signals:
  void modelLoadStarted(const QString& path);
  void modelLoaded(const vmla::ui::ModelSummary& m);
  void warmUpStarted();
  void warmUpFinished(double seconds);
  void sessionReady(const vmla::ui::SessionSummary& s);
  void treeChanged();
  void nodeChanged(int id);
  void framesChanged();
  void liveStats(const vmla::ui::LiveStats& s);
  void chunkDone(int id);
  void generatingChanged(bool on);
  void pausedChanged(bool on);
  void keepGoingChanged(bool on);
  void errorOccurred(const vmla::ui::Failure& f);
  void promptChanged(const QString& prompt);
  void seedChanged(quint64 value);
  void settingsReverted(const vmla::io::ProjectSettings& s);
  void modelHashed(const QString& path, const QString& sha256);

 private:
  enum class Setup { None, Load, Configure };
  void pump();
  void append(int n);
  int add_chunk(const vmla::ChunkSpec& spec);
  void queue_path();  // queues the chunks of the branch on screen that have no frames yet
  void set_tip(int tip);
  void stop_for_navigation();
  void drop_queued();
  void invalidate_engine_state(bool frames_too);
  void forget_nodes(const std::vector<int>& ids);
  void update_generating();
  void touch() { dirty_ = true; }
  void rebuild_segments() const;

  void on_model_loaded(const ModelSummary& m);
  void on_model_hashed(const QString& path, const QString& sha);
  void on_session_ready(const SessionSummary& s);
  void on_chunk_finished(const ChunkResult& r);
  void on_failed(const Failure& f);
  void on_frames_available();

  ChunkTree tree_;
  int tip_ = -1;
  int rendering_ = -1;
  bool busy_ = false, loading_ = false, generating_ = false, paused_ = false, keep_going_ = false;
  bool warming_up_ = false;
  double warm_up_s_ = 0;
  bool dirty_ = false;
  Setup setup_ = Setup::None, in_flight_setup_ = Setup::None;
  bool regenerate_after_setup_ = false;

  QString prompt_;
  bool smooth_ = false;
  SeedPolicy seeds_;
  vmla::io::ProjectSettings settings_, session_settings_;
  QString model_path_, model_sha256_, requested_model_;
  std::optional<ModelSummary> model_;
  SessionSummary session_;
  std::vector<ChunkStat> history_;
  std::optional<vmla::Metrics> last_metrics_;
  int snapshots_kept_ = 0;
  QString created_;

  struct Segment {
    int node;
    qint64 first;
    int count;
  };
  mutable std::vector<Segment> segments_;
  mutable bool segments_dirty_ = true;

  std::shared_ptr<GenerationControl> control_;
  std::shared_ptr<FrameRing> ring_;
  QThread thread_;
  GenerationWorker* worker_ = nullptr;
};

}  // namespace vmla::ui
