#include "ui/timeline_widget.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QContextMenuEvent>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QMenu>
#include <QPainter>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QToolTip>
#include <QVBoxLayout>

#include "ui/studio_controller.h"

namespace vmla::ui {

namespace {

QColor state_color(ChunkState s) {
  switch (s) {
    case ChunkState::Pending: return {110, 112, 120};
    case ChunkState::Queued: return {150, 150, 160};
    case ChunkState::Rendering: return {230, 165, 60};
    case ChunkState::Done: return {90, 190, 120};
    case ChunkState::Failed: return {235, 80, 80};
  }
  return Qt::gray;
}

}  // namespace

TimelineWidget::TimelineWidget(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  setMouseTracking(true);
  setFocusPolicy(Qt::ClickFocus);
  connect(ctl_, &StudioController::treeChanged, this, &TimelineWidget::relayout);
  connect(ctl_, &StudioController::nodeChanged, this, qOverload<>(&QWidget::update));
  relayout();
}

std::vector<int> TimelineWidget::cells() const {
  std::vector<int> c = ctl_->path();
  for (int g : ctl_->ghost()) c.push_back(g);
  return c;
}

int TimelineWidget::ghostStart() const { return int(ctl_->path().size()); }

QSize TimelineWidget::sizeHint() const {
  const int n = std::max<int>(1, int(cells().size()));
  return {kGap + n * (kCellW + kGap), kCellH + 2 * kGap};
}

void TimelineWidget::relayout() {
  if (selected_ != -1 && !ctl_->tree().contains(selected_)) selected_ = anchor_ = -1;
  setMinimumWidth(sizeHint().width());
  resize(std::max(sizeHint().width(), parentWidget() ? parentWidget()->width() : 0), sizeHint().height());
  updateGeometry();
  update();
}

QRect TimelineWidget::cellRect(int index) const {
  return {kGap + index * (kCellW + kGap), kGap, kCellW, kCellH};
}

int TimelineWidget::index_at(QPoint p) const {
  const auto c = cells();
  for (int i = 0; i < int(c.size()); ++i)
    if (cellRect(i).contains(p)) return i;
  return -1;
}

QRect TimelineWidget::sibling_arrow(int index, bool next) const {
  const QRect r = cellRect(index);
  return next ? QRect(r.right() - 16, r.top() + 2, 15, 16) : QRect(r.right() - 58, r.top() + 2, 15, 16);
}

std::pair<int, int> TimelineWidget::selectionRange() const {
  const auto p = ctl_->path();
  auto index = [&](int id) { return int(std::find(p.begin(), p.end(), id) - p.begin()); };
  if (selected_ == -1) return {-1, -1};
  const int a = index(selected_), b = anchor_ == -1 ? a : index(anchor_);
  if (a >= int(p.size()) || b >= int(p.size())) return {-1, -1};
  return {std::min(a, b), std::max(a, b)};
}

void TimelineWidget::select(int node, bool extend) {
  if (!extend || anchor_ == -1) anchor_ = node;
  selected_ = node;
  update();
  emit selectionChanged(node);
}

void TimelineWidget::setPlayheadNode(int node) {
  if (node == playhead_node_) return;
  playhead_node_ = node;
  update();
}

void TimelineWidget::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const auto c = cells();
  const int ghost = ghostStart();
  const auto [sel_a, sel_b] = selectionRange();
  const QFont base = font();
  QFont small = base;
  small.setPointSizeF(base.pointSizeF() * 0.85);
  QFont bold = base;
  bold.setBold(true);

  if (c.empty()) {
    p.setPen(palette().color(QPalette::PlaceholderText));
    p.drawText(rect().adjusted(12, 0, 0, 0), Qt::AlignVCenter | Qt::AlignLeft,
               tr("Chunks appear here as they are generated: click one to play it, double-click to rewind there."));
    return;
  }

