#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow end-to-end tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
# Two phases: every test but those marked `quiet` on RESTNET_TEST_WORKERS pytest-xdist workers (default 2;
# one module per worker, so a module's fixtures are built once), then the `quiet` ones alone: they time the
# host against a quiet machine. RESTNET_TEST_WORKERS=1 runs everything in one process, in file order.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh || exit 1
workers=${RESTNET_TEST_WORKERS:-2}
pytest() { .venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=25 "$@"; }

if [ "$workers" -le 1 ]; then
  pytest "$@"
  code=$?
  [ "$code" -eq 5 ] && { echo "[test] pytest collected no tests: treating as a failure" >&2; exit 1; }
  exit "$code"
fi

echo "[test] 1/2: all tests but those marked quiet, on $workers workers (pytest-xdist, one module per worker)"
pytest -n "$workers" --dist loadfile --phase parallel "$@"
first=$?
echo "[test] 2/2: the tests marked quiet (they time the host), alone"
pytest --phase quiet "$@"
second=$?
if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then
  echo "[test] pytest collected no tests: treating as a failure" >&2
  exit 1
fi
for code in "$first" "$second"; do
  [ "$code" -ne 0 ] && [ "$code" -ne 5 ] && exit "$code"
done
exit 0
