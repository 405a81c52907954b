#pragma once
// The preview surface: one RGB8 texture drawn letterboxed. When the frame fits, it is drawn at the
// largest integer scale with nearest sampling, so the framebuffer holds the frame's exact pixels.
//
// Two hosts for the same renderer:
//  - Window (default): a QOpenGLWindow in a window container. Only the video area goes through GL.
//  - Widget: a QOpenGLWidget. Qt then composites the whole top-level window through OpenGL on every
//    repaint of any widget; with software GL (Mesa llvmpipe under Xvfb, VMs without a GPU) that cost
//    about 25 ms of CPU per repaint of a 1480x920 window and stalled the event loop during generation
//    (measured in tests/ui/test_main_window). Set VMLA_PREVIEW_HOST=widget to use it.
#include <QByteArray>
#include <QImage>
#include <QWidget>
#include <functional>
#include <memory>

namespace vmla::ui {

class FrameUploader;
class VideoRenderer;

class VideoView : public QWidget {
  Q_OBJECT
 public:
  enum class Host { Window, Widget };
  enum class UploadPreference { Auto, Host, CudaInterop };

  explicit VideoView(QWidget* parent = nullptr, Host host = default_host());
  ~VideoView() override;
  static Host default_host();
  Host host() const { return host_; }

  void setFrame(const uint8_t* rgb, int width, int height);  // copied; uploaded at the next paint
  void clearFrame();
  bool hasFrame() const;
  void setPlaceholder(const QString& text);
  // Auto: CUDA-OpenGL interop when this build has CUDA and the GL context is on a CUDA device.
  void setUploadPreference(UploadPreference p);
  // Makes the uploader with `factory` instead of choosing one by preference (an empty function
  // restores the choice). A seam for tests: a fake uploader needs no CUDA.
  void setUploaderFactory(std::function<std::unique_ptr<FrameUploader>()> factory);
  // The uploader's name(), re-read after every upload: uploadPathChanged() also fires when the
  // uploader switches path by itself (CUDA-OpenGL interop failing and falling back to host upload).
  QString uploadPath() const;
  QString uploadNote() const;

  QImage grabFramebuffer();  // renders and reads back the GL framebuffer
  QRect videoRect() const;   // where the frame is drawn, in framebuffer pixels

 signals:
  void uploadPathChanged(const QString& path);

 private:
  void request_update();
  void rechoose_uploader();

  Host host_;
  std::unique_ptr<VideoRenderer> renderer_;
  QWidget* widget_host_ = nullptr;       // the QOpenGLWidget, or the window container
  class GLWindowHost* window_ = nullptr;  // owned by the container
};

}  // namespace vmla::ui
