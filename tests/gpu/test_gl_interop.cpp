// The preview's CUDA-OpenGL interop (ui/gl_interop) on a headless EGL context: frames uploaded from
// host memory, from device memory and straight from the engine's FrameBatch::device_rgb must read
// back from the texture exactly; interop and host upload are timed (printed, not asserted).
//
// EGL and GL are reached only through dlopen("libEGL.so.1") and eglGetProcAddress, with the few
// types and constants declared here, so the test builds on machines without GL packages. It skips
// without a CUDA device, without libEGL, or without an EGL display; on the GPU machines
// tools/device/gl_check.sh unpacks the GL loader libraries and runs it.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/model/model.h"
#include "core/runtime/session.h"

#ifdef VMLA_WITH_CUDA
#include <cuda_runtime.h>

#include "ui/gl_interop.h"

using namespace vmla;
using vmla::ui::GlInteropUpload;

namespace {

// ---- EGL, declared by hand (values from the Khronos registry's egl.h / eglext.h) -----------------

using EGLDisplay = void*;
using EGLConfig = void*;
using EGLContext = void*;
using EGLSurface = void*;
using EGLDeviceEXT = void*;
using EGLint = int32_t;
using EGLBoolean = unsigned;
using EGLenum = unsigned;
using EGLAttrib = intptr_t;

constexpr EGLint EGL_NONE = 0x3038;
constexpr EGLint EGL_VENDOR = 0x3053;
constexpr EGLint EGL_VERSION = 0x3054;
constexpr EGLint EGL_EXTENSIONS = 0x3055;
constexpr EGLint EGL_RED_SIZE = 0x3024;
constexpr EGLint EGL_GREEN_SIZE = 0x3023;
constexpr EGLint EGL_BLUE_SIZE = 0x3022;
constexpr EGLint EGL_SURFACE_TYPE = 0x3033;
constexpr EGLint EGL_PBUFFER_BIT = 0x0001;
constexpr EGLint EGL_RENDERABLE_TYPE = 0x3040;
constexpr EGLint EGL_OPENGL_BIT = 0x0008;
constexpr EGLint EGL_WIDTH = 0x3057;
constexpr EGLint EGL_HEIGHT = 0x3056;
constexpr EGLenum EGL_OPENGL_API = 0x30A2;
constexpr EGLenum EGL_PLATFORM_DEVICE_EXT = 0x313F;
constexpr EGLint EGL_CUDA_DEVICE_NV = 0x323A;
constexpr EGLint EGL_DRM_DEVICE_FILE_EXT = 0x3233;
const EGLDisplay EGL_NO_DISPLAY = nullptr;
const EGLContext EGL_NO_CONTEXT = nullptr;
const EGLSurface EGL_NO_SURFACE = nullptr;

struct Egl {
  void* lib = nullptr;
  void* (*GetProcAddress)(const char* name) = nullptr;
  EGLint (*GetError)() = nullptr;
  EGLDisplay (*GetDisplay)(void* native_display) = nullptr;
  EGLBoolean (*Initialize)(EGLDisplay dpy, EGLint* major, EGLint* minor) = nullptr;
  const char* (*QueryString)(EGLDisplay dpy, EGLint name) = nullptr;
  EGLBoolean (*BindAPI)(EGLenum api) = nullptr;
  EGLBoolean (*ChooseConfig)(EGLDisplay dpy, const EGLint* attribs, EGLConfig* configs, EGLint size, EGLint* n) = nullptr;
  EGLContext (*CreateContext)(EGLDisplay dpy, EGLConfig config, EGLContext share, const EGLint* attribs) = nullptr;
  EGLSurface (*CreatePbufferSurface)(EGLDisplay dpy, EGLConfig config, const EGLint* attribs) = nullptr;
  EGLBoolean (*MakeCurrent)(EGLDisplay dpy, EGLSurface draw, EGLSurface read, EGLContext ctx) = nullptr;
  // EGL_EXT_device_enumeration / EGL_EXT_device_query / EGL_EXT_platform_base
  EGLBoolean (*QueryDevicesEXT)(EGLint max, EGLDeviceEXT* devices, EGLint* n) = nullptr;
  const char* (*QueryDeviceStringEXT)(EGLDeviceEXT device, EGLint name) = nullptr;
  EGLBoolean (*QueryDeviceAttribEXT)(EGLDeviceEXT device, EGLint attribute, EGLAttrib* value) = nullptr;
  EGLDisplay (*GetPlatformDisplayEXT)(EGLenum platform, void* native_display, const EGLint* attribs) = nullptr;
};

// ---- GL, declared by hand ------------------------------------------------------------------------

constexpr unsigned GL_TEXTURE_2D = 0x0DE1;
constexpr unsigned GL_RGB = 0x1907;
constexpr int GL_RGB8 = 0x8051;
constexpr unsigned GL_UNSIGNED_BYTE = 0x1401;
constexpr unsigned GL_PACK_ALIGNMENT = 0x0D05;
constexpr unsigned GL_UNPACK_ALIGNMENT = 0x0CF5;
constexpr unsigned GL_TEXTURE_MIN_FILTER = 0x2801;
constexpr unsigned GL_TEXTURE_MAG_FILTER = 0x2800;
constexpr int GL_NEAREST = 0x2600;
constexpr unsigned GL_VENDOR = 0x1F00;
constexpr unsigned GL_RENDERER = 0x1F01;
constexpr unsigned GL_VERSION = 0x1F02;

struct Gl {
  const unsigned char* (*GetString)(unsigned name) = nullptr;
  unsigned (*GetError)() = nullptr;
  void (*GenTextures)(int n, unsigned* textures) = nullptr;
  void (*DeleteTextures)(int n, const unsigned* textures) = nullptr;
  void (*BindTexture)(unsigned target, unsigned texture) = nullptr;
  void (*TexImage2D)(unsigned target, int level, int internal_format, int width, int height, int border,
                     unsigned format, unsigned type, const void* pixels) = nullptr;
  void (*TexParameteri)(unsigned target, unsigned pname, int param) = nullptr;
  void (*GetTexImage)(unsigned target, int level, unsigned format, unsigned type, void* pixels) = nullptr;
  void (*PixelStorei)(unsigned pname, int param) = nullptr;
  void (*TexSubImage2D)(unsigned target, int level, int x, int y, int width, int height, unsigned format,
                        unsigned type, const void* pixels) = nullptr;
  void (*Finish)() = nullptr;
};

bool has_extension(const char* list, const char* name) {
  if (!list) return false;
  const size_t n = std::strlen(name);
  for (const char* p = list; (p = std::strstr(p, name)) != nullptr; p += n)
    if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return true;
  return false;
}

std::string hex(long v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%04lX", v);
  return b;
}

// The headless context, made current once on the test thread and kept for the whole run.
struct Context {
  bool ready = false;
  bool skip = true;     // not ready: skip (environment) rather than fail (broken interop)
  std::string problem;  // why not ready
  Egl egl;
  Gl gl;
  vmla::ui::GlFunctions interop_gl;
  void* libgl = nullptr;
  EGLDisplay display = EGL_NO_DISPLAY;
  std::string how;  // "EGL device 0 (CUDA device 0, /dev/dri/card1), pbuffer"
  std::string renderer, vendor, version, egl_vendor;

