#include "ui/model_locator.h"

#include <QFileInfo>

#include "core/model/model.h"

namespace vmla::ui {

QStringList default_model_candidates() {
  QStringList out;
  for (const auto& p : vmla::default_model_search_paths()) out << QString::fromStdString(p);
  return out;
}

QString default_model_path() {
  for (const QString& p : default_model_candidates())
    if (QFileInfo(p).isFile()) return QFileInfo(p).canonicalFilePath();
  return {};
}

}  // namespace vmla::ui
