#include "restnet/image.hpp"

#include <turbojpeg.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#include <stb/stb_image.h>

namespace restnet {
namespace {

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImageError(path + ": cannot open (" + std::strerror(errno) + ")");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void check_size(const std::string& path, int w, int h) {
  if (w <= 0 || h <= 0 || w > kMaxSide || h > kMaxSide)
    throw ImageError(path + ": " + std::to_string(w) + "x" + std::to_string(h) +
                     " px is not 1.." + std::to_string(kMaxSide) + " px a side");
}

Image decode_jpeg(const std::string& path, const std::vector<unsigned char>& data) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitDecompress(), tjDestroy);
  int w = 0, h = 0, sub = 0, cs = 0;
  if (tjDecompressHeader3(tj.get(), data.data(), data.size(), &w, &h, &sub, &cs) != 0)
    throw ImageError(path + ": not a readable image (JPEG header: " + tjGetErrorStr2(tj.get()) + ")");
  check_size(path, w, h);
  if (cs == TJCS_CMYK || cs == TJCS_YCCK)
    throw ImageError(path + ": CMYK JPEG is not supported (convert it to RGB)");
  Image im;
  im.width = w;
  im.height = h;
  im.channels = 3;
  im.pixels.resize(static_cast<size_t>(w) * h * 3);
  // Flags 0: accurate integer IDCT and fancy upsampling, libjpeg's defaults, which Pillow keeps.
  // A truncated file is an error here, where Pillow would also refuse it.
  if (tjDecompress2(tj.get(), data.data(), data.size(), im.pixels.data(), w, 0, h, TJPF_RGB,
                    TJFLAG_STOPONWARNING) != 0)
    throw ImageError(path + ": not a readable image (JPEG: " + tjGetErrorStr2(tj.get()) + ")");
  return im;
}

Image decode_png(const std::string& path, const std::vector<unsigned char>& data) {
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(data.data(), static_cast<int>(data.size()), &w, &h, &n))
    throw ImageError(path + ": not a readable image (" + stbi_failure_reason() + ")");
  check_size(path, w, h);
  Image im;
  im.width = w;
  im.height = h;
  im.channels = 3;
  im.pixels.resize(static_cast<size_t>(w) * h * 3);
  if (stbi_is_16_bit_from_memory(data.data(), static_cast<int>(data.size()))) {
    std::unique_ptr<stbi_us, void (*)(void*)> px(
        stbi_load_16_from_memory(data.data(), static_cast<int>(data.size()), &w, &h, &n, 3), stbi_image_free);
    if (!px) throw ImageError(path + ": not a readable image (" + stbi_failure_reason() + ")");
    for (size_t i = 0; i < im.pixels.size(); ++i)
      im.pixels[i] = static_cast<uint8_t>(std::nearbyint(px.get()[i] / 257.0));
  } else {
    std::unique_ptr<stbi_uc, void (*)(void*)> px(
        stbi_load_from_memory(data.data(), static_cast<int>(data.size()), &w, &h, &n, 3), stbi_image_free);
    if (!px) throw ImageError(path + ": not a readable image (" + stbi_failure_reason() + ")");
    std::memcpy(im.pixels.data(), px.get(), im.pixels.size());
  }
  return im;
}

}  // namespace

Image load_rgb(const std::string& path) {
  std::vector<unsigned char> data = read_all(path);
  if (data.size() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(path, data);
  if (data.size() >= 8 && std::memcmp(data.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(path, data);
  throw ImageError(path + ": not a readable image (neither JPEG nor PNG)");
}

std::vector<float> preprocess(const Image& rgb, const InputSpec& spec, const std::string& layout) {
  if (spec.resize_output != "uint8")
    throw std::invalid_argument("input.resize.output '" + spec.resize_output +
                                "' is not supported (re-pack with restnet >= manifest 1.4, uint8 resize)");
  Image im = resize_like_pillow(rgb, spec.width, spec.height, spec.interpolation);
  const size_t hw = static_cast<size_t>(spec.height) * spec.width;
  std::vector<float> x(3 * hw);
  const bool nhwc = layout == "NHWC";
  for (size_t p = 0; p < hw; ++p)
    for (int c = 0; c < 3; ++c) {
      // float32 throughout, operation by operation, as numpy computes it in the toolkit.
      float v = static_cast<float>(im.pixels[p * 3 + c]) * spec.scale;
      v = (v - spec.mean[c]) / spec.std[c];
      x[nhwc ? p * 3 + c : c * hw + p] = v;
    }
  return x;
}

}  // namespace restnet