  void* resolve(const char* name) {
    void* p = egl.GetProcAddress(name);
    if (!p) {
      if (!libgl) libgl = dlopen("libOpenGL.so.0", RTLD_NOW | RTLD_GLOBAL);
      if (!libgl) libgl = dlopen("libGL.so.1", RTLD_NOW | RTLD_GLOBAL);
      if (libgl) p = dlsym(libgl, name);
    }
    return p;
  }

  std::string egl_failure(const char* call) { return std::string(call) + " failed, eglGetError " + hex(egl.GetError()); }

  // Empty when the EGL library and its core entry points are there.
  std::string load_egl() {
    egl.lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!egl.lib) return std::string("dlopen(\"libEGL.so.1\") failed: ") + dlerror();
    std::string missing;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(egl.lib, name));
      if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
    };
    sym(egl.GetProcAddress, "eglGetProcAddress");
    sym(egl.GetError, "eglGetError");
    sym(egl.GetDisplay, "eglGetDisplay");
    sym(egl.Initialize, "eglInitialize");
    sym(egl.QueryString, "eglQueryString");
    sym(egl.BindAPI, "eglBindAPI");
    sym(egl.ChooseConfig, "eglChooseConfig");
    sym(egl.CreateContext, "eglCreateContext");
    sym(egl.CreatePbufferSurface, "eglCreatePbufferSurface");
    sym(egl.MakeCurrent, "eglMakeCurrent");
    if (!missing.empty()) return "libEGL.so.1 lacks " + missing;
    return {};
  }

  // An initialised display on the EGL device of CUDA device `cuda_device` when the device platform
  // is there, else the default display. Empty string on success.
  std::string open_display(int cuda_device) {
    const char* client = egl.QueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);  // null without client extensions
    if (!client) egl.GetError();
    std::printf("[gl-interop] EGL client extensions: %s\n", client ? client : "(none)");
    if (has_extension(client, "EGL_EXT_platform_device") &&
        (has_extension(client, "EGL_EXT_device_enumeration") || has_extension(client, "EGL_EXT_device_base"))) {
      auto proc = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(egl.GetProcAddress(name));
      };
      proc(egl.QueryDevicesEXT, "eglQueryDevicesEXT");
      proc(egl.QueryDeviceStringEXT, "eglQueryDeviceStringEXT");
      proc(egl.QueryDeviceAttribEXT, "eglQueryDeviceAttribEXT");
      proc(egl.GetPlatformDisplayEXT, "eglGetPlatformDisplayEXT");
    }
    if (egl.QueryDevicesEXT && egl.GetPlatformDisplayEXT) {
      EGLDeviceEXT devices[16] = {};
      EGLint n = 0;
      if (!egl.QueryDevicesEXT(16, devices, &n)) {
        std::printf("[gl-interop] %s\n", egl_failure("eglQueryDevicesEXT").c_str());
        n = 0;
      }
      std::printf("[gl-interop] eglQueryDevicesEXT: %d device(s)\n", n);
      // The device whose CUDA ordinal matches first (EGL_NV_device_cuda), then the others in order.
      std::vector<int> order;
      for (int i = 0; i < n; ++i) {
        const char* ext = egl.QueryDeviceStringEXT ? egl.QueryDeviceStringEXT(devices[i], EGL_EXTENSIONS) : nullptr;
        EGLAttrib cuda = -1;
        if (has_extension(ext, "EGL_NV_device_cuda") && egl.QueryDeviceAttribEXT &&
            !egl.QueryDeviceAttribEXT(devices[i], EGL_CUDA_DEVICE_NV, &cuda)) {
          egl.GetError();
          cuda = -1;
        }
        const char* drm = has_extension(ext, "EGL_EXT_device_drm") && egl.QueryDeviceStringEXT
                              ? egl.QueryDeviceStringEXT(devices[i], EGL_DRM_DEVICE_FILE_EXT)
                              : nullptr;
        std::printf("[gl-interop]   EGL device %d: CUDA device %ld, DRM %s, extensions: %s\n", i, long(cuda),
                    drm ? drm : "-", ext ? ext : "(none)");
        if (cuda == cuda_device) order.insert(order.begin(), i);
        else order.push_back(i);
      }
      for (int i : order) {
        EGLDisplay d = egl.GetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, devices[i], nullptr);
        if (d == EGL_NO_DISPLAY) {
          std::printf("[gl-interop]   EGL device %d: %s\n", i, egl_failure("eglGetPlatformDisplayEXT").c_str());
          continue;
        }
        EGLint major = 0, minor = 0;
        if (!egl.Initialize(d, &major, &minor)) {
          std::printf("[gl-interop]   EGL device %d: %s\n", i, egl_failure("eglInitialize").c_str());
          continue;
        }
        display = d;
        how = "EGL device " + std::to_string(i) + " of " + std::to_string(n) + " (EGL " + std::to_string(major) +
              "." + std::to_string(minor) + ")";
        return {};
      }
    }
    EGLDisplay d = egl.GetDisplay(nullptr);  // EGL_DEFAULT_DISPLAY
    if (d == EGL_NO_DISPLAY) return egl_failure("eglGetDisplay(EGL_DEFAULT_DISPLAY)") + " (and no usable EGL device)";
    EGLint major = 0, minor = 0;
    if (!egl.Initialize(d, &major, &minor))
      return egl_failure("eglInitialize(default display)") + " (and no usable EGL device)";
    display = d;
    how = "EGL default display (EGL " + std::to_string(major) + "." + std::to_string(minor) + ")";
    return {};
  }

  // Desktop OpenGL context, current on this thread: a 1x1 pbuffer, or surfaceless. Empty on success.
  std::string make_current() {
    if (!egl.BindAPI(EGL_OPENGL_API)) return egl_failure("eglBindAPI(EGL_OPENGL_API)");
    const EGLint config_attribs[] = {EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT,
                                     EGL_RED_SIZE,     8,               EGL_GREEN_SIZE,      8,
                                     EGL_BLUE_SIZE,    8,               EGL_NONE};
    EGLConfig config = nullptr;
    EGLint n = 0;
    if (!egl.ChooseConfig(display, config_attribs, &config, 1, &n) || n < 1) {
      egl.GetError();
      // Surfaceless contexts need no pbuffer-capable config.
      const EGLint any_gl[] = {EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_NONE};
      if (!egl.ChooseConfig(display, any_gl, &config, 1, &n) || n < 1)
        return egl_failure("eglChooseConfig (pbuffer or any OpenGL config)") + ", configs found " + std::to_string(n);
    }
    const EGLint context_attribs[] = {EGL_NONE};
    EGLContext ctx = egl.CreateContext(display, config, EGL_NO_CONTEXT, context_attribs);
    if (ctx == EGL_NO_CONTEXT) return egl_failure("eglCreateContext (desktop OpenGL)");
    const EGLint pbuffer_attribs[] = {EGL_WIDTH, 1, EGL_HEIGHT, 1, EGL_NONE};
    EGLSurface surface = egl.CreatePbufferSurface(display, config, pbuffer_attribs);
    if (surface != EGL_NO_SURFACE && egl.MakeCurrent(display, surface, surface, ctx)) {
      how += ", 1x1 pbuffer";
      return {};
    }
    const std::string pbuffer_failure =
        egl_failure(surface == EGL_NO_SURFACE ? "eglCreatePbufferSurface(1x1)" : "eglMakeCurrent(pbuffer)");
    if (!has_extension(egl.QueryString(display, EGL_EXTENSIONS), "EGL_KHR_surfaceless_context"))
      return pbuffer_failure + "; no EGL_KHR_surfaceless_context to fall back to";
    if (!egl.MakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, ctx))
      return pbuffer_failure + "; " + egl_failure("eglMakeCurrent(surfaceless)");
    how += ", surfaceless";
    return {};
  }

  std::string load_gl() {
    std::string missing;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(resolve(name));
      if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
    };
    get(gl.GetString, "glGetString");
    get(gl.GetError, "glGetError");
    get(gl.GenTextures, "glGenTextures");
    get(gl.DeleteTextures, "glDeleteTextures");
    get(gl.BindTexture, "glBindTexture");
    get(gl.TexImage2D, "glTexImage2D");
    get(gl.TexParameteri, "glTexParameteri");
    get(gl.GetTexImage, "glGetTexImage");
    get(gl.PixelStorei, "glPixelStorei");
    get(gl.TexSubImage2D, "glTexSubImage2D");
    get(gl.Finish, "glFinish");
    const std::string missing_interop = interop_gl.load([this](const char* name) { return resolve(name); });
    if (!missing_interop.empty()) missing += (missing.empty() ? "" : ", ") + missing_interop;
    if (!missing.empty()) return "eglGetProcAddress/dlsym found no " + missing;
    return {};
  }

  void open() {
    if (cuda_device_count() <= 0) {
      problem = "no CUDA device";
      return;
    }
    int device = 0;
    cudaGetDevice(&device);
    if (!(problem = load_egl()).empty()) return;
    if (!(problem = open_display(device)).empty()) {
      problem = "no EGL display: " + problem +
                " (on the GPU machines: unpack .gl/*.deb and set __EGL_VENDOR_LIBRARY_FILENAMES, see tools/device/gl_check.sh)";
      return;
    }
    const char* v = egl.QueryString(display, EGL_VENDOR);
    const char* ver = egl.QueryString(display, EGL_VERSION);
    egl_vendor = std::string(v ? v : "?") + " " + (ver ? ver : "?");
    if (!(problem = make_current()).empty()) {
      problem = "no current OpenGL context on " + how + ": " + problem;
      return;
    }
    skip = false;  // from here on, a failure is the interop's or the driver's, not the environment's
    if (!(problem = load_gl()).empty()) return;
    auto str = [&](unsigned name) {
      const unsigned char* s = gl.GetString(name);
      return s ? std::string(reinterpret_cast<const char*>(s)) : std::string("(null, glGetError ") + hex(gl.GetError()) + ")";
    };
    renderer = str(GL_RENDERER);
    vendor = str(GL_VENDOR);
    version = str(GL_VERSION);
    std::printf("[gl-interop] %s; EGL vendor %s\n", how.c_str(), egl_vendor.c_str());
    std::printf("[gl-interop] GL_RENDERER: %s | GL_VENDOR: %s | GL_VERSION: %s\n", renderer.c_str(), vendor.c_str(),
                version.c_str());
    if (vendor.find("NVIDIA") == std::string::npos) {
      // Mesa (llvmpipe) and other vendors: no CUDA interop is possible; not this test's business.
      skip = true;
      problem = "the EGL context is not NVIDIA's (GL_VENDOR " + vendor + ", GL_RENDERER " + renderer +
                "): set __EGL_VENDOR_LIBRARY_FILENAMES to NVIDIA's 10_nvidia.json";
      return;
    }
    ready = true;
  }
};

