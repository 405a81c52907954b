#pragma once
// Generation settings (steps, sink and window frames, attention path, backend, preview decoder).
// They belong to the project; applying them starts a new session and regenerates what is on screen.
#include <QWidget>

#include "core/io/project.h"
#include "core/model/config.h"

class QComboBox;
class QLabel;
class QPushButton;
class QSpinBox;

namespace vmla::ui {

class SettingsPanel : public QWidget {
  Q_OBJECT
 public:
  explicit SettingsPanel(QWidget* parent = nullptr);
  void setSettings(const vmla::io::ProjectSettings& s);  // the applied ones
  vmla::io::ProjectSettings settings() const;            // what the form shows
  void setModelDefaults(const vmla::ModelConfig& cfg);
  bool modified() const { return settings() != applied_; }

 signals:
  void applyRequested(const vmla::io::ProjectSettings& s);

 private:
  void update_state();

  vmla::io::ProjectSettings applied_;
  QSpinBox *steps_, *sink_, *window_;
  QComboBox *attn_, *backend_, *decoder_;
  QPushButton *apply_, *revert_;
  QLabel* note_;
};

}  // namespace vmla::ui
