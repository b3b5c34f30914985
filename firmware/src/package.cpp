#include "restnet/package.hpp"

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/platform/platform.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <variant>

namespace fs = std::filesystem;
using nlohmann::json;

namespace restnet {
namespace {

json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw PackageError(path + ": cannot open");
  // A key twice in one object is refused, as the toolkit does: parsers disagree on which value wins,
  // so what was signed and what a firmware reads could differ. NaN/Infinity are not JSON and fail too.
  std::vector<std::set<std::string>> keys;
  std::string twice;
  json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) keys.emplace_back();
    if (event == json::parse_event_t::object_end) keys.pop_back();
    if (event == json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second && twice.empty())
      twice = parsed.get<std::string>();
    return true;
  };
  json j;
  try {
    j = json::parse(f, check);
  } catch (const json::exception& e) {
    throw PackageError(path + ": not valid JSON: " + e.what());
  }
  if (!twice.empty()) throw PackageError(path + ": not valid JSON: key '" + twice + "' appears twice in one object");
  return j;
}

// The XNNPACK delegate's backend id and option key, as ExecuTorch's
// backends/xnnpack/runtime/XNNPACKBackend.h spells them (the wheel ships no header for them).
constexpr char kXnnpackBackend[] = "XnnpackBackend";
constexpr char kWeightCacheKey[] = "weight_cache_enabled";

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string member_key(const FileEntry& f) { return f.method.empty() ? f.sha256 : f.sha256 + ":" + f.method; }

FileEntry read_file_entry(const json& j) {
  FileEntry f;
  f.path = j.at("path").get<std::string>();
  f.size = j.at("size").get<long long>();
  f.sha256 = j.at("sha256").get<std::string>();
  f.format = j.at("format").get<std::string>();
  f.dtype = j.value("dtype", "fp32");
  if (j.contains("method") && !j["method"].is_null()) f.method = j["method"].get<std::string>();
  if (j.contains("input_layout") && !j["input_layout"].is_null()) f.input_layout = j["input_layout"].get<std::string>();
  if (j.contains("accuracy") && !j["accuracy"].is_null()) f.accuracy = j["accuracy"].get<double>();
  return f;
}

InputSpec read_input(const json& j) {
  InputSpec s;
  const json& r = j.at("resize");
  s.height = r.at("size").at(0).get<int>();
  s.width = r.at("size").at(1).get<int>();
  s.interpolation = r.at("interpolation").get<std::string>();
  s.resize_output = r.value("output", "float32");
  s.layout = j.at("layout").get<std::string>();
  // Read as double and stored as float32, as numpy's np.float32(...) does in the toolkit.
  s.scale = static_cast<float>(j.at("scale").get<double>());
  for (int c = 0; c < 3; ++c) {
    s.mean[c] = static_cast<float>(j.at("mean").at(c).get<double>());
    s.std[c] = static_cast<float>(j.at("std").at(c).get<double>());
  }
  if (s.height <= 0 || s.width <= 0 || s.height > kMaxSide || s.width > kMaxSide)
    throw PackageError("input.resize.size must be 1.." + std::to_string(kMaxSide) + " px");
  if (s.layout != "NCHW" && s.layout != "NHWC") throw PackageError("input.layout '" + s.layout + "' is not NCHW or NHWC");
  return s;
}

void check_version(const json& m, const std::string& where) {
  static const std::regex re(R"((\d+)\.(\d+))");
  std::smatch g;
  std::string v = m.contains("schema_version") && m["schema_version"].is_string() ? m["schema_version"].get<std::string>() : "";
  if (!std::regex_match(v, g, re)) throw PackageError(where + ": field 'schema_version' is not MAJOR.MINOR");
  int major = std::stoi(g[1]);
  if (major != kManifestMajor)
    throw PackageError(where + ": schema_version '" + v + "' is not supported (this runner reads " +
                       std::to_string(kManifestMajor) + ".x): " +
                       (major > kManifestMajor ? "use a runner for that major" : "re-pack it with a current restnet"));
}

