// Image files to the float input tensor a manifest's `input` block describes, computed as
// toolkit/preprocess.py does (its uint8 path, manifest >= 1.4).
#pragma once
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "restnet/resample.hpp"

namespace restnet {

// An image this code cannot take (unreadable, truncated, too large); the message names the file.
struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kMaxSide = 1 << 14;  // as toolkit.preprocess.MAX_SIDE: larger images are refused

// A JPEG (libjpeg-turbo, accurate integer IDCT and fancy upsampling, as Pillow decodes) or
// PNG (stb_image) file as 8-bit RGB: grey replicated, alpha dropped, 16-bit scaled as the
// toolkit does (round(v / 257)).
Image load_rgb(const std::string& path);

// The manifest's `input` block (of the package, or a variant's own).
struct InputSpec {
  int height = 0, width = 0;
  std::string interpolation, layout, resize_output;
  float scale = 1.f;
  std::array<float, 3> mean{}, std{};
};

// One RGB image -> the batch-of-one float32 tensor in `layout` ("NCHW" or "NHWC").
std::vector<float> preprocess(const Image& rgb, const InputSpec& spec, const std::string& layout);

}  // namespace restnet
