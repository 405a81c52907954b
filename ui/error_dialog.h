#pragma once
#include <QString>

class QWidget;
class QMessageBox;

namespace vmla::ui {

// A non-blocking error box: the message, the details (selectable) and a button that copies both.
QMessageBox* show_error(QWidget* parent, const QString& title, const QString& message, const QString& details = {});

}  // namespace vmla::ui