  for (int i = 0; i < int(c.size()); ++i) {
    const ChunkNode* n = ctl_->tree().node(c[size_t(i)]);
    if (!n) continue;
    const QRect r = cellRect(i);
    const bool is_ghost = i >= ghost;
    const bool selected = !is_ghost && i >= sel_a && i <= sel_b && sel_a >= 0;
    p.setOpacity(is_ghost ? 0.38 : 1.0);

    p.setPen(selected ? QPen(palette().color(QPalette::Highlight), 2)
                      : n->id == playhead_node_ ? QPen(QColor(220, 220, 230), 1.5)
                                                : QPen(QColor(60, 62, 70), 1));
    p.setBrush(selected ? QColor(45, 60, 85) : QColor(43, 44, 50));
    p.drawRoundedRect(QRectF(r).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6);

    // Header: position, state dot, sibling navigator.
    p.setFont(bold);
    p.setPen(palette().color(QPalette::Text));
    p.drawText(QRect(r.left() + 8, r.top() + 3, 40, 16), Qt::AlignLeft | Qt::AlignVCenter,
               QStringLiteral("#%1").arg(i + 1));
    p.setPen(Qt::NoPen);
    p.setBrush(state_color(n->state));
    p.drawEllipse(QPointF(r.left() + 48, r.top() + 11), 4, 4);
    const auto sib = ctl_->tree().siblings(n->id);
    if (sib.size() > 1) {
      const int k = int(std::find(sib.begin(), sib.end(), n->id) - sib.begin());
      p.setFont(small);
      p.setPen(palette().color(QPalette::Text));
      p.drawText(sibling_arrow(i, false), Qt::AlignCenter, QStringLiteral("‹"));
      p.drawText(QRect(r.right() - 44, r.top() + 2, 28, 16), Qt::AlignCenter,
                 QStringLiteral("%1/%2").arg(k + 1).arg(sib.size()));
      p.drawText(sibling_arrow(i, true), Qt::AlignCenter, QStringLiteral("›"));
    }

    // Thumbnail, or the state in its place.
    const QRect thumb(r.left() + 12, r.top() + 22, 112, 72);
    if (!n->thumbnail.isNull()) {
      const QImage& t = n->thumbnail;
      p.drawImage(QRect(thumb.center().x() - t.width() / 2, thumb.center().y() - t.height() / 2, t.width(), t.height()), t);
    } else {
      p.setPen(Qt::NoPen);
      p.setBrush(QColor(30, 31, 36));
      p.drawRect(thumb);
      p.setPen(state_color(n->state));
      p.setFont(small);
      p.drawText(thumb, Qt::AlignCenter, QString::fromLatin1(chunk_state_name(n->state)));
    }
    if (n->state == ChunkState::Rendering) {
      p.setPen(Qt::NoPen);
      p.setBrush(QColor(0, 0, 0, 120));
      p.drawRect(QRect(thumb.left(), thumb.bottom() - 5, thumb.width(), 6));
      p.setBrush(state_color(n->state));
      p.drawRect(QRectF(thumb.left(), thumb.bottom() - 5, thumb.width() * n->progress, 6));
    }

    // Prompt (two lines) and seed.
    p.setFont(small);
    p.setPen(palette().color(QPalette::Text));
    const QRect text(r.left() + 8, r.top() + 98, r.width() - 16, 32);
    const QString prompt = QString::fromStdString(n->spec.prompt);
    QString shown = p.fontMetrics().elidedText(prompt, Qt::ElideRight, text.width() * 2 - 10);
    p.drawText(text, Qt::AlignLeft | Qt::AlignTop | Qt::TextWordWrap, shown);
    p.setPen(QColor(150, 152, 160));
    QString foot = QStringLiteral("seed %1").arg(n->spec.seed);
    if (n->spec.recache) foot += QStringLiteral(" · smooth");
    if (n->state == ChunkState::Done && n->ms > 0) foot += QStringLiteral(" · %1 s").arg(n->ms / 1000, 0, 'f', 1);
    p.drawText(QRect(r.left() + 8, r.bottom() - 22, r.width() - 16, 18), Qt::AlignLeft | Qt::AlignVCenter,
               p.fontMetrics().elidedText(foot, Qt::ElideRight, r.width() - 16));
  }
  p.setOpacity(1.0);
  if (ghost < int(c.size())) {
    // Mark where the video on screen ends and the kept continuation begins.
    const QRect g = cellRect(ghost);
    p.setPen(QPen(QColor(255, 90, 90), 2, Qt::DashLine));
    p.drawLine(g.left() - kGap / 2, g.top(), g.left() - kGap / 2, g.bottom());
  }
}

