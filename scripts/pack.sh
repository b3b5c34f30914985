#!/usr/bin/env bash
# Set up (idempotent) and run the main job for a device profile (default rpi4).
#
# `restnet-pack` does not exist yet (see README, "Status"): until it does,
# this runs the furthest stage that works end to end today, which loads the
# real pretrained anchors and the real data and lists what restnet can stitch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/restnet anchors
.venv/bin/restnet data
