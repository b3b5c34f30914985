// restnet-switch PACKAGE ID|all[,ID|all...] [--no-weight-cache] [--int8] [--image FILE]
// Loads and first-runs the listed variants in order, in this one process, and prints one JSON
// object: per step, what loading took (the file when it was new, the method), the first run, the
// process's RSS and peak RSS after it, and the logits. What benchmarks/firmware_switch.py times:
// the first step is a load from cold, a later one a switch with the earlier ones held; a load
// time is only honest in a fresh process, so a benchmark runs one process per measurement.
// Exit codes as restnet-run's: 0 ok, 1 a bad package or variant, 2 bad usage, 3 an unreadable image.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "restnet/package.hpp"

namespace {

int usage(const std::string& why) {
  std::cerr << "restnet-switch: " << why << "\n"
            << "usage: restnet-switch PACKAGE ID|all[,ID|all...] [--no-weight-cache] [--int8] [--image FILE]\n";
  return 2;
}

// VmRSS and VmHWM (the peak) of this process, in MiB: what the kernel counts, file-backed pages
// of the mmapped programs included.
std::pair<double, double> rss_mb() {
  std::ifstream f("/proc/self/status");
  double rss = -1, hwm = -1;
  for (std::string line; std::getline(f, line);) {
    std::istringstream s(line);
    std::string key;
    double kb = 0;
    s >> key >> kb;
    if (key == "VmRSS:") rss = kb / 1024;
    if (key == "VmHWM:") hwm = kb / 1024;
  }
  return {rss, hwm};
}

// A fixed input when no image is given: every member sees the same numbers, so the logits of one
// variant from a separate file and from a bundle can be compared.
std::vector<float> pattern(size_t n) {
  std::vector<float> x(n);
  uint32_t state = 12345;
  for (float& v : x) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) * 4.f - 2.f;
  }
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  restnet::quiet_executorch_log();
  const auto [rss0, hwm0] = rss_mb();
  std::vector<std::string> pos;
  std::string dtype = "fp32", image;
  bool weight_cache = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-weight-cache") weight_cache = false;
    else if (a == "--int8") dtype = "int8";
    else if (a == "--image") {
      if (i + 1 >= argc) return usage("--image needs a value");
      image = argv[++i];
    } else if (a == "-h" || a == "--help") return usage("load and switch variants, timed"), 0;
    else if (a.size() > 1 && a[0] == '-') return usage("unknown option " + a);
    else pos.push_back(a);
  }
  if (pos.size() != 2) return usage("needs a package folder and a comma-separated list of variant ids (or all)");
  try {
    restnet::Package pkg(pos[0], dtype, weight_cache);
    // "all" stands for every variant in restnet::Package::preload's order (the largest first).
    std::vector<std::string> ids, every = pkg.largest_first();
    std::stringstream list(pos[1]);
    for (std::string id; std::getline(list, id, ',');) {
      if (id == "all") ids.insert(ids.end(), every.begin(), every.end());
      else ids.push_back(pkg.variant(id).id);  // refuses an unknown id before anything is loaded
    }
    restnet::Image rgb;
    if (!image.empty()) {
      try {
        rgb = restnet::load_rgb(image);
      } catch (const restnet::ImageError& e) {
        std::cerr << "restnet-switch: " << e.what() << "\n";
        return 3;
      }
    }
    const auto [rss_open, hwm_open] = rss_mb();  // after verifying every file (sha256 reads them all)
    nlohmann::json steps = nlohmann::json::array();
    for (const std::string& id : ids) {
      const restnet::Variant& v = pkg.variant(id);
      const restnet::FileEntry& f = pkg.file_for(v);
      const std::string layout = f.input_layout.empty() ? v.input.layout : f.input_layout;
      std::vector<float> x = image.empty() ? pattern(3ull * v.input.height * v.input.width)
                                           : restnet::preprocess(rgb, v.input, layout);
      restnet::Loaded l = pkg.load(id);
      auto t0 = std::chrono::steady_clock::now();
      std::vector<float> logits = pkg.run(id, x);
      double run_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const auto [rss, hwm] = rss_mb();
      steps.push_back({{"variant", id}, {"file", f.path}, {"method", f.method.empty() ? "forward" : f.method},
                       {"new_file", l.new_file}, {"new_method", l.new_method}, {"file_ms", l.file_ms},
                       {"method_ms", l.method_ms}, {"first_run_ms", run_ms},
                       {"switch_ms", l.file_ms + l.method_ms + run_ms}, {"rss_mb", rss}, {"hwm_mb", hwm},
                       {"logits", logits}});
    }
    const auto [rss_end, hwm_end] = rss_mb();
    nlohmann::json out = {{"package", pos[0]},
                          {"dtype", dtype},
                          {"weight_cache", weight_cache},
                          {"weight_cache_supported", restnet::xnnpack_weight_cache_supported()},
                          {"files_loaded", pkg.loads()},
                          {"rss_start_mb", rss0},
                          {"rss_verified_mb", rss_open},
                          {"hwm_verified_mb", hwm_open},
                          {"rss_end_mb", rss_end},
                          {"hwm_end_mb", hwm_end},
                          {"steps", steps}};
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "restnet-switch: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
