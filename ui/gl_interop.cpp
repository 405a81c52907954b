#include "ui/gl_interop.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <type_traits>

// cuda_gl_interop.h includes <GL/gl.h>, which the GPU machines do not have. The two entry points
// and the enum are declared here exactly as in CUDA's header (unchanged since CUDA 4.1).
extern "C" {
enum cudaGLDeviceList { cudaGLDeviceListAll = 1, cudaGLDeviceListCurrentFrame = 2, cudaGLDeviceListNextFrame = 3 };
cudaError_t cudaGLGetDevices(unsigned int* pCudaDeviceCount, int* pCudaDevices, unsigned int cudaDeviceCount,
                             enum cudaGLDeviceList deviceList);
cudaError_t cudaGraphicsGLRegisterBuffer(struct cudaGraphicsResource** resource, unsigned int buffer, unsigned int flags);
}

namespace vmla::ui {

namespace {

constexpr unsigned kTexture2D = 0x0DE1;          // GL_TEXTURE_2D
constexpr unsigned kRgb = 0x1907;                // GL_RGB
constexpr unsigned kUnsignedByte = 0x1401;       // GL_UNSIGNED_BYTE
constexpr unsigned kUnpackAlignment = 0x0CF5;    // GL_UNPACK_ALIGNMENT
constexpr unsigned kPixelUnpackBuffer = 0x88EC;  // GL_PIXEL_UNPACK_BUFFER
constexpr unsigned kStreamDraw = 0x88E0;         // GL_STREAM_DRAW

// "cudaGraphicsMapResources: invalid resource handle (cudaErrorInvalidResourceHandle)"; clears
// CUDA's last error so that it is not reported again by an unrelated call.
std::string cuda_failure(const char* call, cudaError_t e) {
  cudaGetLastError();
  return std::string(call) + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
}

// Errors left by earlier GL work are not ours to report.
void drain_gl_errors(const GlFunctions& gl) {
  for (int i = 0; i < 16 && gl.GetError() != 0; ++i) {
  }
}

// Empty when GL reported no error since the last check, else "<what>: GL_INVALID_VALUE (0x0501)".
std::string gl_failure(const GlFunctions& gl, const std::string& what) {
  const unsigned e = gl.GetError();
  if (e == 0) return {};
  drain_gl_errors(gl);
  return what + ": " + gl_error_name(e);
}

}  // namespace

std::string GlFunctions::load(const std::function<void*(const char* name)>& resolve) {
  std::string missing;
  auto get = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(resolve(name));
    if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
  get(GenBuffers, "glGenBuffers");
  get(DeleteBuffers, "glDeleteBuffers");
  get(BindBuffer, "glBindBuffer");
  get(BufferData, "glBufferData");
  get(BindTexture, "glBindTexture");
  get(PixelStorei, "glPixelStorei");
  get(TexSubImage2D, "glTexSubImage2D");
  get(GetError, "glGetError");
  return missing;
}

bool GlFunctions::complete() const {
  return GenBuffers && DeleteBuffers && BindBuffer && BufferData && BindTexture && PixelStorei && TexSubImage2D &&
         GetError;
}

std::string gl_error_name(unsigned error) {
  const char* name = "unknown GL error";
  switch (error) {
    case 0x0000: name = "GL_NO_ERROR"; break;
    case 0x0500: name = "GL_INVALID_ENUM"; break;
    case 0x0501: name = "GL_INVALID_VALUE"; break;
    case 0x0502: name = "GL_INVALID_OPERATION"; break;
    case 0x0503: name = "GL_STACK_OVERFLOW"; break;
    case 0x0504: name = "GL_STACK_UNDERFLOW"; break;
    case 0x0505: name = "GL_OUT_OF_MEMORY"; break;
    case 0x0506: name = "GL_INVALID_FRAMEBUFFER_OPERATION"; break;
    case 0x0507: name = "GL_CONTEXT_LOST"; break;
    default: break;
  }
  char code[16];
  std::snprintf(code, sizeof code, "0x%04X", error);
  return std::string(name) + " (" + code + ")";
}

bool gl_context_cuda_devices(std::vector<int>* devices, std::string* why) {
  unsigned count = 0;
  int found[16] = {};
  const cudaError_t e = cudaGLGetDevices(&count, found, 16, cudaGLDeviceListAll);
  if (e != cudaSuccess || count == 0) {
    if (why)
      *why = e != cudaSuccess ? "the OpenGL context is not on a CUDA device (" + cuda_failure("cudaGLGetDevices", e) + ")"
                              : "the OpenGL context is not on a CUDA device (cudaGLGetDevices found none)";
    return false;
  }
  if (devices) devices->assign(found, found + std::min(count, 16u));
  return true;
}

bool gl_interop_available(const GlFunctions& gl, std::string* why) {
  if (!gl.complete()) {
    if (why) *why = "the OpenGL context lacks a function the interop upload needs";
    return false;
  }
  if (!gl_context_cuda_devices(nullptr, why)) return false;
  drain_gl_errors(gl);
  unsigned pbo = 0;
  gl.GenBuffers(1, &pbo);
  gl.BindBuffer(kPixelUnpackBuffer, pbo);
  gl.BufferData(kPixelUnpackBuffer, 4096, nullptr, kStreamDraw);
  gl.BindBuffer(kPixelUnpackBuffer, 0);
  std::string failure = gl_failure(gl, "glBufferData (4 KiB probe pixel buffer)");
  if (failure.empty()) {
    cudaGraphicsResource* resource = nullptr;
    const cudaError_t e = cudaGraphicsGLRegisterBuffer(&resource, pbo, cudaGraphicsRegisterFlagsWriteDiscard);
    if (e != cudaSuccess) failure = cuda_failure("cudaGraphicsGLRegisterBuffer", e);
    else cudaGraphicsUnregisterResource(resource);
  }
  gl.DeleteBuffers(1, &pbo);
  if (failure.empty()) return true;
  if (why) *why = "CUDA cannot register an OpenGL pixel buffer (" + failure + ")";
  return false;
}

GlInteropUpload::~GlInteropUpload() = default;

void GlInteropUpload::release() {
  if (resource_) {
    const cudaError_t e = cudaGraphicsUnregisterResource(resource_);
    if (e != cudaSuccess) error_ = cuda_failure("cudaGraphicsUnregisterResource", e);
  }
  if (pbo_ && gl_.DeleteBuffers) gl_.DeleteBuffers(1, &pbo_);
  resource_ = nullptr;
  pbo_ = 0;
  bytes_ = 0;
}

void GlInteropUpload::fall_back(const std::string& reason) {
  fallback_reason_ = reason;
  std::fprintf(stderr, "vmla: CUDA-OpenGL interop upload disabled, frames go by host upload: %s\n", reason.c_str());
  release();
}

bool GlInteropUpload::resize(size_t bytes) {
  release();
  gl_.GenBuffers(1, &pbo_);
  gl_.BindBuffer(kPixelUnpackBuffer, pbo_);
  gl_.BufferData(kPixelUnpackBuffer, std::ptrdiff_t(bytes), nullptr, kStreamDraw);
  gl_.BindBuffer(kPixelUnpackBuffer, 0);
  const std::string failure = gl_failure(gl_, "glBufferData (" + std::to_string(bytes) + " byte pixel buffer)");
  if (!failure.empty()) {
    fall_back(failure);
    return false;
  }
  const cudaError_t e = cudaGraphicsGLRegisterBuffer(&resource_, pbo_, cudaGraphicsRegisterFlagsWriteDiscard);
  if (e != cudaSuccess) {
    resource_ = nullptr;
    fall_back(cuda_failure("cudaGraphicsGLRegisterBuffer", e));
    return false;
  }
  bytes_ = bytes;
  return true;
}

bool GlInteropUpload::upload(unsigned texture, int width, int height, const uint8_t* rgb) {
  error_.clear();
  last_path_ = Path::None;
  if (!gl_.complete()) {
    error_ = "the GL function table is incomplete";
    return false;
  }
  if (!rgb || width <= 0 || height <= 0) {
    error_ = "no frame (" + std::to_string(width) + "x" + std::to_string(height) + ")";
    return false;
  }
  const size_t bytes = size_t(width) * size_t(height) * 3;
  drain_gl_errors(gl_);
  if (!fell_back() && bytes != bytes_) resize(bytes);
  if (!fell_back() && upload_interop(texture, width, height, rgb, bytes)) return true;
  if (!fell_back()) return false;  // a GL failure that a host upload would repeat
  return upload_host(texture, width, height, rgb, bytes);
}

bool GlInteropUpload::upload_interop(unsigned texture, int width, int height, const uint8_t* rgb, size_t bytes) {
  cudaError_t e = cudaGraphicsMapResources(1, &resource_, nullptr);
  if (e != cudaSuccess) {
    fall_back(cuda_failure("cudaGraphicsMapResources", e));
    return false;
  }
  void* dst = nullptr;
  size_t mapped = 0;
  std::string failure;
  e = cudaGraphicsResourceGetMappedPointer(&dst, &mapped, resource_);
  if (e != cudaSuccess) failure = cuda_failure("cudaGraphicsResourceGetMappedPointer", e);
  else if (mapped < bytes)
    failure = "cudaGraphicsResourceGetMappedPointer: mapped " + std::to_string(mapped) + " bytes, the frame needs " +
              std::to_string(bytes);
  else if ((e = cudaMemcpy(dst, rgb, bytes, cudaMemcpyDefault)) != cudaSuccess)  // host or device source
    failure = cuda_failure("cudaMemcpy into the mapped pixel buffer", e);
  e = cudaGraphicsUnmapResources(1, &resource_, nullptr);
  if (e != cudaSuccess && failure.empty()) failure = cuda_failure("cudaGraphicsUnmapResources", e);
  if (!failure.empty()) {
    fall_back(failure);
    return false;
  }
  gl_.BindBuffer(kPixelUnpackBuffer, pbo_);
  gl_.BindTexture(kTexture2D, texture);
  gl_.PixelStorei(kUnpackAlignment, 1);
  gl_.TexSubImage2D(kTexture2D, 0, 0, 0, width, height, kRgb, kUnsignedByte, nullptr);
  gl_.BindBuffer(kPixelUnpackBuffer, 0);
  error_ = gl_failure(gl_, "glTexSubImage2D from the pixel buffer (texture " + std::to_string(texture) + ", " +
                               std::to_string(width) + "x" + std::to_string(height) + " RGB8)");
  if (!error_.empty()) return false;
  last_path_ = Path::Interop;
  return true;
}

bool GlInteropUpload::upload_host(unsigned texture, int width, int height, const uint8_t* rgb, size_t bytes) {
  const uint8_t* src = rgb;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, rgb) != cudaSuccess) cudaGetLastError();  // not CUDA's: host memory
  else if (attr.type == cudaMemoryTypeDevice) {
    staging_.resize(bytes);
    const cudaError_t e = cudaMemcpy(staging_.data(), rgb, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
      error_ = cuda_failure("cudaMemcpy of the device frame to the host", e);
      return false;
    }
    src = staging_.data();
  }
  gl_.BindTexture(kTexture2D, texture);
  gl_.PixelStorei(kUnpackAlignment, 1);
  gl_.TexSubImage2D(kTexture2D, 0, 0, 0, width, height, kRgb, kUnsignedByte, src);
  error_ = gl_failure(gl_, "glTexSubImage2D from host memory (texture " + std::to_string(texture) + ", " +
                               std::to_string(width) + "x" + std::to_string(height) + " RGB8)");
  if (!error_.empty()) return false;
  last_path_ = Path::Host;
  return true;
}

}  // namespace vmla::ui