Context& context() {
  static Context* c = [] {
    auto* c = new Context;  // kept to the end of the process: the GL context must outlive every test
    c->open();
    if (!c->ready) std::printf("[gl-interop] not ready (%s): %s\n", c->skip ? "skip" : "FAIL", c->problem.c_str());
    return c;
  }();
  return *c;
}

#define REQUIRE_CONTEXT()                                                  \
  Context& ctx = context();                                                \
  do {                                                                     \
    if (!ctx.ready && ctx.skip) GTEST_SKIP() << ctx.problem;               \
    ASSERT_TRUE(ctx.ready) << ctx.problem;                                 \
  } while (0)

std::vector<uint8_t> pattern(int width, int height, uint32_t seed) {
  std::vector<uint8_t> v(size_t(width) * height * 3);
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t x = (uint32_t(i) + seed * 0x9E3779B9u) * 2654435761u;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    v[i] = uint8_t(x >> 24);
  }
  return v;
}

// Empty when GL reported no error, else "<what>: glGetError 0x0502".
std::string gl_check(Gl& gl, const std::string& what) {
  const unsigned e = gl.GetError();
  if (e == 0) return {};
  for (int i = 0; i < 16 && gl.GetError() != 0; ++i) {
  }
  return what + ": " + vmla::ui::gl_error_name(e);
}

