#include "ui/frame_uploader.h"

#include <QOpenGLFunctions>

#ifdef VMLA_WITH_CUDA
#include <cuda_gl_interop.h>
#include <cuda_runtime.h>
#endif

#ifndef GL_PIXEL_UNPACK_BUFFER
#define GL_PIXEL_UNPACK_BUFFER 0x88EC
#endif
#ifndef GL_STREAM_DRAW
#define GL_STREAM_DRAW 0x88E0
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
class CudaInteropUploader final : public FrameUploader {
 public:
  QString name() const override { return QStringLiteral("CUDA-OpenGL interop (registered pixel buffer)"); }
  bool interop() const override { return true; }

  void upload(QOpenGLFunctions* gl, unsigned texture, int width, int height, const uint8_t* rgb) override {
    const size_t bytes = size_t(width) * height * 3;
    if (bytes != bytes_) resize(gl, bytes);
    if (!resource_) {  // registration refused: plain upload
      gl->glBindTexture(GL_TEXTURE_2D, texture);
      gl->glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
      gl->glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, rgb);
      return;
    }
    void* dst = nullptr;
    size_t mapped = 0;
    if (cudaGraphicsMapResources(1, &resource_, nullptr) != cudaSuccess) return;
    if (cudaGraphicsResourceGetMappedPointer(&dst, &mapped, resource_) == cudaSuccess && mapped >= bytes)
      cudaMemcpy(dst, rgb, bytes, cudaMemcpyDefault);  // host or device source
    cudaGraphicsUnmapResources(1, &resource_, nullptr);
    gl->glBindBuffer(GL_PIXEL_UNPACK_BUFFER, pbo_);
    gl->glBindTexture(GL_TEXTURE_2D, texture);
    gl->glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    gl->glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, nullptr);
    gl->glBindBuffer(GL_PIXEL_UNPACK_BUFFER, 0);
  }

  void release(QOpenGLFunctions* gl) override {
    if (resource_) cudaGraphicsUnregisterResource(resource_);
    if (pbo_) gl->glDeleteBuffers(1, &pbo_);
    resource_ = nullptr;
    pbo_ = 0;
    bytes_ = 0;
  }

 private:
  void resize(QOpenGLFunctions* gl, size_t bytes) {
    release(gl);
    gl->glGenBuffers(1, &pbo_);
    gl->glBindBuffer(GL_PIXEL_UNPACK_BUFFER, pbo_);
    gl->glBufferData(GL_PIXEL_UNPACK_BUFFER, GLsizeiptr(bytes), nullptr, GL_STREAM_DRAW);
    gl->glBindBuffer(GL_PIXEL_UNPACK_BUFFER, 0);
    if (cudaGraphicsGLRegisterBuffer(&resource_, pbo_, cudaGraphicsRegisterFlagsWriteDiscard) != cudaSuccess)
      resource_ = nullptr;
    bytes_ = bytes;
  }

  GLuint pbo_ = 0;
  cudaGraphicsResource_t resource_ = nullptr;
  size_t bytes_ = 0;
};
#endif

}  // namespace

std::unique_ptr<FrameUploader> make_host_uploader() { return std::make_unique<HostUploader>(); }

std::unique_ptr<FrameUploader> make_cuda_interop_uploader(QOpenGLFunctions* gl, QString* why) {
#ifdef VMLA_WITH_CUDA
  (void)gl;
  unsigned count = 0;
  int devices[4] = {};
  const cudaError_t e = cudaGLGetDevices(&count, devices, 4, cudaGLDeviceListAll);
  if (e != cudaSuccess || count == 0) {
    if (why) *why = QStringLiteral("the OpenGL context is not on a CUDA device (%1)").arg(cudaGetErrorString(e));
    cudaGetLastError();
    return nullptr;
  }
  return std::make_unique<CudaInteropUploader>();
#else
  (void)gl;
  if (why) *why = QStringLiteral("this build has no CUDA");
  return nullptr;
#endif
}

}  // namespace vmla::ui
