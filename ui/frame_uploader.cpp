#include "ui/frame_uploader.h"

#include <QOpenGLContext>
#include <QOpenGLFunctions>

#ifdef VMLA_WITH_CUDA
#include "ui/gl_interop.h"
#endif

namespace vmla::ui {

namespace {

class HostUploader final : public FrameUploader {
 public:
  QString name() const override { return QStringLiteral("host upload (glTexSubImage2D)"); }
  bool interop() const override { return false; }
  void upload(QOpenGLFunctions* gl, unsigned texture, int width, int height, const uint8_t* rgb) override {
    gl->glBindTexture(GL_TEXTURE_2D, texture);
    gl->glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    gl->glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, rgb);
  }
};

#ifdef VMLA_WITH_CUDA
// The GL and CUDA work lives in ui/gl_interop (no Qt), which the GPU machines test headless.
class CudaInteropUploader final : public FrameUploader {
 public:
  explicit CudaInteropUploader(const GlFunctions& gl) : interop_(gl) {}

  QString name() const override {
    if (interop_.fell_back())
      return QStringLiteral("host upload (glTexSubImage2D) after CUDA-OpenGL interop failed: %1")
          .arg(QString::fromStdString(interop_.fallback_reason()));
    return QStringLiteral("CUDA-OpenGL interop (registered pixel buffer)");
  }
  bool interop() const override { return !interop_.fell_back(); }

  void upload(QOpenGLFunctions* gl, unsigned texture, int width, int height, const uint8_t* rgb) override {
    (void)gl;
    if (!interop_.upload(texture, width, height, rgb) && interop_.error() != last_error_) {
      last_error_ = interop_.error();
      qWarning("preview upload failed: %s", last_error_.c_str());
    }
  }

  void release(QOpenGLFunctions* gl) override {
    (void)gl;
    interop_.release();
  }

 private:
  GlInteropUpload interop_;
  std::string last_error_;
};

#endif

}  // namespace

std::unique_ptr<FrameUploader> make_host_uploader() { return std::make_unique<HostUploader>(); }

std::unique_ptr<FrameUploader> make_cuda_interop_uploader(QOpenGLFunctions* gl, QString* why) {
#ifdef VMLA_WITH_CUDA
  (void)gl;
  QOpenGLContext* context = QOpenGLContext::currentContext();
  if (!context) {
    if (why) *why = QStringLiteral("no current OpenGL context");
    return nullptr;
  }
  GlFunctions functions;
  const std::string missing =
      functions.load([context](const char* name) { return reinterpret_cast<void*>(context->getProcAddress(name)); });
  if (!missing.empty()) {
    if (why) *why = QStringLiteral("the OpenGL context does not provide %1").arg(QString::fromStdString(missing));
    return nullptr;
  }
  std::string reason;
  if (!gl_interop_available(functions, &reason)) {
    if (why) *why = QString::fromStdString(reason);
    return nullptr;
  }
  return std::make_unique<CudaInteropUploader>(functions);
#else
  (void)gl;
  if (why) *why = QStringLiteral("this build has no CUDA");
  return nullptr;
#endif
}

}  // namespace vmla::ui
