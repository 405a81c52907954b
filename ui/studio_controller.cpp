#include "ui/studio_controller.h"

#include <QDateTime>
#include <QFileInfo>
#include <algorithm>

#include "ui/frame_ring.h"
#include "ui/generation_control.h"
#include "ui/generation_worker.h"

namespace vmla::ui {

namespace {

void register_types() {
  static bool done = [] {
    qRegisterMetaType<ModelSummary>();
    qRegisterMetaType<SessionSummary>();
    qRegisterMetaType<GenJob>();
    qRegisterMetaType<ChunkResult>();
    qRegisterMetaType<LiveStats>();
    qRegisterMetaType<Failure>();
    qRegisterMetaType<vmla::io::ProjectSettings>();
    return true;
  }();
  (void)done;
}

QImage make_thumbnail(const ChunkNode& n) {
  if (n.frame_count == 0) return {};
  const QImage full(n.frame(n.frame_count / 2), n.width, n.height, n.width * 3, QImage::Format_RGB888);
  return full.scaled(QSize(112, 72), Qt::KeepAspectRatio, Qt::SmoothTransformation);
}

QString now_iso() { return QDateTime::currentDateTimeUtc().toString(Qt::ISODate); }

}  // namespace

StudioController::StudioController(QObject* parent)
    : QObject(parent), control_(std::make_shared<GenerationControl>()), ring_(std::make_shared<FrameRing>()) {
  register_types();
  created_ = now_iso();
  thread_.setObjectName(QStringLiteral("vmla-generation"));
  worker_ = new GenerationWorker(control_, ring_);
  worker_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
  connect(worker_, &GenerationWorker::modelLoaded, this, &StudioController::on_model_loaded);
  connect(worker_, &GenerationWorker::modelHashed, this, &StudioController::on_model_hashed);
  connect(worker_, &GenerationWorker::warmUpStarted, this, [this] {
    warming_up_ = true;
    emit warmUpStarted();
  });
  connect(worker_, &GenerationWorker::warmUpFinished, this, [this](double seconds) {
    warming_up_ = false;
    warm_up_s_ = seconds;
    emit warmUpFinished(seconds);
  });
  connect(worker_, &GenerationWorker::sessionReady, this, &StudioController::on_session_ready);
  connect(worker_, &GenerationWorker::chunkFinished, this, &StudioController::on_chunk_finished);
  connect(worker_, &GenerationWorker::failed, this, &StudioController::on_failed);
  connect(worker_, &GenerationWorker::framesAvailable, this, &StudioController::on_frames_available);
  connect(worker_, &GenerationWorker::progress, this, [this](const LiveStats& s) {
    if (ChunkNode* n = tree_.node(s.node); n && s.progress.passes > 0) {
      n->progress = double(s.progress.pass) / s.progress.passes;
      emit nodeChanged(s.node);
    }
    last_metrics_ = s.metrics;
    emit liveStats(s);
  });
  thread_.start();
}

StudioController::~StudioController() { shutdown(); }

void StudioController::shutdown() {
  if (!thread_.isRunning()) return;
  keep_going_ = false;
  control_->request_cancel();
  control_->set_paused(false);
  // The engine is released on its own thread, after the running pass notices the cancel.
  QMetaObject::invokeMethod(worker_, &GenerationWorker::shutdown, Qt::BlockingQueuedConnection);
  thread_.quit();
  thread_.wait();
  worker_ = nullptr;
}

// ---- model and settings --------------------------------------------------------------------------

void StudioController::loadModel(const QString& path) {
  requested_model_ = QFileInfo(path).absoluteFilePath();
  stop_for_navigation();
  setup_ = Setup::Load;
  regenerate_after_setup_ = true;
  loading_ = true;
  emit modelLoadStarted(requested_model_);
  pump();
}

void StudioController::applySettings(const vmla::io::ProjectSettings& s) {
  if (s == settings_ && (hasModel() || loading_)) return;
  const bool reload = s.backend != settings_.backend;
  settings_ = s;
  touch();
  if (!hasModel() && !loading_ && requested_model_.isEmpty()) return;
  stop_for_navigation();
  if (setup_ != Setup::Load) setup_ = reload ? Setup::Load : Setup::Configure;
  if (reload) loading_ = true;
  regenerate_after_setup_ = true;
  pump();
}

// ---- generation ---------------------------------------------------------------------------------

void StudioController::generateNew(int chunks) {
  stop_for_navigation();
  set_tip(-1);
  append(chunks);
}

void StudioController::extend(int chunks) {
  queue_path();  // a failed or not yet rendered chunk at the end is generated first
  append(chunks);
}

void StudioController::setKeepGoing(bool on) {
  if (keep_going_ == on) return;
  keep_going_ = on;
  emit keepGoingChanged(on);
  if (on) {
    if (paused_) resume();
    queue_path();
  }
  pump();
}

void StudioController::pause() {
  if (paused_) return;
  paused_ = true;
  control_->set_paused(true);
  emit pausedChanged(true);
}

void StudioController::resume() {
  if (!paused_) return;
  paused_ = false;
  control_->set_paused(false);
  emit pausedChanged(false);
  pump();
}

void StudioController::stop() {
  if (keep_going_) {
    keep_going_ = false;
    emit keepGoingChanged(false);
  }
  if (busy_ && rendering_ != -1) control_->request_cancel();
  if (paused_) {
    paused_ = false;
    control_->set_paused(false);
    emit pausedChanged(false);
  }
  drop_queued();
  update_generating();
}

void StudioController::append(int n) {
  for (int i = 0; i < n; ++i) {
    const ChunkNode* prev = tree_.node(tip_);
    vmla::ChunkSpec spec;
    spec.prompt = prompt_.toStdString();
    spec.seed = seeds_.take();
    spec.recache = smooth_ && prev && prev->spec.prompt != spec.prompt;
    add_chunk(spec);
  }
  emit seedChanged(seeds_.value());
  emit treeChanged();
  pump();
}

int StudioController::add_chunk(const vmla::ChunkSpec& spec) {
  const int id = tree_.add(tip_, spec, ChunkState::Queued, true);
  tip_ = id;
  segments_dirty_ = true;
  touch();
  return id;
}

void StudioController::queue_path() {
  bool changed = false;
  for (int id : tree_.path_to(tip_)) {
    ChunkNode* n = tree_.node(id);
    if (n->state == ChunkState::Pending || n->state == ChunkState::Failed) {
      n->state = ChunkState::Queued;
      n->error.clear();
      changed = true;
    }
  }
  if (changed) emit treeChanged();
}

void StudioController::drop_queued() {
  // Queued chunks that were never rendered are removed; chunks of a loaded project go back to
  // Pending, re-renders of chunks that have frames back to Done.
  const std::vector<int> old_path = path();
  std::vector<int> removed;
  for (int id : tree_.ids()) {
    ChunkNode* n = tree_.node(id);
    if (!n || n->state != ChunkState::Queued) continue;
    if (n->transient) {
      for (int r : tree_.remove(id)) removed.push_back(r);
    } else {
      n->state = n->frame_count ? ChunkState::Done : ChunkState::Pending;
    }
  }
  if (!removed.empty()) {
    tip_ = -1;
    for (int id : old_path)
      if (tree_.contains(id)) tip_ = id;
    forget_nodes(removed);
  }
  segments_dirty_ = true;
  emit treeChanged();
}

void StudioController::stop_for_navigation() {
  if (generating_ || busy_) stop();
}

void StudioController::set_tip(int tip) {
  tip_ = tip;
  if (tip != -1) tree_.remember(tip);
  segments_dirty_ = true;
  touch();
}

// ---- timeline -----------------------------------------------------------------------------------

void StudioController::rewindTo(int node) {
  if (!tree_.contains(node)) return;
  stop_for_navigation();
  set_tip(node);
  queue_path();
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::reroll(int node, uint64_t seed) {
  const ChunkNode* n = tree_.node(node);
  if (!n) return;
  vmla::ChunkSpec spec = n->spec;
  spec.seed = seed;
  const int parent = n->parent;
  stop_for_navigation();
  set_tip(parent);
  queue_path();
  add_chunk(spec);
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::changePromptFrom(int node, const QString& prompt, bool smooth) {
  const ChunkNode* n = tree_.node(node);
  if (!n) return;
  // The chunks from `node` to the end of what is on screen (or its remembered continuation) are
  // generated again with the new prompt and their old seeds.
  std::vector<int> old;
  const auto p = path();
  if (auto it = std::find(p.begin(), p.end(), node); it != p.end()) {
    old.assign(it, p.end());
    for (int g : ghost()) old.push_back(g);
  } else {
    old.push_back(node);
    for (int g : tree_.continuation(node)) old.push_back(g);
  }
  std::vector<vmla::ChunkSpec> specs;
  for (int id : old) specs.push_back(tree_.node(id)->spec);
  const int parent = n->parent;
  stop_for_navigation();
  set_tip(parent);
  queue_path();
  for (size_t i = 0; i < specs.size(); ++i) {
    vmla::ChunkSpec s = specs[i];
    s.prompt = prompt.toStdString();
    s.recache = i == 0 && smooth && parent != -1;
    add_chunk(s);
  }
  prompt_ = prompt;
  smooth_ = smooth;
  emit promptChanged(prompt);
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::switchTo(int node) {
  if (!tree_.contains(node)) return;
  stop_for_navigation();
  tree_.remember(node);
  set_tip(tree_.leaf_of(node));
  queue_path();
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::retry(int node) {
  if (!tree_.contains(node)) return;
  const auto p = path();
  if (std::find(p.begin(), p.end(), node) == p.end()) switchTo(node);
  queue_path();
  pump();
}

int StudioController::branchPoint() const {
  const auto p = path();
  int point = p.empty() ? -1 : p.front();
  for (int id : p)
    if (tree_.siblings(id).size() > 1) point = id;
  return point;
}

// ---- the queue ----------------------------------------------------------------------------------

void StudioController::pump() {
  if (busy_ || !worker_) {
    update_generating();
    return;
  }
  if (setup_ != Setup::None) {
    const Setup s = setup_;
    setup_ = Setup::None;
    in_flight_setup_ = s;
    busy_ = true;
    control_->clear_cancel();
    if (s == Setup::Load) {
      loading_ = true;
      const QString path = requested_model_.isEmpty() ? model_path_ : requested_model_;
      const auto settings = settings_;
      const QString backend = QString::fromStdString(settings.backend);
      QMetaObject::invokeMethod(worker_, [w = worker_, path, backend, settings] { w->loadModel(path, backend, settings); },
                                Qt::QueuedConnection);
    } else {
      const auto settings = settings_;
      QMetaObject::invokeMethod(worker_, [w = worker_, settings] { w->configure(settings); }, Qt::QueuedConnection);
    }
    update_generating();
    return;
  }
  if (!hasModel() || paused_) {
    update_generating();
    return;
  }

  const auto p = path();
  auto next = std::find_if(p.begin(), p.end(), [&](int id) { return tree_.node(id)->state == ChunkState::Queued; });
  if (next == p.end() && keep_going_) {
    append(1);
    return;  // append() pumps
  }
  if (next == p.end()) {
    update_generating();
    return;
  }
  // A chunk is generated from the engine state after its parent: re-render the parent first when
  // that state is gone (its frames stay on screen meanwhile).
  for (auto it = p.begin(); it != next; ++it) {
    ChunkNode* n = tree_.node(*it);
    if (n->state != ChunkState::Done) {
      n->state = ChunkState::Queued;
      next = it;
      break;
    }
  }
  if (next != p.begin()) {
    ChunkNode* parent = tree_.node(*(next - 1));
    if (!parent->has_snapshot) {
      parent->state = ChunkState::Queued;
      emit nodeChanged(parent->id);
      pump();
      return;
    }
  }

  ChunkNode* n = tree_.node(*next);
  n->state = ChunkState::Rendering;
  n->progress = 0;
  n->error.clear();
  rendering_ = n->id;
  busy_ = true;
  control_->clear_cancel();
  const GenJob job{n->id, n->parent, n->spec};
  QMetaObject::invokeMethod(worker_, [w = worker_, job] { w->run(job); }, Qt::QueuedConnection);
  emit nodeChanged(n->id);
  update_generating();
}

void StudioController::update_generating() {
  bool on = busy_ || keep_going_;
  if (!on && hasModel())
    for (int id : path())
      if (tree_.node(id)->state == ChunkState::Queued) on = true;
  if (on != generating_) {
    generating_ = on;
    emit generatingChanged(on);
  }
}

void StudioController::forget_nodes(const std::vector<int>& ids) {
  if (ids.empty() || !worker_) return;
  QVector<int> v(ids.begin(), ids.end());
  QMetaObject::invokeMethod(worker_, [w = worker_, v] { w->forget(v); }, Qt::QueuedConnection);
}

void StudioController::invalidate_engine_state(bool frames_too) {
  for (int id : tree_.ids()) {
    ChunkNode* n = tree_.node(id);
    n->has_snapshot = false;
    if (frames_too && n->state != ChunkState::Queued) {
      n->state = ChunkState::Pending;
      n->frames.clear();
      n->frame_count = 0;
      n->thumbnail = {};
    }
  }
  segments_dirty_ = true;
}

// ---- worker answers -----------------------------------------------------------------------------

void StudioController::on_model_loaded(const ModelSummary& m) {
  model_ = m;
  warm_up_s_ = 0;
  model_path_ = m.path;
  requested_model_.clear();
  if (!created_.isEmpty()) touch();
  emit modelLoaded(m);
}

void StudioController::on_model_hashed(const QString& path, const QString& sha) {
  if (path != model_path_) return;
  model_sha256_ = sha;
  emit modelHashed(path, sha);
}

void StudioController::on_session_ready(const SessionSummary& s) {
  busy_ = false;
  in_flight_setup_ = Setup::None;
  loading_ = false;
  session_ = s;
  session_settings_ = settings_;
  // A new session holds no snapshots; frames made with other settings or another model are stale.
  invalidate_engine_state(regenerate_after_setup_);
  if (regenerate_after_setup_) queue_path();
  regenerate_after_setup_ = false;
  emit sessionReady(s);
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::on_frames_available() {
  bool changed = false;
  for (auto& b : ring_->drain()) {
    ChunkNode* n = tree_.node(b.node);
    if (!n || n->state != ChunkState::Rendering) continue;
    if (b.first_frame == 0) {
      n->frames.clear();
      n->frame_count = 0;
    }
    if (b.first_frame != n->frame_count) continue;  // a batch was dropped; the result brings all frames
    n->frames.append(b.rgb);
    n->frame_count += b.count;
    n->width = b.width;
    n->height = b.height;
    changed = true;
  }
  if (changed) {
    segments_dirty_ = true;
    emit framesChanged();
  }
}

void StudioController::on_chunk_finished(const ChunkResult& r) {
  busy_ = false;
  rendering_ = -1;
  for (int id : r.evicted)
    if (ChunkNode* e = tree_.node(id)) e->has_snapshot = false;
  if (ChunkNode* n = tree_.node(r.node)) {
    n->state = ChunkState::Done;
    n->transient = false;
    n->has_snapshot = true;
    n->frames = r.rgb;
    n->frame_count = r.frames;
    n->width = r.width;
    n->height = r.height;
    n->ms = r.ms;
    n->progress = 1;
    n->thumbnail = make_thumbnail(*n);
    last_metrics_ = r.metrics;
    snapshots_kept_ = r.snapshots;
    history_.push_back({tree_.depth(n->id) + 1, r.metrics.ms_last_chunk > 0 ? r.metrics.ms_last_chunk : r.ms,
                        r.metrics.fps, r.metrics.realtime_factor, r.metrics.cache_bytes, r.metrics.mha_cache_bytes,
                        r.metrics.device_used});
    segments_dirty_ = true;
    touch();
    emit nodeChanged(n->id);
    emit chunkDone(n->id);
    emit framesChanged();
  } else {
    forget_nodes({r.node});
  }
  emit treeChanged();
  pump();
}

void StudioController::on_failed(const Failure& f) {
  busy_ = false;
  if (f.node == -1) {
    const Setup s = in_flight_setup_;
    in_flight_setup_ = Setup::None;
    loading_ = false;
    warming_up_ = false;
    requested_model_.clear();
    if (s == Setup::Configure && settings_ != session_settings_) {
      // Keep working with the settings that worked.
      settings_ = session_settings_;
      setup_ = Setup::Configure;
      emit settingsReverted(settings_);
    } else {
      model_.reset();
      regenerate_after_setup_ = false;
    }
    emit errorOccurred(f);
    emit treeChanged();
    pump();
    return;
  }
  rendering_ = -1;
  ChunkNode* n = tree_.node(f.node);
  if (n && f.cancelled) {
    if (!n->children.empty() && n->state == ChunkState::Rendering) {
      n->state = ChunkState::Queued;  // chunks were queued after it since the cancel
    } else if (n->transient) {
      const int parent = n->parent;
      const auto removed = tree_.remove(n->id);
      if (std::find(removed.begin(), removed.end(), tip_) != removed.end()) tip_ = parent;
    } else {
      n->state = n->frame_count ? ChunkState::Done : ChunkState::Pending;
    }
  } else if (n) {
    n->state = ChunkState::Failed;
    n->transient = false;
    n->error = f.message;
    if (keep_going_) {
      keep_going_ = false;
      emit keepGoingChanged(false);
    }
    drop_queued();
    emit errorOccurred(f);
  }
  segments_dirty_ = true;
  emit treeChanged();
  emit framesChanged();
  pump();
}

// ---- frames on screen ---------------------------------------------------------------------------

void StudioController::rebuild_segments() const {
  if (!segments_dirty_) return;
  segments_.clear();
  qint64 first = 0;
  for (int id : tree_.path_to(tip_)) {
    const ChunkNode* n = tree_.node(id);
    if (n->frame_count == 0) break;
    segments_.push_back({id, first, n->frame_count});
    first += n->frame_count;
  }
  segments_dirty_ = false;
}

qint64 StudioController::frameCount() const {
  rebuild_segments();
  return segments_.empty() ? 0 : segments_.back().first + segments_.back().count;
}

int StudioController::nodeAtFrame(qint64 i) const {
  rebuild_segments();
  auto it = std::upper_bound(segments_.begin(), segments_.end(), i,
                             [](qint64 v, const Segment& s) { return v < s.first; });
  if (it == segments_.begin()) return -1;
  --it;
  return i < it->first + it->count ? it->node : -1;
}

const uint8_t* StudioController::frame(qint64 i) const {
  const int id = nodeAtFrame(i);
  if (id < 0) return nullptr;
  const ChunkNode* n = tree_.node(id);
  return n->frame(int(i - firstFrameOf(id)));
}

qint64 StudioController::firstFrameOf(int node) const {
  rebuild_segments();
  for (const auto& s : segments_)
    if (s.node == node) return s.first;
  return -1;
}

QSize StudioController::frameSize() const {
  rebuild_segments();
  if (!segments_.empty()) {
    const ChunkNode* n = tree_.node(segments_.front().node);
    return {n->width, n->height};
  }
  return model_ ? QSize(model_->config.width, model_->config.height) : QSize();
}

int StudioController::fps() const { return model_ ? std::max(1, model_->config.fps) : 16; }

// ---- projects -----------------------------------------------------------------------------------

vmla::io::Project StudioController::toProject() const {
  vmla::io::Project p;
  p.model_path = model_path_.isEmpty() ? requested_model_.toStdString() : model_path_.toStdString();
  p.model_sha256 = model_sha256_.toStdString();
  p.model_name = model_ ? model_->name.toStdString() : std::string();
  p.settings = settings_;
  p.seed_mode = SeedPolicy::name(seeds_.mode());
  p.next_seed = seeds_.value();
  p.prompt = prompt_.toStdString();
  p.smooth_transition = smooth_;
  // Chunks queued by a command and not generated yet are not work to keep.
  p.chunks = tree_.to_project_chunks([](const ChunkNode& n) {
    return !(n.transient && (n.state == ChunkState::Queued || n.state == ChunkState::Rendering));
  });
  int current = tip_;
  while (current != -1 && !p.find(current)) current = tree_.node(current)->parent;
  p.current = current;
  p.created = created_.toStdString();
  p.modified = now_iso().toStdString();
  return p;
}

void StudioController::loadProject(const vmla::io::Project& p, const QString& model_path) {
  stop();
  std::vector<int> all = tree_.ids();
  forget_nodes(all);
  tree_.from_project_chunks(p.chunks);
  tip_ = p.current;
  if (tip_ != -1) tree_.remember(tip_);
  prompt_ = QString::fromStdString(p.prompt);
  smooth_ = p.smooth_transition;
  seeds_.set_mode(SeedPolicy::parse(p.seed_mode));
  seeds_.set_value(p.next_seed);
  created_ = QString::fromStdString(p.created);
  history_.clear();
  segments_dirty_ = true;
  const QString path = QFileInfo(model_path).absoluteFilePath();
  const bool reload = !hasModel() || path != model_path_ || p.settings.backend != settings_.backend;
  settings_ = p.settings;
  if (reload) {
    requested_model_ = path;
    setup_ = Setup::Load;
    loading_ = true;
    emit modelLoadStarted(path);
  } else {
    setup_ = Setup::Configure;
  }
  regenerate_after_setup_ = true;
  dirty_ = false;
  emit promptChanged(prompt_);
  emit seedChanged(seeds_.value());
  emit treeChanged();
  emit framesChanged();
  pump();
}

void StudioController::newProject() {
  stop();
  forget_nodes(tree_.ids());
  tree_.clear();
  tip_ = -1;
  history_.clear();
  created_ = now_iso();
  segments_dirty_ = true;
  dirty_ = false;
  emit treeChanged();
  emit framesChanged();
}

}  // namespace vmla::ui
