#include "ui/seed_control.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QRegularExpressionValidator>
#include <QToolButton>

#include "ui/studio_controller.h"

namespace vmla::ui {

SeedControl::SeedControl(StudioController* ctl, QWidget* parent) : QWidget(parent), ctl_(ctl) {
  mode_ = new QComboBox(this);
  mode_->setObjectName("seedMode");
  mode_->addItem(tr("increment"), int(SeedPolicy::Mode::Increment));
  mode_->addItem(tr("fixed"), int(SeedPolicy::Mode::Fixed));
  mode_->addItem(tr("random"), int(SeedPolicy::Mode::Random));
  mode_->setToolTip(tr("increment: each new chunk takes the next seed · fixed: always this seed · random: a new one each time"));
  value_ = new QLineEdit(this);
  value_->setObjectName("seedValue");
  value_->setValidator(new QRegularExpressionValidator(QRegularExpression("[0-9]{1,19}"), value_));
  value_->setToolTip(tr("The seed the next chunk gets (random: the last one drawn)"));
  value_->setMaximumWidth(150);
  dice_ = new QToolButton(this);
  dice_->setText(tr("Random"));
  dice_->setToolTip(tr("Draw a random seed"));
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(new QLabel(tr("Seed"), this));
  layout->addWidget(mode_);
  layout->addWidget(value_, 1);
  layout->addWidget(dice_);

  connect(mode_, &QComboBox::currentIndexChanged, this, [this] {
    ctl_->seeds().set_mode(SeedPolicy::Mode(mode_->currentData().toInt()));
  });
  connect(value_, &QLineEdit::textEdited, this, [this](const QString& t) {
    bool ok = false;
    const quint64 v = t.toULongLong(&ok);
    if (ok) ctl_->seeds().set_value(v);
  });
  connect(dice_, &QToolButton::clicked, this, [this] {
    ctl_->seeds().set_value(SeedPolicy::random());
    refresh();
  });
  connect(ctl_, &StudioController::seedChanged, this, &SeedControl::refresh);
  refresh();
}

void SeedControl::refresh() {
  const QSignalBlocker b(mode_);
  mode_->setCurrentIndex(std::max(0, mode_->findData(int(ctl_->seeds().mode()))));
  if (!value_->hasFocus() || value_->text().isEmpty()) value_->setText(QString::number(ctl_->seeds().value()));
}

}  // namespace vmla::ui