void check_file(const std::string& root, const FileEntry& f, const std::string& owner) {
  auto refuse = [&](const std::string& why) {
    throw PackageError(root + ": refusing to load: " + f.path + " (" + owner + ", " + f.format + "): " + why);
  };
  std::string full;
  try {
    full = safe_path(root, f.path);
  } catch (const PackageError& e) {
    refuse(e.what());
  }
  std::error_code ec;
  if (!fs::is_regular_file(full, ec)) refuse("missing");
  auto size = fs::file_size(full, ec);
  if (ec || static_cast<long long>(size) != f.size)
    refuse("size " + std::to_string(size) + " != manifest " + std::to_string(f.size));
  std::string digest = sha256_file(full);
  if (digest != f.sha256) refuse("sha256 " + digest.substr(0, 12) + "... != manifest " + f.sha256.substr(0, 12) + "...");
}

}  // namespace

std::string safe_path(const std::string& root, const std::string& name) {
  if (name.empty() || name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
    throw PackageError("file name '" + name + "' in the manifest is not a plain relative path");
  bool bad = name[0] == '/' || name[0] == '~';
  size_t start = 0;
  while (!bad && start <= name.size()) {
    size_t end = name.find('/', start);
    std::string part = name.substr(start, end == std::string::npos ? std::string::npos : end - start);
    bad = part.empty() || part == "..";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (bad) throw PackageError("file name '" + name + "' in the manifest points outside the package (absolute or '..')");
  std::error_code ec;
  fs::path r = fs::weakly_canonical(root, ec), full = fs::weakly_canonical(fs::path(root) / name, ec);
  auto rel = full.lexically_relative(r);
  if (rel.empty() || *rel.begin() == "..")  // a symlink that leads out
    throw PackageError("file name '" + name + "' in the manifest resolves outside the package (" + full.string() + ")");
  return full.string();
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (f.read(buf.data(), buf.size()) || f.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), f.gcount());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) out += {hex[md[i] >> 4], hex[md[i] & 15]};
  return out;
}

static void quiet_log(et_timestamp_t, et_pal_log_level_t level, const char* file, const char*, size_t line,
                      const char* message, size_t length) {
  if (level == kInfo || level == kDebug) return;
  std::fprintf(stderr, "executorch %c %s:%zu: %.*s\n", static_cast<char>(level), file, line,
               static_cast<int>(length), message);
}

void quiet_executorch_log() {
  if (!std::getenv("RESTNET_RUN_VERBOSE"))
    executorch::runtime::register_pal(executorch::runtime::PalImpl::create(quiet_log, __FILE__));
}

bool xnnpack_weight_cache_supported() {
  // A backend that knows the key overwrites the value with its bool; one that does not leaves the
  // int sentinel (get_option answers Ok either way).
  executorch::runtime::BackendOption o;
  std::snprintf(o.key, sizeof o.key, "%s", kWeightCacheKey);
  o.value = -1;
  executorch::runtime::Span<executorch::runtime::BackendOption> s(&o, 1);
  return executorch::runtime::get_option(kXnnpackBackend, s) == executorch::runtime::Error::Ok &&
         std::holds_alternative<bool>(o.value);
}

