// restnet-run PACKAGE IMAGE... [--variant ID] [--budget-ms X] [--ram-mb X] [--int8] [--top K]
//             [--bench N] [--json] [--no-weight-cache]
// Classifies image files with a verified package. Exit codes: 0 ok, 1 a bad package or
// request (tampered, unknown variant or version), 2 bad usage, 3 an unreadable image.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <nlohmann/json.hpp>

#include "restnet/package.hpp"

namespace {

int usage(const std::string& why) {
  std::cerr << "restnet-run: " << why << "\n"
            << "usage: restnet-run PACKAGE IMAGE... [--variant ID] [--budget-ms X] [--ram-mb X] [--int8] "
               "[--top K] [--bench N] [--json] [--no-weight-cache]\n";
  return 2;
}

double number(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = -1;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(v) || v < 0) throw std::invalid_argument(flag + " takes a number >= 0, got '" + text + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  restnet::quiet_executorch_log();
  std::vector<std::string> pos;
  std::string variant, dtype = "fp32";
  std::optional<double> budget, ram;
  bool as_json = false, weight_cache = true;
  int bench = 0, top = 3;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--variant") variant = value();
      else if (a == "--budget-ms") budget = number(a, value());
      else if (a == "--ram-mb") ram = number(a, value());
      else if (a == "--bench") bench = static_cast<int>(number(a, value()));
      else if (a == "--top") top = std::max(1, static_cast<int>(number(a, value())));
      else if (a == "--int8") dtype = "int8";
      else if (a == "--json") as_json = true;
      else if (a == "--no-weight-cache") weight_cache = false;
      else if (a == "-h" || a == "--help") return usage("classify images with a restnet package"), 0;
      else if (a.size() > 1 && a[0] == '-') throw std::invalid_argument("unknown option " + a);
      else pos.push_back(a);
    }
  } catch (const std::exception& e) {
    return usage(e.what());
  }
  if (pos.size() < 2) return usage("needs a package folder and at least one image");
  try {
    restnet::Package pkg(pos[0], dtype, weight_cache);
    std::string active = variant;
    bool within = true;
    if (active.empty()) {
      // As the toolkit's Switcher: the profile's latency target unless a budget is given.
      auto c = restnet::choose(pkg, budget ? budget : pkg.latency_target_ms(), ram);
      active = c.id;
      within = c.within_budget;
    } else {
      pkg.variant(active);  // refuses an unknown id before any image is read
    }
    if (!within) std::cerr << "restnet-run: warning: no variant meets the budget; using the fastest, " << active << "\n";
    for (size_t i = 1; i < pos.size(); ++i) {
      restnet::Image rgb;
      try {
        rgb = restnet::load_rgb(pos[i]);
      } catch (const restnet::ImageError& e) {
        std::cerr << "restnet-run: " << e.what() << "\n";
        return 3;
      }
      std::vector<float> logits = pkg.classify(active, rgb);
      std::vector<double> times;
      if (bench > 0) {
        const restnet::Variant& v = pkg.variant(active);
        const restnet::FileEntry& f = pkg.file_for(v);
        auto x = restnet::preprocess(rgb, v.input, f.input_layout.empty() ? v.input.layout : f.input_layout);
        for (int r = 0; r < bench; ++r) {
          auto t0 = std::chrono::steady_clock::now();
          pkg.run(active, x);
          times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(times.begin(), times.end());
      }
      std::vector<size_t> order(logits.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
      const auto& labels = pkg.labels();
      auto label = [&](size_t k) { return k < labels.size() ? labels[k] : std::to_string(k); };
      if (as_json) {
        nlohmann::json o = {{"image", pos[i]}, {"variant", active}, {"top1", order[0]},
                            {"label", label(order[0])}, {"logits", logits}};
        if (!times.empty()) o["p50_ms"] = times[times.size() / 2];
        std::cout << o.dump() << "\n";
      } else {
        float mx = *std::max_element(logits.begin(), logits.end());
        double z = 0;
        for (float l : logits) z += std::exp(l - mx);
        std::cout << pos[i] << " (" << active << ")";
        for (int k = 0; k < top && k < static_cast<int>(order.size()); ++k) {
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.3f", std::exp(logits[order[k]] - mx) / z);
          std::cout << (k ? ", " : ": ") << label(order[k]) << " " << buf;
        }
        if (!times.empty()) std::cout << "; p50 " << times[times.size() / 2] << " ms over " << bench << " runs";
        std::cout << "\n";
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "restnet-run: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
