#include "ui/generation_worker.h"

#include <QElapsedTimer>
#include <QFileInfo>
#include <algorithm>
#include <cxxabi.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <typeinfo>
#include <unistd.h>

#include "core/io/project.h"
#include "core/model/model.h"
#include "core/runtime/session.h"
#include "core/runtime/warm_up.h"
#include "core/tensor/backend.h"

namespace vmla::ui {

vmla::SessionOptions session_options(const vmla::io::ProjectSettings& s) {
  vmla::SessionOptions o;
  o.steps = s.steps;
  o.sink_frames = s.sink_frames;
  o.window_frames = s.window_frames;
  o.attn_path = vmla::parse_attn_path(s.attn_path);
  o.decode = s.decode;
  // The worker keeps its own snapshot per chunk (every branch, not only the session's line).
  o.keep_snapshots = false;
  return o;
}

namespace {

QString type_name(const std::exception& e) {
  int status = 0;
  char* d = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
  QString name = status == 0 && d ? QString::fromLatin1(d) : QString::fromLatin1(typeid(e).name());
  std::free(d);
  return name;
}

// Calls f and turns an exception into a Failure (returned) with the details a bug report needs.
template <class F>
std::optional<Failure> guarded(F&& f, const QString& title, const QString& context) {
  try {
    f();
    return std::nullopt;
  } catch (const vmla::Cancelled& e) {
    Failure fl;
    fl.cancelled = true;
    fl.title = title;
    fl.message = QString::fromStdString(e.what());
    return fl;
  } catch (const std::exception& e) {
    Failure fl;
    fl.title = title;
    fl.message = QString::fromStdString(e.what());
    fl.details = context + QStringLiteral("\nError type: ") + type_name(e) + QStringLiteral("\nMessage: ") + fl.message;
    return fl;
  }
}

// The engine's compute threads (created by the backend on this thread) inherit its nice value, so
// the GUI thread wins the CPU whenever it needs it and the engine uses everything else.
void lower_engine_priority() {
  static thread_local bool done = false;
  if (done) return;
  done = true;
  const int nice = qEnvironmentVariableIsSet("VMLA_ENGINE_NICE") ? qEnvironmentVariableIntValue("VMLA_ENGINE_NICE") : 10;
  setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), nice);
}

}  // namespace

GenerationWorker::GenerationWorker(std::shared_ptr<GenerationControl> control, std::shared_ptr<FrameRing> ring)
    : control_(std::move(control)),
      ring_(std::move(ring)),
      max_snapshots_(size_t(std::max(2, qEnvironmentVariableIsSet("VMLA_MAX_SNAPSHOTS")
                                            ? qEnvironmentVariableIntValue("VMLA_MAX_SNAPSHOTS")
                                            : 256))) {}

GenerationWorker::~GenerationWorker() = default;

void GenerationWorker::shutdown() {
  snapshots_.clear();
  root_.reset();
  session_.reset();
  workspace_.reset();
  model_.reset();
  at_node_ = -1;
}

void GenerationWorker::start_session(const vmla::io::ProjectSettings& settings) {
  snapshots_.clear();
  root_.reset();
  session_.reset();
  at_node_ = -1;
  vmla::SessionOptions options = session_options(settings);
  options.workspace = workspace_;
  session_ = std::make_unique<vmla::Session>(model_, options);
  root_ = session_->snapshot();
  SessionSummary s;
  s.attn_path = session_->attn_path();
  const auto& cfg = model_->config();
  const auto& o = session_->options();
  s.sink_frames = o.sink_frames >= 0 ? o.sink_frames : cfg.sink_frames;
  s.window_frames = o.window_frames >= 0 ? o.window_frames : cfg.window_frames;
  s.steps = o.steps > 0 ? o.steps : int(cfg.timesteps.size());
  s.decode = o.decode;
  emit sessionReady(s);
}

// Part of loading: the one-time start-up costs of the backend (CUDA) are paid before the first chunk
// is asked for. A cancel (stop, shutdown) only ends the warm-up early.
void GenerationWorker::warm_up(const vmla::io::ProjectSettings& settings) {
  if (!vmla::warm_up_useful(model_->backend())) return;
  emit warmUpStarted();
  vmla::WarmUpOptions o;
  o.session = session_options(settings);
  o.cancel_requested = [c = control_] { return c->cancel_requested(); };
  const vmla::WarmUpReport r = vmla::warm_up(model_, o);
  workspace_ = r.workspace;
  emit warmUpFinished(r.seconds);
}

