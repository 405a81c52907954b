#include "ui/preview_panel.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QPainter>
#include <QStyle>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/studio_controller.h"
#include "ui/video_view.h"

namespace vmla::ui {

namespace {

QString timecode(qint64 frame, int fps) {
  const double s = double(frame) / std::max(1, fps);
  const int m = int(s / 60);
  return QStringLiteral("%1:%2").arg(m, 2, 10, QLatin1Char('0')).arg(s - m * 60, 5, 'f', 2, QLatin1Char('0'));
}

}  // namespace

// ---- ScrubBar ----------------------------------------------------------------------------------

ScrubBar::ScrubBar(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  setMinimumHeight(22);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  setCursor(Qt::PointingHandCursor);
  setToolTip(tr("Click or drag to scrub; the red line is the live edge"));
}

void ScrubBar::setPlayhead(qint64 frame) {
  playhead_ = frame;
  update();
}

qint64 ScrubBar::total_frames() const {
  // Room for the chunks still queued on this branch, so the bar does not rescale every chunk.
  const int per = ctl_->hasModel() ? ctl_->model().config.frames_per_chunk() : 12;
  return std::max<qint64>(ctl_->frameCount(), qint64(ctl_->path().size()) * per);
}

qint64 ScrubBar::frame_at(int x) const {
  const qint64 total = total_frames();
  if (total <= 0) return 0;
  const double f = double(x - 4) / std::max(1, width() - 8);
  return std::clamp<qint64>(qint64(f * total), 0, std::max<qint64>(0, ctl_->frameCount() - 1));
}

void ScrubBar::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QRectF track(4, height() / 2.0 - 4, width() - 8, 8);
  p.setPen(Qt::NoPen);
  p.setBrush(QColor(50, 52, 60));
  p.drawRoundedRect(track, 3, 3);
  const qint64 total = total_frames();
  if (total <= 0) return;
  auto x_of = [&](qint64 f) { return track.left() + track.width() * double(f) / double(total); };

  // One shade per chunk of the branch; the chunk being rendered shows its progress.
  const int per = ctl_->hasModel() ? ctl_->model().config.frames_per_chunk() : 12;
  qint64 first = 0;
  int i = 0;
  for (int id : ctl_->path()) {
    const ChunkNode* n = ctl_->tree().node(id);
    const qint64 count = n->frame_count ? n->frame_count : per;
    const QRectF r(x_of(first), track.top(), x_of(first + count) - x_of(first), track.height());
    if (n->frame_count > 0 && ctl_->firstFrameOf(id) >= 0) {
      p.setBrush(i % 2 ? QColor(74, 144, 226) : QColor(60, 120, 200));
      p.drawRect(r);
    } else if (n->state == ChunkState::Rendering) {
      p.setBrush(QColor(226, 160, 60, 160));
      p.drawRect(QRectF(r.left(), r.top(), r.width() * n->progress, r.height()));
    } else if (n->state == ChunkState::Queued) {
      p.setBrush(QColor(90, 92, 100));
      p.drawRect(r.adjusted(1, 2, -1, -2));
    }
    first += count;
    ++i;
  }
  const qint64 live = ctl_->frameCount();
  if (live > 0) {
    const double x = x_of(live);
    p.setPen(QPen(ctl_->generating() ? QColor(255, 80, 80) : QColor(160, 160, 170), 2));
    p.drawLine(QPointF(x, 2), QPointF(x, height() - 2));
  }
  const double hx = x_of(playhead_) + track.width() / double(total) / 2;
  p.setPen(QPen(QColor(20, 20, 24), 1));
  p.setBrush(Qt::white);
  p.drawEllipse(QPointF(hx, height() / 2.0), 6, 6);
}

void ScrubBar::mousePressEvent(QMouseEvent* e) {
  if (e->button() == Qt::LeftButton) emit seek(frame_at(int(e->position().x())));
}

void ScrubBar::mouseMoveEvent(QMouseEvent* e) {
  if (e->buttons() & Qt::LeftButton) emit seek(frame_at(int(e->position().x())));
}

// ---- PreviewPanel ------------------------------------------------------------------------------

