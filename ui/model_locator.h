#pragma once
#include <QString>
#include <QStringList>

namespace vmla::ui {

// Where the default model is looked for, in order: $VMLA_MODEL, <exe dir>/../share/videomla/models,
// the build tree's resources/models, the source tree's resources/models.
QStringList default_model_candidates();
// The first candidate that exists, or an empty string.
QString default_model_path();

}  // namespace vmla::ui