void GenerationWorker::loadModel(const QString& path, const QString& backend,
                                 const vmla::io::ProjectSettings& settings) {
  const QString context = QStringLiteral("Model file: %1\nBackend asked: %2").arg(path, backend);
  auto failure = guarded(
      [&] {
        shutdown();
        lower_engine_priority();
        std::shared_ptr<vmla::Backend> be = vmla::create_backend(backend.toStdString());
        model_ = vmla::Model::load(path.toStdString(), be);
        const auto& info = model_->info();
        ModelSummary m;
        m.path = QFileInfo(path).absoluteFilePath();
        m.config = model_->config();
        m.name = QString::fromStdString(m.config.name);
        for (const auto& w : model_->tokenizer().vocabulary()) m.vocabulary << QString::fromStdString(w);
        m.backend = QString::fromStdString(be->name());
        m.device = QString::fromStdString(be->device_name());
        m.trained = info.trained;
        m.description = QString::fromStdString(info.description);
        m.params = info.params_total;
        emit modelLoaded(m);
        warm_up(settings);
        start_session(settings);
      },
      QStringLiteral("Could not load the model"), context);
  if (failure) {
    shutdown();
    emit failed(*failure);
    return;
  }
  try {
    emit modelHashed(QFileInfo(path).absoluteFilePath(), QString::fromStdString(vmla::io::file_sha256(path.toStdString())));
  } catch (const std::exception&) {
    emit modelHashed(QFileInfo(path).absoluteFilePath(), QString());
  }
}

void GenerationWorker::configure(const vmla::io::ProjectSettings& settings) {
  if (!model_) {
    Failure f;
    f.title = QStringLiteral("No model loaded");
    f.message = QStringLiteral("Open a model file first.");
    emit failed(f);
    return;
  }
  auto failure = guarded([&] { start_session(settings); }, QStringLiteral("Could not apply the settings"),
                         QStringLiteral("Model file: %1").arg(QString::fromStdString(model_->info().path)));
  if (failure) emit failed(*failure);
}

void GenerationWorker::forget(const QVector<int>& nodes) {
  for (int n : nodes) snapshots_.erase(n);
}

void GenerationWorker::forgetAll() { snapshots_.clear(); }

void GenerationWorker::run(const GenJob& job) {
  const QString context = QStringLiteral("Chunk id: %1 (after %2)\nPrompt: %3\nSeed: %4\nModel file: %5\nBackend: %6")
                              .arg(job.node)
                              .arg(job.parent)
                              .arg(QString::fromStdString(job.spec.prompt))
                              .arg(job.spec.seed)
                              .arg(model_ ? QString::fromStdString(model_->info().path) : QStringLiteral("(none)"))
                              .arg(model_ ? QString::fromStdString(model_->backend().name() + " / " +
                                                                   model_->backend().device_name())
                                          : QString());
  if (!session_) {
    Failure f;
    f.node = job.node;
    f.title = QStringLiteral("No model loaded");
    f.message = QStringLiteral("Open a model file before generating.");
    emit failed(f);
    return;
  }

  ChunkResult result;
  result.node = job.node;
  QElapsedTimer since_progress;
  since_progress.start();
  vmla::SessionCallbacks cb;
  cb.cancel_requested = [this] { return control_->poll(); };
  cb.on_progress = [&](const vmla::Progress& p) {
    // Throttled: the GUI needs a few updates per second, not one per pass of a fast model.
    if (p.pass < p.passes && since_progress.elapsed() < 50) return;
    since_progress.restart();
    emit progress(LiveStats{job.node, p, session_->metrics()});
  };
  int64_t chunk_first = -1;
  cb.on_frames = [&](const vmla::FrameBatch& b) {
    if (chunk_first < 0) chunk_first = b.first_frame;
    const qsizetype bytes = qsizetype(b.count) * b.width * b.height * 3;
    result.rgb.append(reinterpret_cast<const char*>(b.rgb), bytes);
    result.frames += b.count;
    result.width = b.width;
    result.height = b.height;
    FrameBatchCopy copy{job.node, b.first_frame - chunk_first, b.count, b.width, b.height,
                        QByteArray(reinterpret_cast<const char*>(b.rgb), bytes)};
    if (ring_->push(std::move(copy))) emit framesAvailable();
  };

  QElapsedTimer timer;
  timer.start();
  auto failure = guarded(
      [&] {
        if (at_node_ != job.parent) {
          if (job.parent == -1) {
            session_->restore(root_);
          } else {
            auto it = snapshots_.find(job.parent);
            if (it == snapshots_.end())
              throw vmla::Error("internal: no snapshot kept for chunk id " + std::to_string(job.parent));
            it->second.used = ++use_clock_;
            session_->restore(it->second.snapshot);
          }
          at_node_ = job.parent;
        }
        session_->extend(job.spec, cb);
        snapshots_[job.node] = Kept{session_->snapshot(), ++use_clock_};
        at_node_ = job.node;
      },
      QStringLiteral("Generation failed"), context);
  if (failure) {
    // Without the session's own boundary snapshots a failed or cancelled chunk may leave a rewritten
    // window or prompt behind: the next job restores a snapshot.
    at_node_ = -2;
    failure->node = job.node;
    emit failed(*failure);
    return;
  }
  result.ms = double(timer.nsecsElapsed()) / 1e6;
  result.metrics = session_->metrics();
  while (snapshots_.size() > max_snapshots_) {
    auto lru = std::min_element(snapshots_.begin(), snapshots_.end(),
                                [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
    result.evicted.push_back(lru->first);
    snapshots_.erase(lru);
  }
  result.snapshots = int(snapshots_.size());
  emit chunkFinished(result);
}

}  // namespace vmla::ui
