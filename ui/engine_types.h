#pragma once
// Values that cross the worker/GUI thread boundary through queued signals. Engine snapshots never
// do: they stay in the worker, referred to by chunk id (a Snapshot is released on the thread that
// owns the Session).
#include <QByteArray>
#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

#include "core/io/project.h"
#include "core/model/config.h"
#include "core/runtime/session.h"

namespace vmla::ui {

struct ModelSummary {
  QString path;
  QString name;
  vmla::ModelConfig config;
  QStringList vocabulary;
  QString backend;  // "cpu", "cuda"
  QString device;   // the device name the backend reports
  bool trained = false;
  QString description;
  qint64 params = 0;
};

struct SessionSummary {
  vmla::AttnPath attn_path = vmla::AttnPath::Auto;  // resolved
  int sink_frames = 0, window_frames = 0, steps = 0;
  bool decode = true;
};

// One chunk to generate: restore the state after `parent` (-1: the empty video) unless the session
// is already there, then extend by `spec` and keep a snapshot under `node`.
struct GenJob {
  int node = -1;
  int parent = -1;
  vmla::ChunkSpec spec;
};

struct ChunkResult {
  int node = -1;
  QByteArray rgb;  // [frames, height, width, 3]
  int frames = 0, width = 0, height = 0;
  double ms = 0;
  vmla::Metrics metrics;
  int snapshots = 0;      // chunk boundaries the worker keeps (rewind, branches)
  QVector<int> evicted;   // chunks whose kept state was dropped to make room
};

struct LiveStats {
  int node = -1;
  vmla::Progress progress;
  vmla::Metrics metrics;
};

struct Failure {
  int node = -1;  // -1: not a chunk (model load, session setup)
  bool cancelled = false;
  QString title, message, details;
};

vmla::SessionOptions session_options(const vmla::io::ProjectSettings& s);

}  // namespace vmla::ui

Q_DECLARE_METATYPE(vmla::ui::ModelSummary)
Q_DECLARE_METATYPE(vmla::ui::SessionSummary)
Q_DECLARE_METATYPE(vmla::ui::GenJob)
Q_DECLARE_METATYPE(vmla::ui::ChunkResult)
Q_DECLARE_METATYPE(vmla::ui::LiveStats)
Q_DECLARE_METATYPE(vmla::ui::Failure)
Q_DECLARE_METATYPE(vmla::io::ProjectSettings)
