#include "ui/video_view.h"

#include <QOpenGLBuffer>
#include <QOpenGLContext>
#include <QOpenGLFramebufferObject>
#include <QOpenGLFunctions>
#include <QOpenGLShaderProgram>
#include <QOpenGLWidget>
#include <QOpenGLWindow>
#include <QPainter>
#include <QVBoxLayout>

#include "ui/frame_uploader.h"

namespace vmla::ui {

// ---- the renderer (GL work shared by both hosts; called with the host's context current) ---------

class VideoRenderer : protected QOpenGLFunctions {
 public:
  QByteArray frame;
  int width = 0, height = 0;
  bool dirty = false;
  QString placeholder;
  VideoView::UploadPreference preference = VideoView::UploadPreference::Auto;
  QString upload_path, upload_note;
  std::function<void(const QString&)> on_upload_path;
  std::function<std::unique_ptr<FrameUploader>()> make_uploader;  // replaces the choice (tests)

  bool initialized() const { return program_ != nullptr; }

  void initialize() {
    initializeOpenGLFunctions();
    program_ = std::make_unique<QOpenGLShaderProgram>();
    program_->addShaderFromSourceCode(QOpenGLShader::Vertex,
                                      "attribute vec2 pos;\n"
                                      "attribute vec2 uv;\n"
                                      "varying vec2 v_uv;\n"
                                      "void main() { v_uv = uv; gl_Position = vec4(pos, 0.0, 1.0); }\n");
    program_->addShaderFromSourceCode(QOpenGLShader::Fragment,
                                      "#ifdef GL_ES\nprecision mediump float;\n#endif\n"
                                      "varying vec2 v_uv;\n"
                                      "uniform sampler2D tex;\n"
                                      "void main() { gl_FragColor = vec4(texture2D(tex, v_uv).rgb, 1.0); }\n");
    program_->bindAttributeLocation("pos", 0);
    program_->bindAttributeLocation("uv", 1);
    program_->link();
    // Frame row 0 is the top of the picture: the quad's top edge samples t = 0.
    static const float quad[] = {-1, -1, 0, 1, 1, -1, 1, 1, -1, 1, 0, 0, 1, 1, 1, 0};
    quad_ = std::make_unique<QOpenGLBuffer>(QOpenGLBuffer::VertexBuffer);
    quad_->create();
    quad_->bind();
    quad_->allocate(quad, sizeof quad);
    quad_->release();
    glGenTextures(1, &texture_);
    choose_uploader();
    dirty = true;
  }

  void release() {
    if (!initialized()) return;
    if (uploader_) uploader_->release(this);
    uploader_.reset();
    if (texture_) glDeleteTextures(1, &texture_);
    texture_ = 0;
    tex_w_ = tex_h_ = 0;
    quad_.reset();
    program_.reset();
  }

  void choose_uploader() {
    if (uploader_) uploader_->release(this);
    uploader_.reset();
    upload_note.clear();
    if (make_uploader) uploader_ = make_uploader();
    if (!uploader_ && preference != VideoView::UploadPreference::Host) {
      QString why;
      uploader_ = make_cuda_interop_uploader(this, &why);
      if (!uploader_) upload_note = why;
    }
    if (!uploader_) uploader_ = make_host_uploader();
    upload_path = uploader_->name();
    dirty = true;
    if (on_upload_path) on_upload_path(upload_path);
  }

  QRect video_rect(int W, int H) const {
    if (width <= 0 || height <= 0) return {};
    const int scale = std::min(W / width, H / height);
    int w, h;
    if (scale >= 1) {
      w = width * scale;
      h = height * scale;
    } else {
      const double s = std::min(double(W) / width, double(H) / height);
      w = std::max(1, int(width * s));
      h = std::max(1, int(height * s));
    }
    return {(W - w) / 2, (H - h) / 2, w, h};
  }

