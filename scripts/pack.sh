#!/usr/bin/env bash
# Set up (idempotent) and run the main job: a device package for the
# Raspberry Pi 4 profile from real pretrained weights and real data
# (adapt both anchors to the bundled CIFAR-10, CKA, Algorithm 1, Algorithm 2,
# evaluation, verified .pte export, manifest) in artifacts/rpi4/.
# Extra arguments go to restnet-pack (e.g. --profile pixel-7, --format onnx).
# Every stage is cached: a second run takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
if [ $# -eq 0 ]; then set -- --profile rpi4; fi
exec .venv/bin/restnet-pack "$@"