bool TimelineWidget::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(e);
    const int i = index_at(he->pos());
    const auto c = cells();
    if (i < 0) {
      QToolTip::hideText();
      return true;
    }
    const ChunkNode* n = ctl_->tree().node(c[size_t(i)]);
    QString tip = QStringLiteral("<b>Chunk %1</b> (%2)<br>%3<br>seed %4%5")
                      .arg(i + 1)
                      .arg(QString::fromLatin1(chunk_state_name(n->state)))
                      .arg(QString::fromStdString(n->spec.prompt).toHtmlEscaped())
                      .arg(n->spec.seed)
                      .arg(n->spec.recache ? QStringLiteral(", smooth prompt transition") : QString());
    if (!n->error.isEmpty()) tip += "<br><span style='color:#ff7070'>" + n->error.toHtmlEscaped() + "</span>";
    tip += i >= ghostStart() ? tr("<br><i>Not in the video: click to go back to this continuation.</i>")
                             : tr("<br><i>Click: play from here · double-click: rewind here · right-click: more</i>");
    QToolTip::showText(he->globalPos(), tip, this);
    return true;
  }
  return QWidget::event(e);
}

void TimelineWidget::mousePressEvent(QMouseEvent* e) {
  const int i = index_at(e->pos());
  if (i < 0 || e->button() != Qt::LeftButton) return QWidget::mousePressEvent(e);
  const int id = cells()[size_t(i)];
  const auto sib = ctl_->tree().siblings(id);
  if (sib.size() > 1) {
    const int k = int(std::find(sib.begin(), sib.end(), id) - sib.begin());
    if (sibling_arrow(i, false).contains(e->pos())) {
      emit switchRequested(sib[size_t((k + int(sib.size()) - 1) % int(sib.size()))]);
      return;
    }
    if (sibling_arrow(i, true).contains(e->pos())) {
      emit switchRequested(sib[size_t((k + 1) % int(sib.size()))]);
      return;
    }
  }
  if (i >= ghostStart()) {
    emit switchRequested(id);
    return;
  }
  select(id, e->modifiers() & Qt::ShiftModifier);
  emit chunkActivated(id);
}

void TimelineWidget::mouseDoubleClickEvent(QMouseEvent* e) {
  const int i = index_at(e->pos());
  if (i < 0 || i >= ghostStart()) return;
  emit rewindRequested(cells()[size_t(i)]);
}

void TimelineWidget::contextMenuEvent(QContextMenuEvent* e) {
  const int i = index_at(e->pos());
  if (i < 0) return;
  const int id = cells()[size_t(i)];
  const ChunkNode* n = ctl_->tree().node(id);
  QMenu menu(this);
  if (i >= ghostStart()) {
    menu.addAction(tr("Go back to this continuation"), this, [=, this] { emit switchRequested(id); });
  } else {
    select(id);
    menu.addAction(tr("Rewind here (the video ends at chunk %1)").arg(i + 1), this, [=, this] { emit rewindRequested(id); });
    menu.addAction(tr("Re-roll with a new seed"), this, [=, this] { emit rerollRequested(id); });
    menu.addAction(tr("Change the prompt from here…"), this, [=, this] { emit changePromptRequested(id); });
    if (n->state == ChunkState::Failed || n->state == ChunkState::Pending)
      menu.addAction(tr("Generate this chunk again"), this, [=, this] { emit retryRequested(id); });
  }
  menu.addSeparator();
  const quint64 seed = n->spec.seed;
  menu.addAction(tr("Use seed %1 for new chunks").arg(seed), this, [=, this] { emit useSeedRequested(seed); });
  menu.addAction(tr("Copy prompt"), this, [n] { QApplication::clipboard()->setText(QString::fromStdString(n->spec.prompt)); });
  if (!n->error.isEmpty())
    menu.addAction(tr("Copy error"), this, [n] { QApplication::clipboard()->setText(n->error); });
  menu.exec(e->globalPos());
}

// ---- TimelinePanel ------------------------------------------------------------------------------

