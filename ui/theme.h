#pragma once
class QApplication;

namespace vmla::ui {

// Fusion style with a dark palette; accent colours used by the custom-painted widgets.
void apply_dark_theme(QApplication& app);

}  // namespace vmla::ui
