#include "ui/model_locator.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>

namespace vmla::ui {

namespace {
constexpr const char* kDefaultModelFile = "vmla-tiny.safetensors";
}

QStringList default_model_candidates() {
  QStringList out;
  const QString env = qEnvironmentVariable("VMLA_MODEL");
  if (!env.isEmpty()) out << env;
  if (QCoreApplication::instance())
    out << QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral("../share/videomla/models/") + kDefaultModelFile);
#ifdef VMLA_BUILD_MODEL_DIR
  out << QDir(QStringLiteral(VMLA_BUILD_MODEL_DIR)).filePath(kDefaultModelFile);
#endif
#ifdef VMLA_SOURCE_MODEL_DIR
  out << QDir(QStringLiteral(VMLA_SOURCE_MODEL_DIR)).filePath(kDefaultModelFile);
#endif
  for (auto& p : out) p = QDir::cleanPath(p);
  return out;
}

QString default_model_path() {
  for (const QString& p : default_model_candidates())
    if (QFileInfo(p).isFile()) return QFileInfo(p).absoluteFilePath();
  return {};
}

}  // namespace vmla::ui
