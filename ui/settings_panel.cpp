#include "ui/settings_panel.h"

#include <QComboBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QStyle>

#include "core/tensor/backend.h"

namespace vmla::ui {

SettingsPanel::SettingsPanel(QWidget* parent) : QWidget(parent) {
  auto spin = [this](const char* name, int lo, int hi, const QString& tip) {
    auto* s = new QSpinBox(this);
    s->setObjectName(name);
    s->setRange(lo, hi);
    s->setToolTip(tip);
    return s;
  };
  steps_ = spin("stepsSpin", 0, 50, tr("Denoising steps per chunk; fewer is faster"));
  sink_ = spin("sinkSpin", -1, 16, tr("Latent frames at the start of the video that stay in the cache for ever"));
  window_ = spin("windowSpin", -1, 64, tr("Most recent latent frames kept in the sliding-window cache"));
  steps_->setSpecialValueText(tr("model default"));
  sink_->setSpecialValueText(tr("model default"));
  window_->setSpecialValueText(tr("model default"));
  sink_->setMinimum(-1);
  window_->setMinimum(-1);
  window_->setValue(-1);

  attn_ = new QComboBox(this);
  attn_->setObjectName("attnCombo");
  attn_->addItem(tr("auto"), "auto");
  attn_->addItem(tr("absorbed (latent space)"), "absorbed");
  attn_->addItem(tr("expanded (per-head K, V)"), "expanded");
  attn_->setToolTip(tr("How MLA attention is computed; both give the same video"));
  backend_ = new QComboBox(this);
  backend_->setObjectName("backendCombo");
  backend_->addItem(tr("auto (CUDA if present)"), "auto");
  backend_->addItem(tr("CPU"), "cpu");
  backend_->addItem(tr("CUDA"), "cuda");
  if (!vmla::cuda_available())
    if (auto* m = qobject_cast<QStandardItemModel*>(backend_->model())) {
      m->item(2)->setEnabled(false);
      m->item(2)->setToolTip(tr("No CUDA device (or this build has no CUDA backend)"));
    }
  decoder_ = new QComboBox(this);
  decoder_->setObjectName("decoderCombo");
  decoder_->addItem(tr("decoder (video frames)"), true);
  decoder_->addItem(tr("off (latents only, fastest)"), false);
  decoder_->setToolTip(tr("Turn the decoder off to measure the transformer alone: no frames to preview or export"));

  apply_ = new QPushButton(tr("Apply"), this);
  apply_->setObjectName("applySettings");
  revert_ = new QPushButton(tr("Revert"), this);
  note_ = new QLabel(tr("Applying regenerates the chunks on screen with the new settings."), this);
  note_->setWordWrap(true);
  note_->setStyleSheet("color: #9a9ca4;");

  auto* form = new QFormLayout;
  form->addRow(tr("Steps"), steps_);
  form->addRow(tr("Sink frames"), sink_);
  form->addRow(tr("Window frames"), window_);
  form->addRow(tr("Attention"), attn_);
  form->addRow(tr("Backend"), backend_);
  form->addRow(tr("Preview decoder"), decoder_);
  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  buttons->addWidget(revert_);
  buttons->addWidget(apply_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addLayout(buttons);
  layout->addWidget(note_);
  layout->addStretch(1);

  for (auto* s : {steps_, sink_, window_}) connect(s, &QSpinBox::valueChanged, this, &SettingsPanel::update_state);
  for (auto* c : {attn_, backend_, decoder_}) connect(c, &QComboBox::currentIndexChanged, this, &SettingsPanel::update_state);
  connect(apply_, &QPushButton::clicked, this, [this] { emit applyRequested(settings()); });
  connect(revert_, &QPushButton::clicked, this, [this] { setSettings(applied_); });
  setSettings(applied_);
}

void SettingsPanel::setModelDefaults(const vmla::ModelConfig& cfg) {
  steps_->setSpecialValueText(tr("model (%1)").arg(cfg.timesteps.size()));
  sink_->setSpecialValueText(tr("model (%1)").arg(cfg.sink_frames));
  window_->setSpecialValueText(tr("model (%1)").arg(cfg.window_frames));
  attn_->setEnabled(cfg.attention == vmla::AttentionKind::MLA);
}

void SettingsPanel::setSettings(const vmla::io::ProjectSettings& s) {
  applied_ = s;
  const QSignalBlocker b1(steps_), b2(sink_), b3(window_), b4(attn_), b5(backend_), b6(decoder_);
  steps_->setValue(s.steps <= 0 ? 0 : s.steps);
  sink_->setValue(s.sink_frames);
  window_->setValue(s.window_frames);
  attn_->setCurrentIndex(std::max(0, attn_->findData(QString::fromStdString(s.attn_path))));
  backend_->setCurrentIndex(std::max(0, backend_->findData(QString::fromStdString(s.backend))));
  decoder_->setCurrentIndex(s.decode ? 0 : 1);
  update_state();
}

vmla::io::ProjectSettings SettingsPanel::settings() const {
  vmla::io::ProjectSettings s;
  s.steps = steps_->value() == 0 ? -1 : steps_->value();
  s.sink_frames = sink_->value();
  s.window_frames = window_->value();
  s.attn_path = attn_->currentData().toString().toStdString();
  s.backend = backend_->currentData().toString().toStdString();
  s.decode = decoder_->currentData().toBool();
  return s;
}

void SettingsPanel::update_state() {
  const bool changed = modified();
  apply_->setEnabled(changed);
  revert_->setEnabled(changed);
  apply_->setProperty("primary", changed);
  apply_->style()->unpolish(apply_);
  apply_->style()->polish(apply_);
}

}  // namespace vmla::ui