std::string cuda_check(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return {};
  cudaGetLastError();
  return what + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
}

// An RGB8 texture of width x height with undefined contents; 0 with `why` on a GL error.
unsigned make_texture(Gl& gl, int width, int height, std::string* why) {
  unsigned tex = 0;
  gl.GenTextures(1, &tex);
  gl.BindTexture(GL_TEXTURE_2D, tex);
  gl.TexImage2D(GL_TEXTURE_2D, 0, GL_RGB8, width, height, 0, GL_RGB, GL_UNSIGNED_BYTE, nullptr);
  gl.TexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
  gl.TexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
  *why = gl_check(gl, "glGenTextures/glTexImage2D(GL_RGB8, " + std::to_string(width) + "x" + std::to_string(height) + ")");
  if (!why->empty()) {
    gl.DeleteTextures(1, &tex);
    return 0;
  }
  return tex;
}

// Empty when the texture holds exactly `want`, else where it first differs and how often.
std::string read_back_and_compare(Gl& gl, unsigned tex, int width, int height, const uint8_t* want) {
  std::vector<uint8_t> got(size_t(width) * height * 3 + 64, 0xA5);  // the tail catches an over-long write
  gl.BindTexture(GL_TEXTURE_2D, tex);
  gl.PixelStorei(GL_PACK_ALIGNMENT, 1);
  gl.GetTexImage(GL_TEXTURE_2D, 0, GL_RGB, GL_UNSIGNED_BYTE, got.data());
  std::string why = gl_check(gl, "glGetTexImage(GL_RGB, GL_UNSIGNED_BYTE)");
  if (!why.empty()) return why;
  const size_t n = size_t(width) * height * 3;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i)
    if (got[i] != want[i] && bad++ == 0) first = i;
  for (size_t i = n; i < got.size(); ++i)
    if (got[i] != 0xA5) return "glGetTexImage wrote past " + std::to_string(n) + " bytes (GL_PACK_ALIGNMENT ignored?)";
  if (bad == 0) return {};
  const size_t px = first / 3;
  return std::to_string(bad) + " of " + std::to_string(n) + " bytes differ; first at x=" + std::to_string(px % width) +
         " y=" + std::to_string(px / width) + " channel " + std::to_string(first % 3) + ": read " +
         std::to_string(got[first]) + ", uploaded " + std::to_string(want[first]);
}

