// A restnet package on a device: open and verify it as toolkit/package.py does, pick a
// variant by budget as toolkit/switcher.py does, and run its ExecuTorch programs.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "restnet/image.hpp"

namespace executorch::extension::module {
class Module;
}

namespace restnet {

// A package that must not be loaded (malformed, tampered, unknown version) or a request it
// cannot serve (unknown variant); the message says which file or field.
struct PackageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kManifestMajor = 1;  // the manifest major this code reads (docs/package-format.md)

struct FileEntry {
  std::string path, sha256, format, dtype, method, input_layout;
  long long size = 0;
  std::optional<double> accuracy;
};

struct Variant {
  std::string id;
  double accuracy = 0, latency_ms = 0, peak_ram_mb = 0;
  long long params = 0;
  std::vector<FileEntry> files;
  InputSpec input;
};

// What loading a variant took: its file (only when no variant held it yet) and its method.
struct Loaded {
  bool new_file = false, new_method = false;
  double file_ms = 0, method_ms = 0;
};

class Package {
 public:
  // Reads manifest.json, then checks every listed file (inside the package, size, sha256)
  // before anything is loaded; `dtype` ("fp32" or "int8") chooses which .pte each variant runs.
  // `weight_cache`: XNNPACK packs each weight once per process and every method that names the
  // same constant reuses it, so the members of a shared bundle pack the anchors' blocks once
  // (ExecuTorch's wheel builds it in but leaves it off; see docs/firmware.md#switching).
  explicit Package(const std::string& root, const std::string& dtype = "fp32", bool weight_cache = true);
  ~Package();

  const std::vector<Variant>& variants() const { return variants_; }
  const Variant& variant(const std::string& id) const;  // PackageError if unknown
  const std::vector<std::string>& labels() const { return labels_; }
  std::optional<double> latency_target_ms() const { return latency_target_ms_; }
  const std::string& root() const { return root_; }

  const FileEntry& file_for(const Variant& v) const;  // the .pte of this package's dtype
  double accuracy(const Variant& v) const;            // that file's own, else the variant's
  double latency(const Variant& v) const;             // this device's table, else the manifest

  // The variant's file and method, loaded and held: the file on first use (every method of a
  // shared bundle from one load), the method too. A no-op for a variant already held.
  Loaded load(const std::string& id);
  // Every variant loaded, the most parameters first; returns that order. A process's peak RSS is
  // what it holds plus the transient of the load in progress (the weights being packed), so the
  // largest member is loaded while the process holds least (peak_ram_mb cannot order them: in a
  // shared bundle every member carries the bundle's figure).
  std::vector<std::string> preload();
  std::vector<std::string> largest_first() const;  // the variant ids in preload's order
  // The variant's logits for one preprocessed input (loading it first if needed).
  std::vector<float> run(const std::string& id, const std::vector<float>& input);
  std::vector<float> classify(const std::string& id, const Image& rgb);
  int loads() const { return loads_; }
  bool weight_cache() const { return weight_cache_; }

 private:
  std::string root_, dtype_;
  bool weight_cache_ = true;
  std::vector<Variant> variants_;
  std::vector<std::string> labels_;
  std::optional<double> latency_target_ms_;
  std::map<std::string, double> table_ms_;  // member key -> p50 measured on this device
  std::map<std::string, std::unique_ptr<executorch::extension::module::Module>> modules_;
  int loads_ = 0;
};

// The most accurate variant within the budgets (ties: the faster); if none fits, the fastest.
// No value means no limit. As toolkit.switcher.Switcher.set_budget.
struct Choice {
  std::string id;
  bool within_budget = true;
};
Choice choose(const Package& pkg, std::optional<double> latency_ms, std::optional<double> ram_mb);

// Whether this process's XNNPACK delegate knows the weight-cache option (it answers get_option
// for it); false means `weight_cache` asks for something the runtime silently ignores.
bool xnnpack_weight_cache_supported();

// ExecuTorch logs its CPU probing at Info level on every load; a CLI whose errors are one line
// keeps only its warnings and errors (unless RESTNET_RUN_VERBOSE is set: then everything).
// Call once, before the first load.
void quiet_executorch_log();

// "path" when it is a plain relative path that stays inside `root`, else PackageError.
std::string safe_path(const std::string& root, const std::string& name);
std::string sha256_file(const std::string& path);

}  // namespace restnet
