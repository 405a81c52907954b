#pragma once
#include <QString>
#include <QStringList>

namespace vmla::ui {

// The engine's search order for the default model (vmla::default_model_search_paths()):
// $VMLA_MODEL, <exe dir>/../share/videomla/models, the source tree's resources/models (a trained
// model), the build tree's generated (untrained) one.
QStringList default_model_candidates();
// The first candidate that exists, or an empty string.
QString default_model_path();

}  // namespace vmla::ui