Package::Package(const std::string& root, const std::string& dtype, bool weight_cache)
    : root_(root), dtype_(dtype), weight_cache_(weight_cache) {
  const std::string where = (fs::path(root) / "manifest.json").string();
  if (!fs::is_regular_file(where)) throw PackageError(root + ": not a restnet package (no manifest.json)");
  json m = read_json(where);
  if (!m.is_object()) throw PackageError(where + ": expected a JSON object");
  check_version(m, where);
  try {
    InputSpec package_input = read_input(m.at("input"));
    for (const json& jv : m.at("variants")) {
      Variant v;
      v.id = jv.at("id").get<std::string>();
      v.accuracy = jv.at("accuracy").get<double>();
      v.latency_ms = jv.at("latency").back().at("ms").get<double>();
      v.peak_ram_mb = jv.at("peak_ram_mb").get<double>();
      v.params = jv.value("params", 0LL);
      for (const json& jf : jv.at("files")) v.files.push_back(read_file_entry(jf));
      v.input = jv.contains("input") && !jv["input"].is_null() ? read_input(jv["input"]) : package_input;
      for (const Variant& o : variants_)
        if (o.id == v.id) throw PackageError("variant ids are not unique (" + v.id + ")");
      variants_.push_back(std::move(v));
    }
    if (variants_.empty()) throw PackageError("no variants");
    const json& p = m.at("profile");
    if (p.contains("latency_target_ms") && !p["latency_target_ms"].is_null())
      latency_target_ms_ = p["latency_target_ms"].get<double>();
    // Every file is checked before one is loaded, the shared bundles and probes too.
    for (const Variant& v : variants_)
      for (const FileEntry& f : v.files) check_file(root, f, "variant " + v.id);
    for (const char* key : {"bundles", "probes"})
      if (m.contains(key) && m[key].is_array())
        for (const json& jf : m[key]) check_file(root, read_file_entry(jf), key);
    const json& task = m.at("task");
    std::ifstream lf(safe_path(root, task.at("labels_file").get<std::string>()));
    for (std::string line; std::getline(lf, line);) labels_.push_back(line);
    if (labels_ != task.at("classes").get<std::vector<std::string>>())  // labels.txt is not signed, classes are
      throw PackageError(root + ": " + task["labels_file"].get<std::string>() +
                         " does not match the manifest's task.classes: refusing labels that could name the wrong class");
  } catch (const json::exception& e) {
    throw PackageError(where + ": not a manifest this runner reads (" + e.what() + ")");
  }
  const fs::path table = fs::path(root) / "latency-table.json";
  if (fs::is_regular_file(table)) {
    json t = read_json(table.string());
    if (!t.value("emulated", false) && t.contains("variants") && t["variants"].is_object())
      for (auto& [key, entry] : t["variants"].items())
        if (entry.is_object() && entry.contains("p50_ms")) table_ms_[key] = entry["p50_ms"].get<double>();
  }
}

Package::~Package() = default;

const Variant& Package::variant(const std::string& id) const {
  for (const Variant& v : variants_)
    if (v.id == id) return v;
  std::string have;
  for (const Variant& v : variants_) have += (have.empty() ? "" : ", ") + v.id;
  throw PackageError("no variant '" + id + "' in " + root_ + "; have: " + have);
}

const FileEntry& Package::file_for(const Variant& v) const {
  for (const FileEntry& f : v.files)
    if (f.format == "pte" && f.dtype == dtype_) return f;
  throw PackageError("variant " + v.id + " has no " + dtype_ + " .pte file" +
                     (dtype_ == "int8" ? " (pack with --int8 to ship int8 files)" : ""));
}

double Package::accuracy(const Variant& v) const {
  const FileEntry& f = file_for(v);
  return f.accuracy ? *f.accuracy : v.accuracy;
}

double Package::latency(const Variant& v) const {
  auto it = table_ms_.find(member_key(file_for(v)));
  return it != table_ms_.end() ? it->second : v.latency_ms;
}

