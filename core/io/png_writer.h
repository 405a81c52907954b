#pragma once
// PNG still images through FFmpeg's PNG codec.
#include <cstdint>
#include <string>
#include <vector>

namespace vmla::io {

// Writes an 8-bit RGB PNG (tagged sRGB). Goes through "<path>.partial" and a rename, so <path> is
// either the old file or the complete new one. vmla::IoError on failure (naming the path).
void write_png(const std::string& path, int width, int height, const uint8_t* rgb);

// Reads any PNG FFmpeg decodes (grey, palette, RGBA, 16-bit) as row-major RGB8; alpha is dropped.
// vmla::IoError if the file cannot be read, vmla::FormatError if it is not a decodable PNG.
std::vector<uint8_t> read_png_rgb(const std::string& path, int* width, int* height);

}  // namespace vmla::io
