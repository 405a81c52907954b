#include "ui/stats_panel.h"

#include <QFile>
#include <QFormLayout>
#include <QLabel>
#include <QPainter>
#include <QVBoxLayout>
#include <unistd.h>

#include "ui/studio_controller.h"

namespace vmla::ui {

QString StatsPanel::bytes(double b) {
  if (b < 1024) return QStringLiteral("%1 B").arg(qint64(b));
  if (b < 1024.0 * 1024) return QStringLiteral("%1 KiB").arg(b / 1024, 0, 'f', 1);
  if (b < 1024.0 * 1024 * 1024) return QStringLiteral("%1 MiB").arg(b / 1024 / 1024, 0, 'f', 2);
  return QStringLiteral("%1 GiB").arg(b / 1024 / 1024 / 1024, 0, 'f', 2);
}

size_t StatsPanel::hostResidentBytes() {
  QFile f(QStringLiteral("/proc/self/statm"));
  if (!f.open(QIODevice::ReadOnly)) return 0;
  const auto fields = f.readAll().split(' ');
  return fields.size() > 1 ? size_t(fields[1].toLongLong()) * size_t(sysconf(_SC_PAGESIZE)) : 0;
}

// ---- SparkChart ---------------------------------------------------------------------------------

SparkChart::SparkChart(const QString& title, const QString& unit, QWidget* parent)
    : QWidget(parent), title_(title), unit_(unit) {
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  setMinimumHeight(78);
}

void SparkChart::setSeries(std::vector<Series> s) {
  series_ = std::move(s);
  update();
}

void SparkChart::setReference(double value, const QString& label) {
  ref_ = value;
  ref_label_ = label;
  update();
}

void SparkChart::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  p.fillRect(rect(), QColor(30, 31, 36));
  QFont small = font();
  small.setPointSizeF(font().pointSizeF() * 0.85);
  p.setFont(small);
  const QRectF plot(6, 18, width() - 12, height() - 24);

  double lo = 0, hi = ref_ > 0 ? ref_ * 1.1 : 0;
  size_t n = 0;
  for (const auto& s : series_) {
    n = std::max(n, s.values.size());
    for (double v : s.values) hi = std::max(hi, v);
  }
  if (hi <= lo) hi = lo + 1;
  hi *= 1.08;

  // Title and the newest value of each series.
  p.setPen(QColor(180, 182, 190));
  p.drawText(QRectF(6, 2, width() - 12, 16), Qt::AlignLeft | Qt::AlignVCenter, title_);
  QString last;
  for (const auto& s : series_)
    if (!s.values.empty())
      last += (last.isEmpty() ? "" : "  ") + (series_.size() > 1 ? s.name + " " : QString()) +
              QString::number(s.values.back(), 'f', s.values.back() < 10 ? 2 : 1) + " " + unit_;
  p.drawText(QRectF(6, 2, width() - 12, 16), Qt::AlignRight | Qt::AlignVCenter, last);

  p.setPen(QColor(55, 57, 64));
  p.drawLine(plot.bottomLeft(), plot.bottomRight());
  auto y_of = [&](double v) { return plot.bottom() - (v - lo) / (hi - lo) * plot.height(); };
  if (ref_ > 0) {
    p.setPen(QPen(QColor(120, 200, 140), 1, Qt::DashLine));
    p.drawLine(QPointF(plot.left(), y_of(ref_)), QPointF(plot.right(), y_of(ref_)));
    p.drawText(QRectF(plot.left() + 2, y_of(ref_) - 14, plot.width(), 13), Qt::AlignLeft, ref_label_);
  }
  if (n == 0) {
    p.setPen(QColor(110, 112, 120));
    p.drawText(plot, Qt::AlignCenter, tr("no chunks yet"));
    return;
  }
  for (const auto& s : series_) {
    if (s.values.empty()) continue;
    QPolygonF line;
    for (size_t i = 0; i < s.values.size(); ++i) {
      const double x = n == 1 ? plot.center().x() : plot.left() + plot.width() * double(i) / double(n - 1);
      line << QPointF(x, y_of(s.values[i]));
    }
    p.setPen(QPen(s.color, 1.6));
    p.drawPolyline(line);
    p.setBrush(s.color);
    p.drawEllipse(line.back(), 2.5, 2.5);
  }
}

