"""The package's README.md: what a firmware team needs, generated from the manifest.

Figures (gates, flags) are printed from the constants that enforce them, so the README cannot promise
a check the code no longer makes.
"""
from __future__ import annotations

from restnet.export import FORMATS
from restnet.export.base import AGREEMENT_FLAG, AGREEMENT_FLOOR, TOLERANCE, percent, scientific
from restnet.package.limits import format_limit

# Each format's loading text (Format.readme), in the table's order.
LOADERS = {name: f.readme for name, f in FORMATS.items()}

INT8_NOTE = f"""## int8 files

`*.int8.pte` take and return float32 like the fp32 files. `*.int8.tflite` take and return float32 too with
the default recipe (the entry convolutions and the classifier stay float); a profile with
`int8: {{float_parts: []}}` makes them fully integer, with int8 input and output tensors: quantise the
preprocessed float input with the input tensor's scale and zero point,
`q = clamp(round(x / scale) + zero_point, -128, 127)`, and read logits as `(q - zero_point) * scale` with
the output tensor's (`TfLiteTensor.params`). Branch on the tensor's type, not the file name.

int8 files are not held to the fp32 gate: the manifest gives each its own `accuracy` and `top1_agreement`
with fp32 on the validation split, `check_agreement` over `check_images` (the validation split and the
training images no stage of the pack used), and `flagged: true` when that is below {percent(AGREEMENT_FLAG)}.

"""

# The C++ runner (restnet's firmware/): a CMake snippet and a program that tests/test_firmware.py compiles
# and runs from this very text, so the README cannot show code that does not build.
CPP_CMAKE = """# restnet's firmware/ folder, built against the ExecuTorch of restnet's .venv (no ExecuTorch source build):
#   cmake -S . -B build -G Ninja -Dexecutorch_DIR=<.venv site-packages>/executorch/share/cmake
cmake_minimum_required(VERSION 3.28)
project(classify LANGUAGES CXX)
add_subdirectory(${RESTNET_FIRMWARE} restnet_firmware)  # -DRESTNET_FIRMWARE=/path/to/restnet/firmware
add_executable(classify classify.cpp)
target_link_libraries(classify PRIVATE restnet_firmware)"""

CPP_EXAMPLE = """// classify PACKAGE IMAGE: the best variant within the profile's latency target, and its top-1 label.
#include <algorithm>
#include <iostream>
#include <optional>
#include <restnet/package.hpp>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  try {
    restnet::Package pkg(argv[1]);  // refuses a tampered package: every file's size and sha256 are checked
    restnet::Choice c = restnet::choose(pkg, pkg.latency_target_ms(), std::nullopt);  // as toolkit.switcher
    std::vector<float> logits = pkg.classify(c.id, restnet::load_rgb(argv[2]));  // JPEG/PNG, preprocessed
    auto top1 = std::max_element(logits.begin(), logits.end()) - logits.begin();
    std::cout << c.id << " " << pkg.labels()[top1] << std::endl;
  } catch (const std::exception& e) {
    std::cerr << e.what() << std::endl;
    return 1;
  }
}"""

CPP_LOADING = f"""**C++ runner (restnet's `firmware/`, on ExecuTorch).** `bash scripts/firmware.sh` in the restnet repository
builds the library and `restnet-run PACKAGE IMAGE... [--variant ID] [--budget-ms X] [--json]`; it verifies the
package's files (sizes, sha256; not `manifest.sig` yet), switches variants as `toolkit.switcher` does and
preprocesses JPEG/PNG files to the toolkit's inputs (restnet's `docs/firmware.md` says where they can differ).
In your own program:

```cmake
{CPP_CMAKE}
```

```cpp
{CPP_EXAMPLE}
```
"""

INTEGRITY = """## Integrity

Check each file's `sha256` and `size` against `manifest.json` before loading, and refuse any `path` that is
absolute or contains `..`. `restnet inspect <package>` does both.

## Signatures: accept only what the owner's key signed, never an older package

Whoever can write to the update channel can replace a file and rewrite its sha256 too, so a package that
arrives over the air is trusted through `manifest.sig` (written when the package is signed): Ed25519
signatures over `manifest.json` in RFC 8785 canonical form, one per signing key (the manifest's `key_ids`).
Before reading anything else in the manifest, verify one signature with a public key the device trusts
(OpenSSL: `PEM_read_PUBKEY`, then `EVP_DigestVerifyInit` with no digest and `EVP_DigestVerify` over the
canonical bytes); then refuse a `sequence` lower than the installed package's (a rollback); then check every
file as above. `labels.txt` is not signed: use `task.classes`, or refuse a `labels.txt` that differs.
Python: `Package(path, trusted_keys=["owner.pub"], min_sequence=N)`; command line:
`restnet inspect <package> --trusted-key owner.pub --min-sequence N` (`restnet-bench` takes the same).
The device keeps N, the sequence of the package it installed.

Key rotation: a package signed by an old and a new key opens on devices that trust either. Ship packages
signed by both, and the new public key to every device; then sign with the new key alone and remove the
old key from the devices. Format and details: restnet's `docs/package-format.md`, "Signatures".
"""


# How to load one method of a file a family shares (Format.readme_shared), for the formats that can.
SHARED = {name: f.readme_shared for name, f in FORMATS.items() if f.readme_shared is not None}


def _resize_text(r: dict) -> str:
    if r.get("output", "float32") == "uint8":
        return (f"{r['interpolation']} on the uint8 image, uint8 out, antialias when shrinking: Pillow's "
                "`Image.resize` is the reference (Keys cubic a = -0.5 for bicubic); every figure here was measured "
                "on those very pixels")
    return f"{r['interpolation']} on float pixels in 0..1, antialias when shrinking"