  // Draws into the bound framebuffer of W x H device pixels; false when there is no frame.
  bool paint(int W, int H) {
    glViewport(0, 0, W, H);
    glClearColor(0.06f, 0.06f, 0.07f, 1.f);
    glClear(GL_COLOR_BUFFER_BIT);
    if (frame.isEmpty() || !program_ || !program_->isLinked()) return false;
    if (tex_w_ != width || tex_h_ != height) {
      glBindTexture(GL_TEXTURE_2D, texture_);
      glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB8, width, height, 0, GL_RGB, GL_UNSIGNED_BYTE, nullptr);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
      glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
      tex_w_ = width;
      tex_h_ = height;
      dirty = true;
    }
    if (dirty) {
      uploader_->upload(this, texture_, width, height, reinterpret_cast<const uint8_t*>(frame.constData()));
      dirty = false;
      // An uploader may change its path while it runs (interop falling back to host upload for good).
      if (QString now = uploader_->name(); now != upload_path) {
        upload_path = std::move(now);
        if (on_upload_path) on_upload_path(upload_path);
      }
    }
    const QRect r = video_rect(W, H);
    const bool exact = r.width() % width == 0 && r.height() % height == 0;
    glBindTexture(GL_TEXTURE_2D, texture_);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, exact ? GL_NEAREST : GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, exact ? GL_NEAREST : GL_LINEAR);
    glViewport(r.x(), H - r.y() - r.height(), r.width(), r.height());  // GL origin: bottom left
    program_->bind();
    program_->setUniformValue("tex", 0);
    glActiveTexture(GL_TEXTURE0);
    quad_->bind();
    program_->enableAttributeArray(0);
    program_->enableAttributeArray(1);
    program_->setAttributeBuffer(0, GL_FLOAT, 0, 2, 4 * sizeof(float));
    program_->setAttributeBuffer(1, GL_FLOAT, 2 * sizeof(float), 2, 4 * sizeof(float));
    glDrawArrays(GL_TRIANGLE_STRIP, 0, 4);
    program_->disableAttributeArray(0);
    program_->disableAttributeArray(1);
    quad_->release();
    program_->release();
    glViewport(0, 0, W, H);
    return true;
  }

 private:
  unsigned texture_ = 0;
  int tex_w_ = 0, tex_h_ = 0;
  std::unique_ptr<QOpenGLShaderProgram> program_;
  std::unique_ptr<QOpenGLBuffer> quad_;
  std::unique_ptr<FrameUploader> uploader_;
};

namespace {

void paint_placeholder(QPaintDevice* device, const QRect& rect, const QString& text) {
  QPainter p(device);
  p.setPen(QColor(150, 152, 160));
  p.drawText(rect, Qt::AlignCenter | Qt::TextWordWrap, text);
}

class GLWidgetHost final : public QOpenGLWidget {
 public:
  GLWidgetHost(VideoRenderer* r, QWidget* parent) : QOpenGLWidget(parent), r_(r) {}
  ~GLWidgetHost() override {
    if (context()) {
      makeCurrent();
      r_->release();
      doneCurrent();
    }
  }

 protected:
  void initializeGL() override {
    connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
      makeCurrent();
      r_->release();
      doneCurrent();
    });
    r_->initialize();
  }
  void paintGL() override {
    const qreal dpr = devicePixelRatioF();
    if (!r_->paint(int(width() * dpr), int(height() * dpr))) paint_placeholder(this, rect(), r_->placeholder);
  }

 private:
  VideoRenderer* r_;
};

}  // namespace

class GLWindowHost final : public QOpenGLWindow {
 public:
  explicit GLWindowHost(VideoRenderer* r) : QOpenGLWindow(QOpenGLWindow::NoPartialUpdate), r_(r) {
    // Input goes to the VideoView underneath, so its shortcuts and clicks keep working.
    setFlags(flags() | Qt::WindowTransparentForInput | Qt::WindowDoesNotAcceptFocus);
  }
  ~GLWindowHost() override {
    if (isValid()) {
      makeCurrent();
      r_->release();
      doneCurrent();
    }
  }