// ---- CacheBars ----------------------------------------------------------------------------------

CacheBars::CacheBars(QWidget* parent) : QWidget(parent) {
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  setMinimumHeight(44);
}

void CacheBars::setBytes(size_t mla, size_t mha, size_t capacity) {
  mla_ = mla;
  mha_ = mha;
  capacity_ = capacity;
  update();
}

void CacheBars::paintEvent(QPaintEvent*) {
  QPainter p(this);
  QFont small = font();
  small.setPointSizeF(font().pointSizeF() * 0.85);
  p.setFont(small);
  const double full = double(std::max<size_t>({mha_, mla_, 1}));
  const int label_w = 44, w = width() - label_w - 4;
  auto bar = [&](int y, const QString& name, size_t b, QColor c, const QString& text) {
    p.setPen(QColor(180, 182, 190));
    p.drawText(QRect(0, y, label_w, 18), Qt::AlignLeft | Qt::AlignVCenter, name);
    p.fillRect(QRect(label_w, y + 2, w, 14), QColor(30, 31, 36));
    p.fillRect(QRect(label_w, y + 2, std::max(1, int(w * double(b) / full)), 14), c);
    p.setPen(Qt::white);
    p.drawText(QRect(label_w + 4, y, w - 8, 18), Qt::AlignLeft | Qt::AlignVCenter, text);
  };
  const double ratio = mla_ ? double(mha_) / double(mla_) : 0;
  bar(2, tr("MLA"), mla_, QColor(74, 144, 226), StatsPanel::bytes(double(mla_)));
  bar(24, tr("MHA"), mha_, QColor(150, 90, 90),
      ratio > 0 ? tr("%1 would be needed (%2× more)").arg(StatsPanel::bytes(double(mha_))).arg(ratio, 0, 'f', 1)
                : StatsPanel::bytes(double(mha_)));
}

// ---- StatsPanel ---------------------------------------------------------------------------------

