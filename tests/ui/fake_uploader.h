#pragma once
// A preview uploader for tests, without CUDA.
#include <QString>
#include <memory>

#include "ui/frame_uploader.h"

namespace vmla::ui::test {

// Stands in for the CUDA-OpenGL interop uploader: uploads from the host and, from the first upload
// after *failed turns true, reports a permanent fallback in the words the real one uses.
class FallingBackUploader final : public FrameUploader {
 public:
  explicit FallingBackUploader(std::shared_ptr<const bool> failed) : failed_(std::move(failed)) {}
  QString name() const override {
    return fell_back_ ? QStringLiteral("host upload (glTexSubImage2D) after CUDA-OpenGL interop failed: fake error")
                      : QStringLiteral("CUDA-OpenGL interop (fake)");
  }
  bool interop() const override { return !fell_back_; }
  void upload(QOpenGLFunctions* gl, unsigned texture, int width, int height, const uint8_t* rgb) override {
    fell_back_ = fell_back_ || *failed_;
    host_->upload(gl, texture, width, height, rgb);
  }

 private:
  std::shared_ptr<const bool> failed_;
  bool fell_back_ = false;
  std::unique_ptr<FrameUploader> host_ = make_host_uploader();
};

}  // namespace vmla::ui::test
