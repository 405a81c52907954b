#pragma once
// Chunk timeline: one cell per chunk of the branch on screen (thumbnail, prompt, seed, state), then
// the remembered continuation after a rewind, dimmed ("ghost" cells: click one to go back to it).
// Cells with siblings show "< i/n >" to switch between the branches that diverge there.
#include <QWidget>
#include <vector>

class QComboBox;
class QPushButton;
class QScrollArea;
class QLabel;

namespace vmla::ui {

class StudioController;

class TimelineWidget : public QWidget {
  Q_OBJECT
 public:
  explicit TimelineWidget(StudioController* ctl, QWidget* parent = nullptr);

  static constexpr int kCellW = 136, kCellH = 156, kGap = 6;
  QSize sizeHint() const override;
  QSize minimumSizeHint() const override { return {kCellW, kCellH + 8}; }

  int selected() const { return selected_; }
  std::pair<int, int> selectionRange() const;  // path indices, inclusive; (-1, -1) when none
  void select(int node, bool extend = false);
  void setPlayheadNode(int node);
  QRect cellRect(int index) const;  // index into cells(): the path, then the ghost
  std::vector<int> cells() const;
  int ghostStart() const;

 signals:
  void selectionChanged(int node);
  void chunkActivated(int node);       // click on a chunk of the video
  void rewindRequested(int node);      // double-click, or the menu
  void switchRequested(int node);      // a ghost cell or a sibling arrow
  void rerollRequested(int node);
  void changePromptRequested(int node);
  void retryRequested(int node);
  void useSeedRequested(quint64 seed);

 protected:
  void paintEvent(QPaintEvent*) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseDoubleClickEvent(QMouseEvent* e) override;
  void contextMenuEvent(QContextMenuEvent* e) override;
  bool event(QEvent* e) override;

 private:
  int index_at(QPoint p) const;
  QRect sibling_arrow(int index, bool next) const;
  void relayout();

  StudioController* ctl_;
  int selected_ = -1, anchor_ = -1, playhead_node_ = -1;
};

class TimelinePanel : public QWidget {
  Q_OBJECT
 public:
  explicit TimelinePanel(StudioController* ctl, QWidget* parent = nullptr);
  TimelineWidget* timeline() const { return timeline_; }
  void ensureVisible(int node);

 private:
  void refresh_branches();
  void update_buttons();

  StudioController* ctl_;
  TimelineWidget* timeline_;
  QScrollArea* scroll_;
  QComboBox* branches_;
  QLabel* info_;
  QPushButton *rewind_, *reroll_, *prompt_;
};

}  // namespace vmla::ui