  // Renders into an offscreen framebuffer of the window's size and reads it back.
  QImage grab() {
    if (!isValid()) return {};
    makeCurrent();
    const qreal dpr = devicePixelRatio();
    const QSize size(int(width() * dpr), int(height() * dpr));
    QOpenGLFramebufferObject fbo(size);
    fbo.bind();
    r_->paint(size.width(), size.height());
    QImage img = fbo.toImage();
    fbo.release();
    doneCurrent();
    return img;
  }

 protected:
  void initializeGL() override { r_->initialize(); }
  void paintGL() override {
    const qreal dpr = devicePixelRatio();
    if (!r_->paint(int(width() * dpr), int(height() * dpr)))
      paint_placeholder(this, QRect(0, 0, width(), height()), r_->placeholder);
  }

 private:
  VideoRenderer* r_;
};

// ---- VideoView ----------------------------------------------------------------------------------

VideoView::Host VideoView::default_host() {
  return qEnvironmentVariable("VMLA_PREVIEW_HOST") == QLatin1String("widget") ? Host::Widget : Host::Window;
}

VideoView::VideoView(QWidget* parent, Host host) : QWidget(parent), host_(host), renderer_(std::make_unique<VideoRenderer>()) {
  setMinimumSize(160, 120);
  renderer_->placeholder = tr("No video yet: type a prompt and press Generate");
  renderer_->on_upload_path = [this](const QString& p) { emit uploadPathChanged(p); };
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  if (host_ == Host::Widget) {
    widget_host_ = new GLWidgetHost(renderer_.get(), this);
  } else {
    window_ = new GLWindowHost(renderer_.get());
    widget_host_ = QWidget::createWindowContainer(window_, this);
    widget_host_->setFocusPolicy(Qt::NoFocus);
  }
  widget_host_->setObjectName("previewGL");
  layout->addWidget(widget_host_);
}

VideoView::~VideoView() {
  // The hosts release the renderer's GL objects; they must go before the renderer.
  delete widget_host_;
  widget_host_ = nullptr;
}

void VideoView::request_update() {
  if (window_) window_->update();
  else if (widget_host_) widget_host_->update();
}

void VideoView::setFrame(const uint8_t* rgb, int width, int height) {
  if (!rgb || width <= 0 || height <= 0) return clearFrame();
  renderer_->frame = QByteArray(reinterpret_cast<const char*>(rgb), qsizetype(width) * height * 3);
  renderer_->width = width;
  renderer_->height = height;
  renderer_->dirty = true;
  request_update();
}

void VideoView::clearFrame() {
  renderer_->frame.clear();
  renderer_->width = renderer_->height = 0;
  request_update();
}

bool VideoView::hasFrame() const { return !renderer_->frame.isEmpty(); }

void VideoView::setPlaceholder(const QString& text) {
  renderer_->placeholder = text;
  request_update();
}

void VideoView::setUploadPreference(UploadPreference p) {
  if (p == renderer_->preference) return;
  renderer_->preference = p;
  rechoose_uploader();
}

void VideoView::setUploaderFactory(std::function<std::unique_ptr<FrameUploader>()> factory) {
  renderer_->make_uploader = std::move(factory);
  rechoose_uploader();
}

void VideoView::rechoose_uploader() {
  if (!renderer_->initialized()) return;  // takes effect when GL starts
  if (window_) {
    window_->makeCurrent();
    renderer_->choose_uploader();
    window_->doneCurrent();
  } else {
    auto* w = static_cast<QOpenGLWidget*>(widget_host_);
    w->makeCurrent();
    renderer_->choose_uploader();
    w->doneCurrent();
  }
  request_update();
}

QString VideoView::uploadPath() const { return renderer_->upload_path; }
QString VideoView::uploadNote() const { return renderer_->upload_note; }

QImage VideoView::grabFramebuffer() {
  if (window_) return window_->grab();
  return static_cast<QOpenGLWidget*>(widget_host_)->grabFramebuffer();
}

QRect VideoView::videoRect() const {
  const qreal dpr = widget_host_->devicePixelRatioF();
  return renderer_->video_rect(int(widget_host_->width() * dpr), int(widget_host_->height() * dpr));
}

}  // namespace vmla::ui
