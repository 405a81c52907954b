#pragma once
// The preview surface: one RGB8 texture drawn letterboxed. When the frame fits, it is drawn at the
// largest integer scale with nearest sampling, so the framebuffer holds the frame's exact pixels.
#include <QByteArray>
#include <QOpenGLFunctions>
#include <QOpenGLWidget>
#include <memory>

class QOpenGLShaderProgram;
class QOpenGLBuffer;

namespace vmla::ui {

class FrameUploader;

class VideoGLWidget : public QOpenGLWidget, protected QOpenGLFunctions {
  Q_OBJECT
 public:
  enum class UploadPreference { Auto, Host, CudaInterop };

  explicit VideoGLWidget(QWidget* parent = nullptr);
  ~VideoGLWidget() override;

  void setFrame(const uint8_t* rgb, int width, int height);  // copied; uploaded at the next paint
  void clearFrame();
  bool hasFrame() const { return !frame_.isEmpty(); }
  // The engine runs on CUDA: try the interop path (takes effect at the next upload).
  void setUploadPreference(UploadPreference p);
  QString uploadPath() const { return upload_path_; }
  QString uploadNote() const { return upload_note_; }
  QRect videoRect() const;  // where the frame is drawn, in device pixels
  void setPlaceholder(const QString& text);

 signals:
  void uploadPathChanged(const QString& path);

 protected:
  void initializeGL() override;
  void paintGL() override;
  void resizeGL(int w, int h) override;

 private:
  void choose_uploader();
  void cleanup();

  QByteArray frame_;
  int width_ = 0, height_ = 0;
  bool dirty_ = false;
  unsigned texture_ = 0;
  int tex_w_ = 0, tex_h_ = 0;
  std::unique_ptr<QOpenGLShaderProgram> program_;
  std::unique_ptr<QOpenGLBuffer> quad_;
  std::unique_ptr<FrameUploader> uploader_;
  UploadPreference preference_ = UploadPreference::Auto;
  QString upload_path_, upload_note_, placeholder_;
};

}  // namespace vmla::ui