// Uploads `src` (host or device) through `up` into a fresh texture and compares with `want` (host).
std::string upload_and_check(Context& ctx, GlInteropUpload& up, int width, int height, const uint8_t* src,
                             const uint8_t* want) {
  std::string why;
  unsigned tex = make_texture(ctx.gl, width, height, &why);
  if (!tex) return why;
  if (!up.upload(tex, width, height, src)) why = "GlInteropUpload::upload failed: " + up.error();
  else if (up.last_path() != GlInteropUpload::Path::Interop)
    why = "the frame went by host upload, not interop: " + up.fallback_reason();
  else why = read_back_and_compare(ctx.gl, tex, width, height, want);
  ctx.gl.DeleteTextures(1, &tex);
  return why;
}

struct Size {
  int w, h;
};
// 130x77: rows of 390 bytes, not a multiple of 4, so a wrong GL_(UN)PACK_ALIGNMENT shows.
constexpr Size kSizes[] = {{128, 128}, {130, 77}, {1, 1}, {128, 128}};

}  // namespace

TEST(GlInterop, ContextIsOnTheCudaDevice) {
  REQUIRE_CONTEXT();
  int device = -1;
  cudaGetDevice(&device);
  std::vector<int> devices;
  std::string why;
  ASSERT_TRUE(vmla::ui::gl_context_cuda_devices(&devices, &why)) << why;
  std::string list;
  for (int d : devices) list += (list.empty() ? "" : ",") + std::to_string(d);
  std::printf("[gl-interop] cudaGLGetDevices: CUDA device(s) %s for the EGL context; this thread's CUDA device %d\n",
              list.c_str(), device);
  EXPECT_NE(std::find(devices.begin(), devices.end(), device), devices.end())
      << "the GL context is not on this thread's CUDA device " << device;
  ASSERT_TRUE(vmla::ui::gl_interop_available(ctx.interop_gl, &why)) << why;
  std::printf("[gl-interop] context: OK (renderer %s, interop registration probe passed)\n", ctx.renderer.c_str());
}

