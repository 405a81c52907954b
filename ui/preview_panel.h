#pragma once
// Live preview: the GL surface plus a transport bar (play/pause, scrub bar with chunk boundaries,
// the generated range and the live edge, time, a LIVE button that follows the newest frames).
// Plays at the model's fps; while generating it waits at the live edge when it catches up.
#include <QTimer>
#include <QWidget>

class QLabel;
class QToolButton;

namespace vmla::ui {

class StudioController;
class VideoView;

class ScrubBar : public QWidget {
  Q_OBJECT
 public:
  explicit ScrubBar(StudioController* ctl, QWidget* parent = nullptr);
  void setPlayhead(qint64 frame);
  QSize sizeHint() const override { return {400, 26}; }

 signals:
  void seek(qint64 frame);

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseMoveEvent(QMouseEvent* e) override;

 private:
  qint64 total_frames() const;
  qint64 frame_at(int x) const;
  StudioController* ctl_;
  qint64 playhead_ = 0;
};

class PreviewPanel : public QWidget {
  Q_OBJECT
 public:
  explicit PreviewPanel(StudioController* ctl, QWidget* parent = nullptr);

  VideoView* surface() const { return gl_; }
  qint64 playhead() const { return playhead_; }
  bool playing() const { return playing_; }
  bool followingLive() const { return follow_live_; }

 protected:
  bool eventFilter(QObject* watched, QEvent* e) override;

 public slots:
  void seek(qint64 frame);  // shows that frame; stops following the live edge
  void play();
  void pausePlayback();
  void togglePlay();
  void step(int frames);
  void goLive();
  void refresh();  // frames or the branch changed

 signals:
  void playheadChanged(qint64 frame, int node);

 private:
  void tick();
  void show_frame(qint64 frame);
  void update_labels();

  StudioController* ctl_;
  VideoView* gl_;
  ScrubBar* scrub_;
  QToolButton *play_, *live_;
  QLabel* time_;
  QTimer timer_;
  qint64 playhead_ = 0;
  qint64 shown_ = -1;
  int shown_node_ = -1;
  bool playing_ = false, follow_live_ = true;
};

}  // namespace vmla::ui
