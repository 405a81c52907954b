#pragma once
// Seed for new chunks: mode (fixed / random / increment) and value, always visible.
#include <QWidget>

class QComboBox;
class QLineEdit;
class QToolButton;

namespace vmla::ui {

class StudioController;

class SeedControl : public QWidget {
  Q_OBJECT
 public:
  explicit SeedControl(StudioController* ctl, QWidget* parent = nullptr);
  void refresh();  // from the controller's policy

 private:
  StudioController* ctl_;
  QComboBox* mode_;
  QLineEdit* value_;
  QToolButton* dice_;
};

}  // namespace vmla::ui
