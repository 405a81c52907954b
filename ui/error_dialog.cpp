#include "ui/error_dialog.h"

#include <QApplication>
#include <QClipboard>
#include <QMessageBox>
#include <QPushButton>

namespace vmla::ui {

QMessageBox* show_error(QWidget* parent, const QString& title, const QString& message, const QString& details) {
  auto* box = new QMessageBox(QMessageBox::Warning, title, title, QMessageBox::Ok, parent);
  box->setObjectName("errorBox");
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->setInformativeText(message + QObject::tr("\n\nYour project and chunks are kept."));
  if (!details.isEmpty()) box->setDetailedText(details);
  box->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* copy = box->addButton(QObject::tr("Copy details"), QMessageBox::ActionRole);
  const QString text = title + "\n" + message + (details.isEmpty() ? QString() : "\n\n" + details);
  // ActionRole buttons close the box; keep it open and copy instead.
  QObject::disconnect(copy, nullptr, box, nullptr);
  QObject::connect(copy, &QPushButton::clicked, box, [text] { QApplication::clipboard()->setText(text); });
  box->open();
  return box;
}

}  // namespace vmla::ui