TEST(GlInterop, HostUploadIsExact) {
  REQUIRE_CONTEXT();
  GlInteropUpload up(ctx.interop_gl);
  uint32_t seed = 1;
  for (const Size s : kSizes) {
    const auto rgb = pattern(s.w, s.h, seed++);
    const std::string why = upload_and_check(ctx, up, s.w, s.h, rgb.data(), rgb.data());
    std::printf("[gl-interop] host memory -> interop %dx%d: %s\n", s.w, s.h, why.empty() ? "exact" : why.c_str());
    EXPECT_TRUE(why.empty()) << s.w << "x" << s.h << ": " << why;
  }
  up.release();
  EXPECT_TRUE(up.error().empty()) << up.error();
}

TEST(GlInterop, DeviceUploadIsExact) {
  REQUIRE_CONTEXT();
  GlInteropUpload up(ctx.interop_gl);
  uint32_t seed = 100;
  for (const Size s : kSizes) {
    const auto rgb = pattern(s.w, s.h, seed++);
    void* dev = nullptr;
    std::string why = cuda_check(cudaMalloc(&dev, rgb.size()), "cudaMalloc");
    if (why.empty()) why = cuda_check(cudaMemcpy(dev, rgb.data(), rgb.size(), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    if (why.empty()) why = upload_and_check(ctx, up, s.w, s.h, static_cast<const uint8_t*>(dev), rgb.data());
    if (dev) cudaFree(dev);
    std::printf("[gl-interop] device memory -> interop %dx%d: %s\n", s.w, s.h, why.empty() ? "exact" : why.c_str());
    EXPECT_TRUE(why.empty()) << s.w << "x" << s.h << ": " << why;
  }
  up.release();
  EXPECT_TRUE(up.error().empty()) << up.error();
}

namespace {
// The engine frame of EngineFrameIsExact, reused by the timing.
std::vector<uint8_t> g_engine_frame;
int g_engine_w = 0, g_engine_h = 0;
}  // namespace

TEST(GlInterop, EngineFrameIsExact) {
  REQUIRE_CONTEXT();
  ModelConfig cfg = ModelConfig::from_file(std::string(VMLA_SOURCE_DIR) + "/resources/configs/tiny.json");
  std::vector<std::string> vocab;
  if (cfg.text_encoder.present)
    vocab = load_vocabulary_file(std::string(VMLA_SOURCE_DIR) + "/resources/vocab/tiny-words.txt");
  std::shared_ptr<Backend> gpu = create_backend("cuda");
  auto model = Model::random(cfg, vocab, 42, gpu);
  SessionOptions so;
  so.keep_snapshots = false;
  Session session(model, so);
  GlInteropUpload up(ctx.interop_gl);
  std::vector<std::string> results;
  int batches = 0;
  SessionCallbacks cb;
  // The upload happens inside the callback, where device_rgb is valid: exactly what the preview gets.
  cb.on_frames = [&](const FrameBatch& b) {
    ++batches;
    if (!b.device_rgb) {
      results.push_back("FrameBatch::device_rgb is null on the CUDA backend");
      return;
    }
    cudaPointerAttributes attr{};
    const std::string attr_why = cuda_check(cudaPointerGetAttributes(&attr, b.device_rgb), "cudaPointerGetAttributes(device_rgb)");
    if (!attr_why.empty() || attr.type != cudaMemoryTypeDevice) {
      results.push_back(!attr_why.empty() ? attr_why : "device_rgb is not device memory (type " + std::to_string(int(attr.type)) + ")");
      return;
    }
    const size_t frame_bytes = size_t(b.width) * b.height * 3;
    for (int f : {0, b.count - 1}) {
      const auto* dev = static_cast<const uint8_t*>(b.device_rgb) + size_t(f) * frame_bytes;
      const uint8_t* host = b.rgb + size_t(f) * frame_bytes;
      const std::string why = upload_and_check(ctx, up, b.width, b.height, dev, host);
      std::printf("[gl-interop] engine chunk %d frame %d of %d (%dx%d, FrameBatch::device_rgb) -> interop: %s\n", b.chunk,
                  f, b.count, b.width, b.height, why.empty() ? "exact" : why.c_str());
      if (!why.empty()) results.push_back("frame " + std::to_string(f) + ": " + why);
    }
    g_engine_frame.assign(b.rgb, b.rgb + frame_bytes);
    g_engine_w = b.width;
    g_engine_h = b.height;
  };
  session.extend(ChunkSpec{"a red ball bouncing on the beach at sunset", 7, false}, cb);
  up.release();
  ASSERT_EQ(batches, 1) << "the engine delivered no frames";
  for (const auto& r : results) ADD_FAILURE() << r;
  EXPECT_TRUE(up.error().empty()) << up.error();
}

TEST(GlInterop, UploadTiming) {
  REQUIRE_CONTEXT();
  constexpr int kIters = 300;
  struct Case {
    std::string what;
    int w, h;
    std::vector<uint8_t> rgb;
  };
  std::vector<Case> cases;
  if (!g_engine_frame.empty()) cases.push_back({"engine frame", g_engine_w, g_engine_h, g_engine_frame});
  else cases.push_back({"pattern", 128, 128, pattern(128, 128, 5)});
  cases.push_back({"pattern", 832, 480, pattern(832, 480, 6)});
  cases.push_back({"pattern", 1280, 720, pattern(1280, 720, 7)});
  Gl& gl = ctx.gl;
  for (const Case& c : cases) {
    std::string why;
    const unsigned tex = make_texture(gl, c.w, c.h, &why);
    ASSERT_NE(tex, 0u) << why;
    void* dev = nullptr;
    ASSERT_EQ(cudaMalloc(&dev, c.rgb.size()), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dev, c.rgb.data(), c.rgb.size(), cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<uint8_t> staging(c.rgb.size());
    GlInteropUpload up(ctx.interop_gl);
    bool ok = true;
    // Mean time per frame: upload, then glFinish, as the preview's paint does once per frame.
    auto time_ms = [&](auto&& upload_once) {
      upload_once();
      gl.Finish();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < kIters; ++i) {
        upload_once();
        gl.Finish();
      }
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / kIters;
    };
    auto host_upload = [&](const uint8_t* src) {
      gl.BindTexture(GL_TEXTURE_2D, tex);
      gl.PixelStorei(GL_UNPACK_ALIGNMENT, 1);
      gl.TexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, c.w, c.h, GL_RGB, GL_UNSIGNED_BYTE, src);
    };
    const double interop_dev = time_ms([&] { ok = up.upload(tex, c.w, c.h, static_cast<const uint8_t*>(dev)) && ok; });
    const double interop_host = time_ms([&] { ok = up.upload(tex, c.w, c.h, c.rgb.data()) && ok; });
    const double host = time_ms([&] { host_upload(c.rgb.data()); });
    const double download_host = time_ms([&] {
      ok = cudaMemcpy(staging.data(), dev, staging.size(), cudaMemcpyDeviceToHost) == cudaSuccess && ok;
      host_upload(staging.data());
    });
    why = gl_check(gl, "timed uploads");
    EXPECT_TRUE(ok && why.empty()) << why << " " << up.error();
    EXPECT_EQ(up.last_path(), GlInteropUpload::Path::Interop) << up.fallback_reason();
    std::printf("[gl-interop] timing %s %dx%d, ms per frame (mean of %d, glFinish each): interop from device %.3f | "
                "interop from host %.3f | host glTexSubImage2D %.3f | cudaMemcpy D2H + host glTexSubImage2D %.3f\n",
                c.what.c_str(), c.w, c.h, kIters, interop_dev, interop_host, host, download_host);
    up.release();
    cudaFree(dev);
    gl.DeleteTextures(1, &tex);
  }
}

#else  // no CUDA in this build

TEST(GlInterop, NeedsCuda) { GTEST_SKIP() << "this build has no CUDA backend (nvcc not found at configure time)"; }

#endif
