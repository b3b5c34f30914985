#!/usr/bin/env bash
# Set up (idempotent) and run the main job.
#
# `restnet-pack --profile rpi4` (device profiles, export, packages) does not
# exist yet (see README, "Status"). Until it does, this runs the furthest
# stage that works end to end: the ReStNet method on the default pair with
# real weights and real data (adapt both anchors to Fashion-MNIST, CKA,
# Algorithm 1 for three budgets between the anchors, Algorithm 2 training,
# evaluation table). Every stage is cached: a second run takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/restnet anchors
.venv/bin/restnet evaluate "$@"