def _shared(m: dict) -> str:
    """How to load a family shipped as one file (``--bundle shared``, manifest 1.3)."""
    parts = []
    for b in m.get("bundles") or []:
        rows = "\n".join(f"| `{name}` | `{vid}` |" for name, vid in b["methods"].items())
        parts.append(f"""## One file for the whole family: `{b['path']}`

This {b['size'] / 2**20:.1f} MB file holds every variant below as its own method ({b['format']}), the anchors'
weights stored once. Load the file once, then each member's method once; switching members is calling another
method, without reading the file again (the runtime may still prepare each method's weights when that method
is first loaded: measure RAM with `restnet-bench`). {SHARED[b['format']].format(path=b['path'])}
Each variant's entry in `manifest.json` names its `method`; its figures (`max_abs_diff`, `top1_agreement`,
latency) are that method's.

| method | variant |
|---|---|
{rows}

""")
    return "".join(parts)


def _file_cell(f: dict) -> str:
    return f"`{f['path']}`" + (f" method `{f['method']}`" if f.get("method") else "")


def latency_text(v: dict) -> str:
    """A variant's latency figures in one line: host first, then the device's, each with its source."""
    parts = [f"{x['ms']:.2f} ms {x['source']} ({x['where']}, {x['threads']} thr)" for x in v["latency"]]
    return "; ".join(parts)


def _split(m: dict) -> str:
    t = m["task"]
    if t.get("accuracy_split") == "test":
        return f"the data set's official test split ({t.get('test_size')} images, never used for training or decisions)"
    return f"the {t['val_size']} validation images"


def _limits(prof: dict) -> str:
    """Where the family stops and why (ladder packages, manifest 1.2)."""
    if prof.get("budget_mode") != "ladder":
        return ""
    lim = prof["limits"]
    text = ", ".join(f"{k} {format_limit(v, k)}" for k, v in lim.items())
    why = ("every limit admits the large anchor, so the family ends there" if prof["binding_limit"] == "anchor"
           else f"the **{prof['binding_limit']}** limit ends the family below the large anchor, which does not ship")
    return (f"\nThe members were chosen for this device's limits ({text}): {why}. Each variant's `limits.headroom` "
            "in the manifest says how much of every limit it leaves.\n")


def readme(m: dict) -> str:
    inp, prof = m["input"], m["profile"]
    formats = sorted({f["format"] for v in m["variants"] for f in v["files"]})
    rows = "\n".join(
        f"| `{v['id']}` | {v['kind']} | {v['accuracy']:.2%} | {v['params'] / 1e6:.2f} M | {v['flops'] / 1e6:.0f} M "
        f"| {latency_text(v)} | {v['peak_ram_mb']:.0f} MB | " + ", ".join(_file_cell(f) for f in v["files"]) + " |"
        for v in m["variants"])
    mean = ", ".join(f"{x:g}" for x in inp["mean"])
    std = ", ".join(f"{x:g}" for x in inp["std"])
    h, w = inp["resize"]["size"]
    return f"""# restnet package: {prof['name']}

{prof['description']}. Made by restnet {m['restnet_version']} on {m['created']};
manifest schema {m['schema_version']} (`manifest.schema.json`, documented in restnet's
`docs/package-format.md`). Task: {m['task']['dataset']}, {m['task']['num_classes']} classes (`labels.txt`,
line k = output k).

## Variants (sorted by cost, cheapest first)

Every file was run by its own runtime on this package's {m['task']['val_size']} validation images and compared
with eager PyTorch: max |logit Δ| ≤ {scientific(TOLERANCE)} × max(1, max |logit|) (the fp32 gate) and top-1
agreement ≥ {percent(AGREEMENT_FLOOR)}; the manifest gives the figures per file (`max_abs_diff`, `max_abs_logit`,
`scaled_diff`, `top1_agreement`). Latency source:
**{m['latency_source']}**{' (estimated figures are host measurements scaled by a documented factor: measure on the device with `restnet-bench`)' if m['latency_source'] == 'estimated' else ''}.

Top-1 is on {_split(m)}.
{_limits(prof)}

| id | kind | top-1 | params | MACs | latency | peak RAM (est.) | files |
|---|---|---|---|---|---|---|---|
{rows}

## Input: preprocessing the device must reproduce

1. Decode to RGB, uint8 (a one-channel image: {inp['resize']['grayscale']}).
2. Resize to {h}×{w} ({_resize_text(inp['resize'])}; no crop).
3. Multiply by {inp['scale']:.6g} (0..255 → 0..1), subtract mean ({mean}), divide by std ({std}) per channel.
4. Lay out as {inp['layout']} float32, shape {inp['shape']} (a file may say `input_layout: NHWC`: transpose).

Output: {m['output']['shape']} {m['output']['kind']} ({m['output']['note']}).

{_shared(m)}{INT8_NOTE if any(f.get("dtype") == "int8" for v in m["variants"] for f in v["files"]) else ""}## Loading

{chr(10).join(LOADERS[f] + chr(10) for f in formats)}{(chr(10) + CPP_LOADING) if "pte" in formats else ""}
## Switching variants on the device

All variants share the input and output above, so switching is swapping which loaded program (or, in a shared
file, which method) is called.
Pick the most accurate variant whose latency (device-measured if you have it, else the manifest's figure)
and peak RAM fit the moment's budget; keep already-loaded variants resident if RAM allows. When the board
throttles, a battery saver starts or another task takes the CPU, lower the budget and walk down the ladder.
Python reference: `toolkit` in the restnet repository (`Switcher(package)` starts at the profile's latency
target; `.set_budget(latency_ms=...)` moves it).

{INTEGRITY}"""
