#pragma once
// How frames reach the preview texture. Called on the GUI thread with the widget's GL context
// current. Host upload always works; CUDA-OpenGL interop (a pixel buffer registered with CUDA,
// mapped, filled by cudaMemcpy, unmapped, then copied into the texture by the GL driver) is used
// when the engine runs on CUDA and the GL context sits on a CUDA device.
#include <QString>
#include <cstdint>
#include <memory>

class QOpenGLFunctions;

namespace vmla::ui {

class FrameUploader {
 public:
  virtual ~FrameUploader() = default;
  virtual QString name() const = 0;
  virtual bool interop() const = 0;
  // Fills the bound-size RGB8 texture from `rgb` (host memory, or device memory for interop).
  virtual void upload(QOpenGLFunctions* gl, unsigned texture, int width, int height, const uint8_t* rgb) = 0;
  virtual void release(QOpenGLFunctions* gl) { (void)gl; }
};

std::unique_ptr<FrameUploader> make_host_uploader();
// nullptr when this build has no CUDA, no device is present or the GL context is not on one.
// `why` says what was missing.
std::unique_ptr<FrameUploader> make_cuda_interop_uploader(QOpenGLFunctions* gl, QString* why);

}  // namespace vmla::ui
