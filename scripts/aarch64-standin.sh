#!/usr/bin/env bash
# An aarch64 stand-in for an ARM board: a Debian trixie (Python 3.13) arm64 root
# filesystem with requirements/device.txt, run under QEMU user emulation.
#
#   bash scripts/aarch64-standin.sh build              build it once (cached; times in docs/results.md)
#   bash scripts/aarch64-standin.sh check PACKAGE      every member file vs the workstation's eager output
#   bash scripts/aarch64-standin.sh run [--package DIR] CMD...   any command inside (project at /restnet)
#   bash scripts/aarch64-standin.sh status             is it built, is emulation registered (exit 0 = ready)
#
# Needs root (or passwordless sudo): apt-get for mmdebstrap (qemu-user comes from the
# rootfs's Debian release, fetched with a private apt configuration), the binfmt_misc
# registration, and chroot. Timings measured in here are
# emulated: restnet-bench marks them so and restnet refuses them as device latency.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
STANDIN=${RESTNET_STANDIN:-${XDG_CACHE_HOME:-$HOME/.cache}/restnet/aarch64-standin}
SUITE=${RESTNET_STANDIN_SUITE:-trixie}   # Debian 13: Python 3.13 (executorch-numpy-runtime needs >= 3.12)
MIRROR=${RESTNET_STANDIN_MIRROR:-http://deb.debian.org/debian}
ROOTFS=$STANDIN/rootfs
LOG=$STANDIN/build.log
VENV=/opt/restnet-venv                   # inside the rootfs
RECIPE=1                                 # bump when the build steps below change
# QEMU from the rootfs's own Debian release (10.0 in trixie; static, runs on any x86_64 host): bookworm's
# qemu-user-static 7.2 dies with SIGSEGV as soon as LiteRT's XNNPACK delegate prepares a .tflite.
QEMU=$STANDIN/qemu-aarch64
BINFMT=/proc/sys/fs/binfmt_misc

say() { echo "[standin] $*" >&2; }
die() { echo "[standin] ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
    || die "needs root or passwordless sudo (apt-get, binfmt_misc, chroot)"
  SUDO="sudo -n"
fi

want_stamp() { { echo "recipe $RECIPE $SUITE"; cat "$root/requirements/device.txt"; } | sha256sum | cut -d' ' -f1; }
built() { [ -f "$ROOTFS/.restnet-standin-stamp" ] && [ "$(cat "$ROOTFS/.restnet-standin-stamp")" = "$(want_stamp)" ]; }

host_tools() {
  command -v mmdebstrap >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing mmdebstrap and no apt-get to install it"
  say "installing mmdebstrap (apt-get; log: $LOG)"
  { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q mmdebstrap; } >>"$LOG" 2>&1 \
    || die "apt-get install mmdebstrap failed; see $LOG"
}

# $SUITE's qemu-user for this host, through a private apt configuration (the system's sources stay as they are).
fetch_qemu() {
  [ -x "$QEMU" ] && return 0
  local d=$STANDIN/qemu-apt arch
  arch=$(dpkg --print-architecture)
  [ "$arch" = amd64 ] || [ "$arch" = arm64 ] || die "no QEMU fetch recipe for a $arch host"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  echo "deb [arch=$arch] $MIRROR $SUITE main" >"$d/sources.list"
  local o=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent
           -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o Debug::NoLocking=1)
  say "fetching qemu-user from Debian $SUITE (log: $LOG)"
  { apt-get "${o[@]}" update -q && (cd "$d" && rm -f qemu-user_*.deb && apt-get "${o[@]}" download qemu-user); } \
    >>"$LOG" 2>&1 || die "could not download qemu-user from $MIRROR $SUITE; see $LOG"
  rm -rf "$d/x" && dpkg-deb -x "$d"/qemu-user_*.deb "$d/x" && cp "$d/x/usr/bin/qemu-aarch64" "$QEMU.tmp" \
    && mv "$QEMU.tmp" "$QEMU" && rm -rf "$d/x" || die "qemu-user's .deb has no usr/bin/qemu-aarch64"
  say "QEMU: $("$QEMU" --version | head -n1)"
}

# Register qemu-aarch64 with binfmt_misc (flag F: the kernel holds the interpreter open, so it
# works inside the chroot too). Magic and mask are QEMU's own (scripts/qemu-binfmt-conf.sh).
register_qemu() {
  if [ ! -e "$BINFMT/register" ]; then
    $SUDO mount -t binfmt_misc binfmt_misc "$BINFMT" 2>>"$LOG" \
      || die "cannot mount binfmt_misc at $BINFMT (a container without it? see $LOG)"
  fi
  if [ -e "$BINFMT/qemu-aarch64" ]; then
    grep -q '^enabled' "$BINFMT/qemu-aarch64" || die "$BINFMT/qemu-aarch64 is registered but disabled"
    grep -qx "interpreter $QEMU" "$BINFMT/qemu-aarch64" && return 0
    say "replacing the aarch64 binfmt_misc entry ($(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")) by $QEMU"
    echo -1 | $SUDO tee "$BINFMT/qemu-aarch64" >/dev/null || die "cannot remove the old qemu-aarch64 entry"
  fi
  say "registering $QEMU for aarch64 binaries (binfmt_misc, flag F)"
  local magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  echo ":qemu-aarch64:M::$magic:$mask:$QEMU:F" | $SUDO tee "$BINFMT/register" >/dev/null \
    || die "binfmt_misc registration refused (see $LOG)"
}

