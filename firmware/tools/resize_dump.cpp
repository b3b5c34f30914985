// resize-dump IMAGE WIDTH HEIGHT INTERPOLATION: the decoded, resized RGB pixels as raw bytes on
// stdout. Tests compare them with Pillow's (Image.resize) to the grey level.
#include <cstdio>
#include <iostream>

#include "restnet/image.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: resize-dump IMAGE WIDTH HEIGHT nearest|bilinear|bicubic\n";
    return 2;
  }
  try {
    restnet::Image im = restnet::resize_like_pillow(restnet::load_rgb(argv[1]), std::stoi(argv[2]),
                                                    std::stoi(argv[3]), argv[4]);
    std::fwrite(im.pixels.data(), 1, im.pixels.size(), stdout);
  } catch (const std::exception& e) {
    std::cerr << "resize-dump: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
