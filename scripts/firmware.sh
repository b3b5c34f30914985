#!/usr/bin/env bash
# Build the C++ runner (firmware/: librestnet_firmware.a, restnet-run) against the ExecuTorch
# that .venv already has (its wheel ships libexecutorch.so, headers and a CMake package; nothing
# of ExecuTorch is built here). Installs what it needs first: Debian's compilers and libraries
# when apt-get is available, CMake >= 3.28 and Ninja from PyPI into .venv (pinned in
# requirements/constraints.txt). Output: build/firmware/restnet-run. Idempotent; a rebuild only
# compiles what changed. RESTNET_FIRMWARE_BUILD overrides the build folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
LOG="$root/.setup.log"
quiet() { "$@" >>"$LOG" 2>&1 || { echo "[firmware] ERROR: '$*' failed; last lines of $LOG:" >&2; tail -n 30 "$LOG" >&2; exit 1; }; }

[ -x .venv/bin/python ] || bash scripts/setup.sh

# 1. C++ toolchain and libraries: libjpeg-turbo (JPEG as Pillow decodes it), stb_image (PNG),
#    nlohmann-json (manifest), OpenSSL (sha256).
debs=(g++ libturbojpeg0-dev libstb-dev nlohmann-json3-dev libssl-dev)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "[firmware] ERROR: missing ${missing[*]} and no apt-get: install them" >&2; exit 1; }
  sudo=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  echo "[firmware] installing Debian packages: ${missing[*]} (log: $LOG)"
  quiet $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive quiet $sudo apt-get install -y -qq "${missing[@]}"
fi

# 2. CMake and Ninja: ExecuTorch's imported targets need CMake >= 3.28 (Debian 12 has 3.25).
if ! .venv/bin/python -c "import cmake, ninja" 2>/dev/null; then
  echo "[firmware] installing cmake and ninja into .venv (log: $LOG)"
  quiet .venv/bin/python -m pip install --disable-pip-version-check -c requirements/constraints.txt cmake ninja
fi

# 3. Configure and build.
et=$(.venv/bin/python -c "import importlib.util; print(importlib.util.find_spec('executorch').submodule_search_locations[0])")
build=${RESTNET_FIRMWARE_BUILD:-$root/build/firmware}
echo "[firmware] building firmware/ against $et into $build"
quiet .venv/bin/cmake -S firmware -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_MAKE_PROGRAM="$root/.venv/bin/ninja" -Dexecutorch_DIR="$et/share/cmake"
quiet .venv/bin/cmake --build "$build"
echo "[firmware] done: $build/restnet-run"