# Run "$@" chrooted in $ROOTFS, in a private mount namespace (every mount below vanishes with it).
# Binds: the project read-only at /restnet, $PKG read-only at /package, $WORK read-write at /work.
in_rootfs() {
  local inner='set -e; r=$1; shift
    mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; mount -t sysfs sysfs "$r/sys"
    mount -t tmpfs tmpfs "$r/tmp"
    bindro() { mkdir -p "$r$2"; mount --bind "$1" "$r$2"; mount -o remount,bind,ro "$r$2"; }
    bindro "$PROJECT" /restnet
    [ -z "$PKG" ] || bindro "$PKG" /package
    [ -z "$WORK" ] || { mkdir -p "$r/work"; mount --bind "$WORK" "$r/work"; }
    cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
    exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
      PATH='"$VENV"'/bin:/usr/local/bin:/usr/bin:/bin PYTHONPATH=/restnet PYTHONDONTWRITEBYTECODE=1 \
      RESTNET_EMULATED="aarch64 (qemu-user)" "$@"'
  $SUDO env PROJECT="$root" PKG="${PKG:-}" WORK="${WORK:-}" \
    unshare --mount --propagation private --fork bash -c "$inner" standin "$ROOTFS" "$@"
}

build() {
  mkdir -p "$STANDIN"
  fetch_qemu   # also for a stand-in built before QEMU came from $SUITE
  if built; then return 0; fi
  local t0=$SECONDS
  host_tools
  register_qemu
  if ! [ -f "$ROOTFS/.restnet-rootfs-stamp" ] || [ "$(cat "$ROOTFS/.restnet-rootfs-stamp")" != "$RECIPE $SUITE" ]; then
    local tmp=$STANDIN/rootfs.tmp
    $SUDO rm -rf "$tmp" "$ROOTFS"
    say "building the arm64 $SUITE root filesystem in $ROOTFS (mmdebstrap, package scripts under emulation; log: $LOG)"
    $SUDO mmdebstrap --architectures=arm64 --variant=minbase --mode=root \
      --include=python3,python3-venv,ca-certificates "$SUITE" "$tmp" "$MIRROR" >>"$LOG" 2>&1 \
      || die "mmdebstrap failed; see $LOG"
    $SUDO cp "$QEMU" "$tmp/usr/bin/qemu-aarch64-static"   # lets the chroot run where binfmt lacks flag F
    echo "$RECIPE $SUITE" | $SUDO tee "$tmp/.restnet-rootfs-stamp" >/dev/null
    $SUDO mv "$tmp" "$ROOTFS"
    say "rootfs done after $((SECONDS - t0)) s"
  fi
  # requirements/device.txt into a venv in the rootfs. pip runs on the host (native, minutes faster than
  # under emulation) but resolves for the rootfs: its Python, cp ABI and glibc (manylinux_2_17 .. 2_<glibc>),
  # so it takes the very aarch64 wheels pip on such a board would.
  [ -x "$root/.venv/bin/python" ] || die "no workstation venv (.venv) for pip: run scripts/setup.sh first"
  local info pyver glibc site plat=()
  info=$(in_rootfs python3 -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1])') \
    || die "python3 does not run in the stand-in (emulation?); see $LOG"
  read -r pyver glibc <<<"$info"
  site=$ROOTFS$VENV/lib/python$pyver/site-packages
  $SUDO rm -rf "$ROOTFS$VENV"
  in_rootfs python3 -m venv --without-pip "$VENV" >>"$LOG" 2>&1 || die "python3 -m venv failed in the stand-in; see $LOG"
  for ((m = ${glibc#*.}; m >= 17; m--)); do plat+=(--platform "manylinux_2_${m}_aarch64"); done
  say "pip (host) -> $VENV: requirements/device.txt for Python $pyver, glibc $glibc, aarch64 (log: $LOG)"
  $SUDO "$root/.venv/bin/python" -m pip install --disable-pip-version-check --no-warn-conflicts --no-compile --only-binary=:all: \
    --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" --abi abi3 --abi none \
    --platform manylinux2014_aarch64 "${plat[@]}" --target "$site" -r "$root/requirements/device.txt" >>"$LOG" 2>&1 \
    || die "pip could not install requirements/device.txt for aarch64 / Python $pyver; see $LOG"
  in_rootfs python -m compileall -q -j 0 "$VENV/lib" >>"$LOG" 2>&1 || true  # runs never write bytecode
  in_rootfs python -c 'import importlib.util as u, platform, sys
import numpy, PIL, jsonschema, skimage, executorch_numpy_runtime, ai_edge_litert.interpreter, cryptography.hazmat.primitives.asymmetric.ed25519
assert u.find_spec("torch") is None, "torch must not be in the stand-in"
print("stand-in:", platform.machine(), "Python", sys.version.split()[0], "numpy", numpy.__version__)' >>"$LOG" 2>&1 \
    || die "the device requirements do not import in the stand-in; see $LOG"
  want_stamp | $SUDO tee "$ROOTFS/.restnet-standin-stamp" >/dev/null
  say "stand-in built in $((SECONDS - t0)) s ($(tail -n1 "$LOG"))"
}


cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  build)
    build ;;
  status)   # no side effects: built (for these requirements) and qemu present; `run`/`check` register it
    built || { echo "not built (no up-to-date $ROOTFS)"; exit 1; }
    [ -x "$QEMU" ] || { echo "built, but $QEMU is missing (run build again)"; exit 1; }
    echo "ready: $ROOTFS (emulation $( [ -e "$BINFMT/qemu-aarch64" ] && echo registered || echo 'registered on first run'))" ;;
  run)
    PKG=""
    if [ "${1:-}" = "--package" ]; then PKG=$(cd "$2" && pwd); shift 2; fi
    [ $# -gt 0 ] || die "usage: $0 run [--package DIR] CMD..."
    build; register_qemu
    WORK=${WORK:-} in_rootfs "$@" ;;
  check)
    [ $# -ge 1 ] || die "usage: $0 check PACKAGE [--runs N]"
    [ -f "$1/manifest.json" ] || die "$1: not a package (no manifest.json)"
    PKG=$(cd "$1" && pwd); shift
    runs=5
    if [ "${1:-}" = "--runs" ]; then runs=$2; shift 2; fi
    [ -x "$root/.venv/bin/python" ] || die "no workstation venv (.venv): run scripts/setup.sh first"
    build; register_qemu
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/restnet-standin-check.XXXXXX")
    chmod 755 "$WORK"
    say "workstation: eager reference logits for every member of $PKG -> $WORK/reference.npz"
    PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$root/.venv/bin/python" -m restnet.package.reference \
      "$PKG" "$WORK/reference.npz" || die "no eager reference for $PKG (see the message above)"
    say "aarch64 (qemu-user): open + verify, switch, every member vs eager, restnet-bench ($runs runs per file)"
    t0=$SECONDS
    set +e
    PKG=$PKG WORK=$WORK in_rootfs python -m toolkit.crosscheck /package /work/reference.npz \
      --bench-runs "$runs" --table-out /work/latency-table.json
    rc=$?
    set -e
    say "emulated check took $((SECONDS - t0)) s; files in $WORK (the latency table there is marked emulated)"
    exit $rc ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] && exit 2 || die "unknown command: $cmd" ;;
esac
