#pragma once
// Shared by the studio's Qt tests: the default model, an independent engine run to compare against,
// and waiting for the controller.
#include <QElapsedTimer>
#include <QFile>
#include <QStandardPaths>
#include <QTest>
#include <QTimer>
#include <memory>
#include <vector>

#include "core/model/model.h"
#include "core/runtime/session.h"
#include "core/tensor/backend.h"
#include "ui/model_locator.h"
#include "ui/studio_controller.h"

namespace vmla::ui::test {

inline QString model_path() {
  const QString p = default_model_path();
  if (p.isEmpty()) qFatal("no default model: build the default_model target first");
  return p;
}

// The frames an engine of our own makes for these chunks, run from an empty video.
inline std::vector<std::vector<uint8_t>> engine_chunks(const std::vector<vmla::ChunkSpec>& specs,
                                                       const vmla::io::ProjectSettings& settings = {}) {
  static std::shared_ptr<vmla::Model> model =
      vmla::Model::load(model_path().toStdString(), std::shared_ptr<vmla::Backend>(vmla::create_backend("auto")));
  vmla::Session s(model, session_options(settings));
  std::vector<std::vector<uint8_t>> out;
  for (const auto& spec : specs) {
    vmla::SessionCallbacks cb;
    std::vector<uint8_t> frames;
    cb.on_frames = [&](const vmla::FrameBatch& b) {
      frames.insert(frames.end(), b.rgb, b.rgb + size_t(b.count) * b.width * b.height * 3);
    };
    s.extend(spec, cb);
    out.push_back(std::move(frames));
  }
  return out;
}

inline QByteArray bytes(const std::vector<uint8_t>& v) {
  return QByteArray(reinterpret_cast<const char*>(v.data()), qsizetype(v.size()));
}

inline std::vector<vmla::ChunkSpec> specs_of(const StudioController& c, const std::vector<int>& ids) {
  std::vector<vmla::ChunkSpec> out;
  for (int id : ids) out.push_back(c.tree().node(id)->spec);
  return out;
}

// Waits until nothing is queued, rendering or loading.
inline bool wait_idle(const StudioController& c, int timeout_ms = 120000) {
  QElapsedTimer t;
  t.start();
  while (c.generating() || c.modelLoading() || c.workerBusy()) {
    if (t.elapsed() > timeout_ms) return false;
    QTest::qWait(10);
  }
  return true;
}

// Records the longest gap between ticks of a 5 ms timer: how long the event loop was blocked. A gap
// also counts the time the GUI thread was runnable but other processes held the CPU (a busy test
// machine); `worst_own()` subtracts that run-queue wait (from /proc/thread-self/schedstat), leaving
// what our own code did: work on the GUI thread or waiting for something.
class StallMeter : public QObject {
 public:
  StallMeter() {
    timer_.setTimerType(Qt::PreciseTimer);
    connect(&timer_, &QTimer::timeout, this, [this] {
      const qint64 now = clock_.elapsed();
      const qint64 wait = runqueue_ms();
      worst_ = std::max(worst_, now - last_);
      worst_own_ = std::max(worst_own_, (now - last_) - (wait - last_wait_));
      last_ = now;
      last_wait_ = wait;
    });
  }
  void start() {
    worst_ = worst_own_ = 0;
    clock_.start();
    last_ = 0;
    last_wait_ = runqueue_ms();
    timer_.start(5);
  }
  void stop() { timer_.stop(); }
  qint64 worst() const { return worst_; }
  qint64 worst_own() const { return worst_own_; }

  static qint64 runqueue_ms() {
    QFile f(QStringLiteral("/proc/thread-self/schedstat"));
    if (!f.open(QIODevice::ReadOnly)) return 0;
    const auto fields = f.readAll().split(' ');
    return fields.size() > 1 ? fields[1].toLongLong() / 1000000 : 0;
  }

 private:
  QTimer timer_;
  QElapsedTimer clock_;
  qint64 last_ = 0, worst_ = 0, last_wait_ = 0, worst_own_ = 0;
};

}  // namespace vmla::ui::test