PreviewPanel::PreviewPanel(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  gl_ = new VideoView(this);
  gl_->setObjectName("previewSurface");
  scrub_ = new ScrubBar(ctl, this);
  play_ = new QToolButton(this);
  play_->setObjectName("playButton");
  play_->setIcon(style()->standardIcon(QStyle::SP_MediaPlay));
  play_->setToolTip(tr("Play / pause (Space)"));
  auto* start = new QToolButton(this);
  start->setIcon(style()->standardIcon(QStyle::SP_MediaSkipBackward));
  start->setToolTip(tr("Go to the first frame (Home)"));
  live_ = new QToolButton(this);
  live_->setObjectName("liveButton");
  live_->setText(tr("● LIVE"));
  live_->setCheckable(true);
  live_->setChecked(true);
  live_->setToolTip(tr("Follow the newest frames as they are generated (End)"));
  time_ = new QLabel(this);
  time_->setObjectName("timeLabel");
  time_->setMinimumWidth(130);
  time_->setAlignment(Qt::AlignRight | Qt::AlignVCenter);

  auto* bar = new QHBoxLayout;
  bar->setContentsMargins(4, 2, 4, 2);
  bar->addWidget(start);
  bar->addWidget(play_);
  bar->addWidget(scrub_, 1);
  bar->addWidget(time_);
  bar->addWidget(live_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(2);
  layout->addWidget(gl_, 1);
  layout->addLayout(bar);

  gl_->installEventFilter(this);
  connect(play_, &QToolButton::clicked, this, &PreviewPanel::togglePlay);
  connect(start, &QToolButton::clicked, this, [this] { seek(0); });
  connect(live_, &QToolButton::clicked, this, [this](bool on) {
    if (on) goLive();
    else follow_live_ = false;
  });
  connect(scrub_, &ScrubBar::seek, this, &PreviewPanel::seek);
  connect(&timer_, &QTimer::timeout, this, &PreviewPanel::tick);
  timer_.setTimerType(Qt::PreciseTimer);
  connect(ctl_, &StudioController::framesChanged, this, &PreviewPanel::refresh);
  connect(ctl_, &StudioController::treeChanged, scrub_, qOverload<>(&QWidget::update));
  connect(ctl_, &StudioController::nodeChanged, scrub_, qOverload<>(&QWidget::update));
  connect(ctl_, &StudioController::generatingChanged, this, [this](bool on) {
    if (on && follow_live_ && !playing_) play();
    refresh();
  });
  update_labels();
}

bool PreviewPanel::eventFilter(QObject* watched, QEvent* e) {
  if (watched == gl_ && e->type() == QEvent::MouseButtonPress) {
    togglePlay();
    return true;
  }
  return QWidget::eventFilter(watched, e);
}

void PreviewPanel::refresh() {
  gl_->setPlaceholder(ctl_->hasModel() && !ctl_->session().decode
                          ? tr("The decoder is off (Settings > Preview decoder): chunks are generated without frames")
                          : tr("No video yet: type a prompt and press Generate"));
  const qint64 count = ctl_->frameCount();
  if (count == 0) {
    playhead_ = 0;
    shown_ = -1;
    gl_->clearFrame();
  } else if (playhead_ >= count) {
    playhead_ = count - 1;
  }
  // A new video (or a branch switch) may show other frames at the same index: redraw.
  shown_ = -1;
  show_frame(playhead_);
  if (follow_live_ && ctl_->generating() && !playing_) play();
  scrub_->update();
  update_labels();
}

void PreviewPanel::seek(qint64 frame) {
  follow_live_ = false;
  live_->setChecked(false);
  playhead_ = std::clamp<qint64>(frame, 0, std::max<qint64>(0, ctl_->frameCount() - 1));
  show_frame(playhead_);
  update_labels();
}

void PreviewPanel::play() {
  if (ctl_->frameCount() == 0 && !ctl_->generating()) return;
  if (!playing_ && playhead_ >= ctl_->frameCount() - 1 && !ctl_->generating()) playhead_ = 0;  // replay
  playing_ = true;
  timer_.start(1000 / std::max(1, ctl_->fps()));
  play_->setIcon(style()->standardIcon(QStyle::SP_MediaPause));
}

void PreviewPanel::pausePlayback() {
  playing_ = false;
  timer_.stop();
  play_->setIcon(style()->standardIcon(QStyle::SP_MediaPlay));
}

void PreviewPanel::togglePlay() { playing_ ? pausePlayback() : play(); }

void PreviewPanel::step(int frames) {
  pausePlayback();
  seek(playhead_ + frames);
}

void PreviewPanel::goLive() {
  follow_live_ = true;
  live_->setChecked(true);
  const qint64 count = ctl_->frameCount();
  if (count > 0) playhead_ = std::max<qint64>(0, count - ctl_->fps() / 2);  // a moment before the edge
  show_frame(playhead_);
  play();
}

void PreviewPanel::tick() {
  const qint64 count = ctl_->frameCount();
  if (playhead_ + 1 < count) {
    show_frame(++playhead_);
  } else if (!ctl_->generating()) {
    pausePlayback();
  }
  update_labels();
}

void PreviewPanel::show_frame(qint64 frame) {
  scrub_->setPlayhead(frame);
  const uint8_t* rgb = ctl_->frame(frame);
  if (!rgb) return;
  const int node = ctl_->nodeAtFrame(frame);
  if (frame == shown_ && node == shown_node_) return;
  const QSize s = ctl_->frameSize();
  gl_->setFrame(rgb, s.width(), s.height());
  shown_ = frame;
  emit playheadChanged(frame, node);
  shown_node_ = node;
}

void PreviewPanel::update_labels() {
  const int fps = ctl_->fps();
  time_->setText(timecode(playhead_, fps) + " / " + timecode(ctl_->frameCount(), fps));
  const bool at_edge = ctl_->frameCount() > 0 && playhead_ >= ctl_->frameCount() - 1;
  live_->setStyleSheet(follow_live_ && ctl_->generating() && at_edge ? "color: #ff5050; font-weight: bold;" : "");
}

}  // namespace vmla::ui
