// Pillow's uint8 resize (Image.resize with NEAREST, BILINEAR or BICUBIC), ported from
// Pillow's libImaging/Resample.c and Geometry.c so that a device resizes to the very grey
// levels restnet and the toolkit do (manifest input.resize.output == "uint8").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace restnet {

// An interleaved uint8 image, rows of width * channels bytes.
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
};

// `in` resized to width x height with Pillow's algorithm for `interpolation`
// ("nearest", "bilinear" or "bicubic"; antialiased when shrinking, as Pillow always is).
// Throws std::invalid_argument for another name.
Image resize_like_pillow(const Image& in, int width, int height, const std::string& interpolation);

}  // namespace restnet
