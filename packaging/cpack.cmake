# Installation of the studio's desktop integration and the Debian package (cpack -G DEB).
include_guard(GLOBAL)

install(FILES ${PROJECT_SOURCE_DIR}/packaging/videomla-studio.desktop DESTINATION share/applications)
install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/videomla-studio.svg
        DESTINATION share/icons/hicolor/scalable/apps)
install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/videomla-studio-256.png
        DESTINATION share/icons/hicolor/256x256/apps RENAME videomla-studio.png)
install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/videomla-studio-64.png
        DESTINATION share/icons/hicolor/64x64/apps RENAME videomla-studio.png)

set(CPACK_PACKAGE_NAME "videomla-studio")
set(CPACK_PACKAGE_VENDOR "VideoMLA Studio")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Live chunk-by-chunk video generation with a low-rank latent KV cache")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "VideoMLA Studio maintainers <maintainers@videomla.invalid>")
set(CPACK_PACKAGE_INSTALL_DIRECTORY "videomla")
set(CPACK_GENERATOR "DEB")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "video")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/videomla/videomla-studio")
# dpkg-shlibdeps derives the library dependencies (Qt 6, FFmpeg, OpenBLAS, GL) from the binaries.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Loaded at run time, so dpkg-shlibdeps cannot see them: the X11 platform plugin and an OpenGL driver.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "qt6-qpa-plugins, libgl1, libglx-mesa0 | libglx0")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libgl1-mesa-dri")
set(CPACK_STRIP_FILES ON)
include(CPack)