Loaded Package::load(const std::string& id) {
  using executorch::extension::module::Module;
  const Variant& v = variant(id);
  const FileEntry& f = file_for(v);
  const std::string method = f.method.empty() ? "forward" : f.method;
  Loaded done;
  auto& mod = modules_[f.path];
  if (!mod) {
    auto t0 = std::chrono::steady_clock::now();
    mod = std::make_unique<Module>(safe_path(root_, f.path), Module::LoadMode::Mmap);
    // Set per program, not process-wide, and always explicitly: the wheel's default is off, and a
    // runtime built with ENABLE_XNNPACK_WEIGHTS_CACHE would have it on.
    executorch::runtime::BackendOptions<1> xnnpack;
    xnnpack.set_option(kWeightCacheKey, weight_cache_);
    executorch::runtime::LoadBackendOptionsMap options;
    if (options.set_options(kXnnpackBackend, xnnpack.view()) != executorch::runtime::Error::Ok ||
        mod->load(options) != executorch::runtime::Error::Ok) {
      modules_.erase(f.path);
      throw PackageError(root_ + ": " + f.path + ": ExecuTorch could not load the program");
    }
    ++loads_;
    done.new_file = true;
    done.file_ms = ms_since(t0);
  }
  if (!mod->is_method_loaded(method)) {
    auto t0 = std::chrono::steady_clock::now();
    if (mod->load_method(method) != executorch::runtime::Error::Ok)
      throw PackageError(root_ + ": " + f.path + ": ExecuTorch could not load method '" + method + "'");
    done.new_method = true;
    done.method_ms = ms_since(t0);
  }
  return done;
}

std::vector<std::string> Package::largest_first() const {
  std::vector<const Variant*> order;
  for (const Variant& v : variants_) order.push_back(&v);
  std::stable_sort(order.begin(), order.end(), [](const Variant* a, const Variant* b) { return a->params > b->params; });
  std::vector<std::string> ids;
  for (const Variant* v : order) ids.push_back(v->id);
  return ids;
}

std::vector<std::string> Package::preload() {
  std::vector<std::string> ids = largest_first();
  for (const std::string& id : ids) load(id);
  return ids;
}

std::vector<float> Package::run(const std::string& id, const std::vector<float>& input) {
  load(id);
  const Variant& v = variant(id);
  const FileEntry& f = file_for(v);
  const std::string method = f.method.empty() ? "forward" : f.method;
  auto& mod = modules_.at(f.path);
  const std::string layout = f.input_layout.empty() ? v.input.layout : f.input_layout;
  std::vector<executorch::aten::SizesType> shape =
      layout == "NHWC" ? std::vector<executorch::aten::SizesType>{1, v.input.height, v.input.width, 3}
                       : std::vector<executorch::aten::SizesType>{1, 3, v.input.height, v.input.width};
  std::vector<float> x = input;  // the runtime takes a mutable pointer
  auto tensor = executorch::extension::from_blob(x.data(), shape, executorch::aten::ScalarType::Float);
  auto out = mod->execute(method, {executorch::runtime::EValue(tensor)});
  if (!out.ok() || out->empty() || !(*out)[0].isTensor())
    throw PackageError(root_ + ": " + f.path + ": running method '" + method + "' failed (ExecuTorch error " +
                       std::to_string(static_cast<int>(out.error())) + ")");
  const auto& t = (*out)[0].toTensor();
  const float* p = t.const_data_ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

std::vector<float> Package::classify(const std::string& id, const Image& rgb) {
  const Variant& v = variant(id);
  const FileEntry& f = file_for(v);
  return run(id, preprocess(rgb, v.input, f.input_layout.empty() ? v.input.layout : f.input_layout));
}

Choice choose(const Package& pkg, std::optional<double> latency_ms, std::optional<double> ram_mb) {
  const Variant* best = nullptr;
  for (const Variant& v : pkg.variants()) {
    bool ok = (!latency_ms || pkg.latency(v) <= *latency_ms) && (!ram_mb || v.peak_ram_mb <= *ram_mb);
    // max over (accuracy, -latency); the first of equals wins, as Python's max does
    if (ok && (!best || pkg.accuracy(v) > pkg.accuracy(*best) ||
               (pkg.accuracy(v) == pkg.accuracy(*best) && pkg.latency(v) < pkg.latency(*best))))
      best = &v;
  }
  if (best) return {best->id, true};
  for (const Variant& v : pkg.variants())  // min over latency; the first of equals wins
    if (!best || pkg.latency(v) < pkg.latency(*best)) best = &v;
  return {best->id, false};
}

}  // namespace restnet
