// The OpenGL preview under Xvfb (Mesa llvmpipe): the framebuffer holds the frame's exact pixels, in
// both hosts (QOpenGLWindow in a container, QOpenGLWidget), through the host upload path and, where
// CUDA and a CUDA-capable GL context exist, the interop path.
#include <QScreen>
#include <QSignalSpy>
#include <QTest>
#include <random>

#include "fake_uploader.h"
#include "ui/video_view.h"

using namespace vmla::ui;

namespace {

std::vector<uint8_t> pattern(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(size_t(w) * h * 3);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Every frame pixel appears at the centre of its block of `img`, the frame being drawn at `r`.
bool shows_exactly(const QImage& image, const QRect& r, const std::vector<uint8_t>& rgb, int w, int h, QString* why) {
  const QImage img = image.convertToFormat(QImage::Format_RGB888);
  if (r.width() % w || r.height() % h) {
    *why = QString("not drawn at an integer scale: %1x%2").arg(r.width()).arg(r.height());
    return false;
  }
  const int s = r.width() / w;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint8_t* want = &rgb[(size_t(y) * w + x) * 3];
      const uchar* got = img.constScanLine(r.y() + y * s + s / 2) + (r.x() + x * s + s / 2) * 3;
      if (got[0] != want[0] || got[1] != want[1] || got[2] != want[2]) {
        *why = QString("pixel (%1, %2): got %3 %4 %5, want %6 %7 %8")
                   .arg(x).arg(y).arg(got[0]).arg(got[1]).arg(got[2]).arg(want[0]).arg(want[1]).arg(want[2]);
        return false;
      }
    }
  return true;
}

// The preview's framebuffer, and what the X server shows on screen.
bool shows_exactly(VideoView& gl, const std::vector<uint8_t>& rgb, int w, int h, QString* why) {
  if (!shows_exactly(gl.grabFramebuffer(), gl.videoRect(), rgb, w, h, why)) return false;
  QTest::qWait(100);  // the next paint reaches the screen
  const QImage screen = gl.screen()->grabWindow(gl.winId()).toImage();
  if (!shows_exactly(screen, gl.videoRect(), rgb, w, h, why)) {
    *why = "on screen: " + *why;
    return false;
  }
  return true;
}

}  // namespace

class TestPreviewGl : public QObject {
  Q_OBJECT

 private slots:
  void hostUploadIsPixelExact_data() {
    QTest::addColumn<int>("host");
    QTest::addColumn<int>("w");
    QTest::addColumn<int>("h");
    QTest::addColumn<QSize>("widget");
    for (auto [host, name] : {std::pair{VideoView::Host::Window, "window"}, std::pair{VideoView::Host::Widget, "widget"}}) {
      QTest::addRow("%s: 128x128 at 1x", name) << int(host) << 128 << 128 << QSize(130, 140);
      QTest::addRow("%s: 128x128 at 3x", name) << int(host) << 128 << 128 << QSize(400, 420);
      QTest::addRow("%s: odd 37x23 at 5x (row alignment)", name) << int(host) << 37 << 23 << QSize(200, 130);
    }
  }

  void hostUploadIsPixelExact() {
    QFETCH(int, host);
    QFETCH(int, w);
    QFETCH(int, h);
    QFETCH(QSize, widget);
    VideoView gl(nullptr, VideoView::Host(host));
    gl.setUploadPreference(VideoView::UploadPreference::Host);
    gl.resize(widget);
    gl.show();
    QVERIFY(QTest::qWaitForWindowExposed(&gl));
    QTRY_VERIFY(gl.uploadPath().contains("host upload"));
    for (unsigned seed = 1; seed <= 2; ++seed) {  // a second frame replaces the first
      const auto rgb = pattern(w, h, seed);
      gl.setFrame(rgb.data(), w, h);
      QString why;
      QVERIFY2(shows_exactly(gl, rgb, w, h, &why), qPrintable(why));
    }
  }

  void placeholderWithoutFrame() {
    for (auto host : {VideoView::Host::Window, VideoView::Host::Widget}) {
      VideoView gl(nullptr, host);
      gl.resize(300, 200);
      gl.show();
      QVERIFY(QTest::qWaitForWindowExposed(&gl));
      QVERIFY(!gl.hasFrame());
      QTRY_VERIFY(!gl.uploadPath().isEmpty());
      const QImage img = gl.grabFramebuffer();
      QCOMPARE(img.size(), QSize(300, 200) * gl.devicePixelRatio());
    }
  }

  void uploadPathFollowsAFallbackAtRunTime() {
    for (auto host : {VideoView::Host::Window, VideoView::Host::Widget}) {
      auto failed = std::make_shared<bool>(false);
      VideoView gl(nullptr, host);
      gl.setUploaderFactory([failed] { return std::make_unique<test::FallingBackUploader>(failed); });
      QSignalSpy changed(&gl, &VideoView::uploadPathChanged);
      gl.resize(300, 300);
      gl.show();
      QVERIFY(QTest::qWaitForWindowExposed(&gl));
      QTRY_COMPARE(gl.uploadPath(), QString("CUDA-OpenGL interop (fake)"));
      const auto rgb = pattern(64, 64, 3);
      gl.setFrame(rgb.data(), 64, 64);
      QString why;
      QVERIFY2(shows_exactly(gl, rgb, 64, 64, &why), qPrintable(why));
      const qsizetype before = changed.count();
      QCOMPARE(gl.uploadPath(), QString("CUDA-OpenGL interop (fake)"));  // no change without a fallback

      *failed = true;  // the next upload falls back for good
      const auto rgb2 = pattern(64, 64, 4);
      gl.setFrame(rgb2.data(), 64, 64);
      QTRY_VERIFY(gl.uploadPath().contains("after CUDA-OpenGL interop failed: fake error"));
      QCOMPARE(changed.count(), before + 1);
      QCOMPARE(changed.last().at(0).toString(), gl.uploadPath());
      QVERIFY2(shows_exactly(gl, rgb2, 64, 64, &why), qPrintable(why));
      QCOMPARE(changed.count(), before + 1);  // later uploads with the same name emit nothing

      gl.setUploaderFactory({});  // back to choosing by preference
      QTRY_VERIFY(!gl.uploadPath().contains("fake"));
    }
  }

  void cudaInteropIsPixelExact() {
    VideoView gl;
    gl.setUploadPreference(VideoView::UploadPreference::CudaInterop);
    gl.resize(300, 300);
    gl.show();
    QVERIFY(QTest::qWaitForWindowExposed(&gl));
    QTRY_VERIFY(!gl.uploadPath().isEmpty());  // GL is up and the uploader chosen
    if (!gl.uploadPath().contains("CUDA"))
      QSKIP(qPrintable("CUDA-OpenGL interop not available here: " + gl.uploadNote()));
    const auto rgb = pattern(128, 128, 7);
    gl.setFrame(rgb.data(), 128, 128);
    QString why;
    QVERIFY2(shows_exactly(gl, rgb, 128, 128, &why), qPrintable(why));
  }
};

QTEST_MAIN(TestPreviewGl)
#include "test_preview_gl.moc"