TimelinePanel::TimelinePanel(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  timeline_ = new TimelineWidget(ctl, this);
  timeline_->setObjectName("timeline");
  scroll_ = new QScrollArea(this);
  scroll_->setWidget(timeline_);
  scroll_->setWidgetResizable(false);
  scroll_->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  scroll_->setHorizontalScrollBarPolicy(Qt::ScrollBarAsNeeded);
  scroll_->setFrameShape(QFrame::NoFrame);
  scroll_->setMinimumHeight(TimelineWidget::kCellH + 2 * TimelineWidget::kGap + scroll_->horizontalScrollBar()->sizeHint().height());

  branches_ = new QComboBox(this);
  branches_->setObjectName("branchCombo");
  branches_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  branches_->setToolTip(tr("Every branch of this project: switch to show it (it is generated again if needed)"));
  info_ = new QLabel(this);
  info_->setObjectName("timelineInfo");
  rewind_ = new QPushButton(tr("Rewind here"), this);
  rewind_->setToolTip(tr("The video ends at the selected chunk; what followed stays as a branch (double-click a chunk)"));
  reroll_ = new QPushButton(tr("Re-roll"), this);
  reroll_->setToolTip(tr("Generate the selected chunk again with a new random seed (a new branch)"));
  prompt_ = new QPushButton(tr("Change prompt from here…"), this);
  prompt_->setToolTip(tr("Generate the chunks from the selected one on with another prompt (a new branch)"));

  auto* top = new QHBoxLayout;
  top->setContentsMargins(4, 0, 4, 0);
  top->addWidget(new QLabel(tr("Branch:"), this));
  top->addWidget(branches_);
  top->addWidget(info_, 1);
  top->addWidget(rewind_);
  top->addWidget(reroll_);
  top->addWidget(prompt_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 2, 0, 0);
  layout->setSpacing(2);
  layout->addLayout(top);
  layout->addWidget(scroll_);

  connect(ctl_, &StudioController::treeChanged, this, &TimelinePanel::refresh_branches);
  connect(ctl_, &StudioController::treeChanged, this, &TimelinePanel::update_buttons);
  connect(timeline_, &TimelineWidget::selectionChanged, this, &TimelinePanel::update_buttons);
  connect(branches_, qOverload<int>(&QComboBox::activated), this, [this](int i) {
    const int leaf = branches_->itemData(i).toInt();
    if (leaf != ctl_->tip()) emit timeline_->switchRequested(leaf);
  });
  connect(rewind_, &QPushButton::clicked, this, [this] { emit timeline_->rewindRequested(timeline_->selected()); });
  connect(reroll_, &QPushButton::clicked, this, [this] { emit timeline_->rerollRequested(timeline_->selected()); });
  connect(prompt_, &QPushButton::clicked, this, [this] { emit timeline_->changePromptRequested(timeline_->selected()); });
  connect(ctl_, &StudioController::chunkDone, this, &TimelinePanel::ensureVisible);
  refresh_branches();
  update_buttons();
}

void TimelinePanel::ensureVisible(int node) {
  const auto c = timeline_->cells();
  const auto it = std::find(c.begin(), c.end(), node);
  if (it == c.end()) return;
  const QRect r = timeline_->cellRect(int(it - c.begin()));
  scroll_->ensureVisible(r.center().x(), r.center().y(), r.width() / 2 + 8, 0);
}

void TimelinePanel::refresh_branches() {
  const QSignalBlocker block(branches_);
  branches_->clear();
  const auto& tree = ctl_->tree();
  const int current_leaf = ctl_->tip() == -1 ? -1 : tree.leaf_of(ctl_->tip());
  int k = 0;
  for (int leaf : tree.leaves()) {
    const ChunkNode* n = tree.node(leaf);
    if (n->transient && n->state != ChunkState::Done && leaf != current_leaf) continue;
    const QString prompt = QString::fromStdString(n->spec.prompt);
    branches_->addItem(tr("%1 · %2 chunks · %3")
                           .arg(QChar('A' + (k % 26)))
                           .arg(tree.depth(leaf) + 1)
                           .arg(fontMetrics().elidedText(prompt, Qt::ElideRight, 220)),
                       leaf);
    if (leaf == current_leaf) branches_->setCurrentIndex(branches_->count() - 1);
    ++k;
  }
  branches_->setEnabled(branches_->count() > 1);
  const auto p = ctl_->path();
  const auto g = ctl_->ghost();
  info_->setText(p.empty() ? QString()
                 : g.empty() ? tr("%1 chunks").arg(p.size())
                             : tr("%1 chunks · rewound: %2 more kept as a branch").arg(p.size()).arg(g.size()));
}

void TimelinePanel::update_buttons() {
  const auto p = ctl_->path();
  const bool on_path = std::find(p.begin(), p.end(), timeline_->selected()) != p.end();
  rewind_->setEnabled(on_path);
  reroll_->setEnabled(on_path && ctl_->hasModel());
  prompt_->setEnabled(on_path && ctl_->hasModel());
}

}  // namespace vmla::ui