StatsPanel::StatsPanel(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  auto label = [this](const char* name) {
    auto* l = new QLabel(this);
    l->setObjectName(name);
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    l->setWordWrap(true);
    return l;
  };
  device_ = label("statsDevice");
  upload_ = label("statsUpload");
  attn_ = label("statsAttention");
  progress_ = label("statsProgress");
  cache_ = label("statsCache");
  memory_ = label("statsMemory");
  speed_ = label("statsSpeed");
  bars_ = new CacheBars(this);
  ms_chart_ = new SparkChart(tr("time per chunk"), tr("ms"), this);
  fps_chart_ = new SparkChart(tr("frames per second"), tr("fps"), this);
  cache_chart_ = new SparkChart(tr("cache memory"), tr("MiB"), this);

  auto* form = new QFormLayout;
  form->setLabelAlignment(Qt::AlignLeft);
  form->addRow(tr("Device"), device_);
  form->addRow(tr("Preview"), upload_);
  form->addRow(tr("Attention"), attn_);
  form->addRow(tr("Now"), progress_);
  form->addRow(tr("KV cache"), cache_);
  form->addRow(tr("Memory"), memory_);
  form->addRow(tr("Speed"), speed_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addWidget(bars_);
  layout->addWidget(ms_chart_);
  layout->addWidget(fps_chart_);
  layout->addWidget(cache_chart_);
  layout->addStretch(1);

  connect(ctl_, &StudioController::liveStats, this, &StatsPanel::on_live);
  connect(ctl_, &StudioController::chunkDone, this, &StatsPanel::refresh);
  connect(ctl_, &StudioController::modelLoaded, this, &StatsPanel::refresh);
  connect(ctl_, &StudioController::sessionReady, this, &StatsPanel::refresh);
  connect(ctl_, &StudioController::generatingChanged, this, [this](bool on) {
    if (!on) progress_->setText(tr("idle"));
  });
  connect(&host_timer_, &QTimer::timeout, this, &StatsPanel::refresh);
  host_timer_.start(1000);
  progress_->setText(tr("idle"));
  refresh();
}

void StatsPanel::setUploadPath(const QString& path, const QString& note) {
  upload_path_ = path;
  upload_->setText(note.isEmpty() ? path : path + "\n(" + note + ")");
}

void StatsPanel::on_live(const LiveStats& s) {
  progress_->setText(tr("chunk %1 · pass %2 of %3 · %4 s")
                         .arg(ctl_->tree().contains(s.node) ? ctl_->tree().depth(s.node) + 1 : s.progress.chunk + 1)
                         .arg(s.progress.pass)
                         .arg(s.progress.passes)
                         .arg(s.progress.chunk_elapsed_s, 0, 'f', 1));
  refresh();
}

void StatsPanel::refresh() {
  if (ctl_->hasModel()) {
    const auto& m = ctl_->model();
    device_->setText(m.backend + " · " + m.device);
    const auto& s = ctl_->session();
    attn_->setText(tr("%1, %2 path · sink %3 + window %4 latent frames")
                       .arg(m.config.attention == vmla::AttentionKind::MLA ? "MLA" : "MHA")
                       .arg(QString::fromLatin1(vmla::attn_path_name(s.attn_path)))
                       .arg(s.sink_frames)
                       .arg(s.window_frames));
  } else {
    device_->setText(tr("no model loaded"));
    attn_->clear();
  }
  const size_t host = hostResidentBytes();
  if (const auto& mm = ctl_->lastMetrics()) {
    const auto& m = *mm;
    cache_->setText(tr("%1 of %2 · %3 tokens · %4 chunk boundaries kept for rewind")
                        .arg(bytes(double(m.cache_bytes)), bytes(double(m.cache_capacity_bytes)))
                        .arg(m.cached_tokens)
                        .arg(ctl_->snapshotsKept()));
    bars_->setBytes(m.cache_bytes, m.mha_cache_bytes, m.cache_capacity_bytes);
    const bool on_host = ctl_->hasModel() && ctl_->model().backend == "cpu";
    const QString device = !m.device_total ? tr("device: n/a")
                           : on_host ? tr("system RAM %1 of %2").arg(bytes(double(m.device_used)), bytes(double(m.device_total)))
                                     : tr("device %1 of %2").arg(bytes(double(m.device_used)), bytes(double(m.device_total)));
    memory_->setText(tr("%1 · engine %2 · process %3").arg(device, bytes(double(m.engine_bytes)), bytes(double(host))));
    speed_->setText(tr("%1 ms/chunk (avg %2) · %3 ms/pass · decode %4 ms\n%5 fps · %6× real time · %7 s of video")
                        .arg(m.ms_last_chunk, 0, 'f', 0)
                        .arg(m.ms_avg_chunk, 0, 'f', 0)
                        .arg(m.ms_last_pass, 0, 'f', 1)
                        .arg(m.ms_last_decode, 0, 'f', 0)
                        .arg(m.fps, 0, 'f', 1)
                        .arg(m.realtime_factor, 0, 'f', 2)
                        .arg(m.seconds_generated, 0, 'f', 1));
  } else {
    cache_->setText(tr("empty"));
    bars_->setBytes(0, 0, 0);
    memory_->setText(tr("process %1").arg(bytes(double(host))));
    speed_->setText(tr("no chunks yet"));
  }

  std::vector<double> ms, fps, mla, mha;
  for (const auto& h : ctl_->history()) {
    ms.push_back(h.ms);
    fps.push_back(h.fps);
    mla.push_back(double(h.cache_bytes) / 1048576.0);
    mha.push_back(double(h.mha_cache_bytes) / 1048576.0);
  }
  ms_chart_->setSeries({{tr("ms"), QColor(230, 165, 60), ms}});
  fps_chart_->setSeries({{tr("fps"), QColor(90, 190, 120), fps}});
  fps_chart_->setReference(ctl_->fps(), tr("real time (%1 fps)").arg(ctl_->fps()));
  cache_chart_->setSeries({{tr("MLA"), QColor(74, 144, 226), mla}, {tr("MHA"), QColor(190, 100, 100), mha}});
}

}  // namespace vmla::ui
