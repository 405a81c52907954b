// videomla-studio: the desktop studio.  Usage: videomla-studio [project.vmlaproj | model.safetensors]
#include <QApplication>
#include <QCommandLineParser>

#include "ui/main_window.h"
#include "ui/theme.h"

int main(int argc, char** argv) {
  QApplication::setAttribute(Qt::AA_ShareOpenGLContexts);
  QApplication app(argc, argv);
  QApplication::setOrganizationName("VideoMLA");
  QApplication::setApplicationName("VideoMLA Studio");
  QApplication::setApplicationVersion(VMLA_VERSION);
  QApplication::setDesktopFileName("videomla-studio");

  QCommandLineParser args;
  args.setApplicationDescription("VideoMLA Studio: live, chunk-by-chunk video generation");
  args.addHelpOption();
  args.addVersionOption();
  args.addPositionalArgument("file", "A project (.vmlaproj) or a model (.safetensors) to open");
  args.process(app);

  vmla::ui::apply_dark_theme(app);
  vmla::ui::MainWindow w;
  w.show();
  w.start(args.positionalArguments().value(0));
  return app.exec();
}
