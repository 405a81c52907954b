#include "ui/theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyleFactory>

namespace vmla::ui {

void apply_dark_theme(QApplication& app) {
  app.setStyle(QStyleFactory::create("Fusion"));
  QPalette p;
  const QColor window(37, 38, 43), base(27, 28, 32), text(222, 224, 230), mid(60, 62, 70);
  const QColor accent(74, 144, 226), disabled(120, 122, 130);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, QColor(50, 52, 58));
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::PlaceholderText, disabled);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, QColor(48, 50, 56));
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, QColor(255, 90, 90));
  p.setColor(QPalette::Link, accent);
  p.setColor(QPalette::Highlight, accent);
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Mid, mid);
  p.setColor(QPalette::Dark, QColor(20, 21, 24));
  p.setColor(QPalette::Light, QColor(70, 72, 80));
  for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
    p.setColor(QPalette::Disabled, role, disabled);
  p.setColor(QPalette::Disabled, QPalette::Highlight, mid);
  app.setPalette(p);
  app.setStyleSheet(
      "QToolTip { border: 1px solid #4a4c55; padding: 3px; }"
      "QDockWidget::title { padding: 4px; background: #2b2c31; }"
      "QPushButton[primary=\"true\"] { background: #3d7bd9; color: white; font-weight: bold; padding: 5px 14px; }"
      "QPushButton[primary=\"true\"]:disabled { background: #3a3c44; color: #8a8c94; }"
      "QPushButton[primary=\"true\"]:hover { background: #4a88e6; }");
}

}  // namespace vmla::ui
