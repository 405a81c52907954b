#include "ui/video_gl_widget.h"

#include <QOpenGLBuffer>
#include <QOpenGLShaderProgram>
#include <QPainter>

#include "ui/frame_uploader.h"

namespace vmla::ui {

VideoGLWidget::VideoGLWidget(QWidget* parent) : QOpenGLWidget(parent) {
  setMinimumSize(160, 120);
  setPlaceholder(tr("No video yet: type a prompt and press Generate"));
}

VideoGLWidget::~VideoGLWidget() {
  if (context()) {
    makeCurrent();
    cleanup();
    doneCurrent();
  }
}

void VideoGLWidget::cleanup() {
  if (uploader_) uploader_->release(this);
  uploader_.reset();
  if (texture_) glDeleteTextures(1, &texture_);
  texture_ = 0;
  tex_w_ = tex_h_ = 0;
  quad_.reset();
  program_.reset();
}

void VideoGLWidget::setPlaceholder(const QString& text) {
  placeholder_ = text;
  update();
}

void VideoGLWidget::setFrame(const uint8_t* rgb, int width, int height) {
  if (!rgb || width <= 0 || height <= 0) return clearFrame();
  frame_ = QByteArray(reinterpret_cast<const char*>(rgb), qsizetype(width) * height * 3);
  width_ = width;
  height_ = height;
  dirty_ = true;
  update();
}

void VideoGLWidget::clearFrame() {
  frame_.clear();
  width_ = height_ = 0;
  update();
}

void VideoGLWidget::setUploadPreference(UploadPreference p) {
  if (p == preference_) return;
  preference_ = p;
  if (context()) {
    makeCurrent();
    if (uploader_) uploader_->release(this);
    choose_uploader();
    doneCurrent();
    dirty_ = true;
    update();
  }
}

void VideoGLWidget::choose_uploader() {
  uploader_.reset();
  upload_note_.clear();
  if (preference_ != UploadPreference::Host) {
    QString why;
    uploader_ = make_cuda_interop_uploader(this, &why);
    if (!uploader_) upload_note_ = preference_ == UploadPreference::CudaInterop ? why : QString();
  }
  if (!uploader_) uploader_ = make_host_uploader();
  upload_path_ = uploader_->name();
  emit uploadPathChanged(upload_path_);
}

void VideoGLWidget::initializeGL() {
  initializeOpenGLFunctions();
  connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
    makeCurrent();
    cleanup();
    doneCurrent();
  });
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
  dirty_ = true;
}

void VideoGLWidget::resizeGL(int, int) {}

QRect VideoGLWidget::videoRect() const {
  if (width_ <= 0 || height_ <= 0) return {};
  const qreal dpr = devicePixelRatioF();
  const int W = int(width() * dpr), H = int(height() * dpr);
  const int scale = std::min(W / width_, H / height_);
  int w, h;
  if (scale >= 1) {
    w = width_ * scale;
    h = height_ * scale;
  } else {
    const double s = std::min(double(W) / width_, double(H) / height_);
    w = std::max(1, int(width_ * s));
    h = std::max(1, int(height_ * s));
  }
  return {(W - w) / 2, (H - h) / 2, w, h};
}

void VideoGLWidget::paintGL() {
  glClearColor(0.06f, 0.06f, 0.07f, 1.f);
  glClear(GL_COLOR_BUFFER_BIT);
  if (frame_.isEmpty() || !program_ || !program_->isLinked()) {
    QPainter p(this);
    p.setPen(QColor(150, 152, 160));
    p.drawText(rect(), Qt::AlignCenter | Qt::TextWordWrap, placeholder_);
    return;
  }
  if (tex_w_ != width_ || tex_h_ != height_) {
    glBindTexture(GL_TEXTURE_2D, texture_);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB8, width_, height_, 0, GL_RGB, GL_UNSIGNED_BYTE, nullptr);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    tex_w_ = width_;
    tex_h_ = height_;
    dirty_ = true;
  }
  if (dirty_) {
    uploader_->upload(this, texture_, width_, height_, reinterpret_cast<const uint8_t*>(frame_.constData()));
    dirty_ = false;
  }
  const QRect r = videoRect();
  const bool exact = r.width() % width_ == 0 && r.height() % height_ == 0;
  glBindTexture(GL_TEXTURE_2D, texture_);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, exact ? GL_NEAREST : GL_LINEAR);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, exact ? GL_NEAREST : GL_LINEAR);
  // Device pixels, GL origin bottom-left.
  const int H = int(height() * devicePixelRatioF());
  glViewport(r.x(), H - r.y() - r.height(), r.width(), r.height());
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
}

}  // namespace vmla::ui
