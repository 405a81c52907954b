#pragma once
// CUDA-OpenGL interop upload of RGB8 frames into a GL texture, without Qt: a pixel-unpack buffer
// registered with CUDA is mapped, filled by cudaMemcpy from host or device memory, unmapped, and
// copied into the texture by glTexSubImage2D. The studio's preview (ui/frame_uploader.cpp) fills
// GlFunctions from its QOpenGLContext; tests/gpu/test_gl_interop.cpp from a headless EGL context.
//
// Every call needs the GL context current on the calling thread. No GL or CUDA headers here, so
// that GPU machines without GL development files build it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct cudaGraphicsResource;

namespace vmla::ui {

// The GL entry points the upload uses (GL 2.1; the calling convention is the platform's C one).
struct GlFunctions {
  void (*GenBuffers)(int n, unsigned* buffers) = nullptr;
  void (*DeleteBuffers)(int n, const unsigned* buffers) = nullptr;
  void (*BindBuffer)(unsigned target, unsigned buffer) = nullptr;
  void (*BufferData)(unsigned target, std::ptrdiff_t size, const void* data, unsigned usage) = nullptr;
  void (*BindTexture)(unsigned target, unsigned texture) = nullptr;
  void (*PixelStorei)(unsigned pname, int param) = nullptr;
  void (*TexSubImage2D)(unsigned target, int level, int x, int y, int width, int height, unsigned format,
                        unsigned type, const void* pixels) = nullptr;
  unsigned (*GetError)() = nullptr;

  // Resolves every entry by its GL name ("glGenBuffers", ...). Returns the names not found, comma
  // separated; empty when all were.
  std::string load(const std::function<void*(const char* name)>& resolve);
  bool complete() const;
};

// "GL_INVALID_OPERATION (0x0502)".
std::string gl_error_name(unsigned error);

// The CUDA devices the current GL context runs on (cudaGLGetDevices, all devices). False when there
// are none; `why` then says what CUDA answered.
bool gl_context_cuda_devices(std::vector<int>* devices, std::string* why);

// Whether this process can register a GL buffer with CUDA: the context is on a CUDA device and a
// small probe buffer registers. False with `why` naming the call that failed and CUDA's reason.
bool gl_interop_available(const GlFunctions& gl, std::string* why);

class GlInteropUpload {
 public:
  enum class Path { None, Interop, Host };

  explicit GlInteropUpload(const GlFunctions& gl) : gl_(gl) {}
  ~GlInteropUpload();  // forgets GL objects that release() did not free (no context to free them)
  GlInteropUpload(const GlInteropUpload&) = delete;
  GlInteropUpload& operator=(const GlInteropUpload&) = delete;

  // Fills rows [0, height) of the bound-size RGB8 `texture` from `rgb` ([height, width, 3], tightly
  // packed, host or device memory). Through the registered pixel buffer; when CUDA refuses the
  // registration or a later interop call fails, this and every later frame go by a plain upload
  // (device memory staged through the host) and fallback_reason() says why. False, with error(),
  // when the frame could not be uploaded at all.
  bool upload(unsigned texture, int width, int height, const uint8_t* rgb);

  void release();  // frees the buffer and its registration; needs the context current

  Path last_path() const { return last_path_; }
  bool fell_back() const { return !fallback_reason_.empty(); }
  const std::string& fallback_reason() const { return fallback_reason_; }  // e.g. "cudaGraphicsGLRegisterBuffer: ..."
  const std::string& error() const { return error_; }

 private:
  bool resize(size_t bytes);
  bool upload_interop(unsigned texture, int width, int height, const uint8_t* rgb, size_t bytes);
  bool upload_host(unsigned texture, int width, int height, const uint8_t* rgb, size_t bytes);
  void fall_back(const std::string& reason);

  GlFunctions gl_;
  unsigned pbo_ = 0;
  cudaGraphicsResource* resource_ = nullptr;
  size_t bytes_ = 0;
  std::vector<uint8_t> staging_;  // device frames on the fallback path
  Path last_path_ = Path::None;
  std::string fallback_reason_, error_;
};

}  // namespace vmla::ui
