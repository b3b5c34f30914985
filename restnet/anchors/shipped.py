"""Task anchors that ship with restnet: the default experiment's anchors, already converged.

Adapting both default anchors until their validation top-1 stops improving
takes over an hour on a 2-core CPU, longer than a whole pack may take, so the
converged anchors for the default experiment are carried in the repository
(``data/anchors/``: fp16 safetensors written by ``restnet adapt``, each beside
its JSON record with the sha256, the validation curve and the command that
remakes it). A pack loads one only for the experiment it was made for: the
same anchor, data and resolution, and the exact same validation images (their
fingerprint), because with another carve the validation split could hold
images the anchor trained on and every decision taken on it would be biased.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from restnet.anchors.weights import WeightsError

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "data" / "anchors"


@dataclass(frozen=True)
class ShippedAnchor:
    anchor: str
    data: str
    resolution: int
    val_fingerprint: str
    path: Path
    sha256: str
    size: int
    record: dict  # the whole JSON record (curve, stopped, command, ...)

    def verified(self) -> Path:
        """The weights file, after its size and sha256 match the record (a mismatch is refused, naming both)."""
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: shipped task anchor missing (its record is {self.path.with_suffix('.json')}); "
                               "restore it from the repository, or pass --no-shipped-anchors to adapt instead")
        size = self.path.stat().st_size
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if size != self.size or digest != self.sha256:
            raise WeightsError(f"{self.path}: size {size} / sha256 {digest[:16]}... but its record says {self.size} / "
                               f"{self.sha256[:16]}...; restore the file from the repository, or pass "
                               "--no-shipped-anchors to adapt instead")
        return self.path


def _read(record: Path) -> ShippedAnchor | None:
    """A record written by `restnet adapt`; one without the fields a match needs is not a shipped anchor."""
    try:
        r = json.loads(record.read_text())
        name = Path(r["file"]).name  # never a path from the record: the file sits beside it
        return ShippedAnchor(r["anchor"], r["data"], int(r["resolution"]), r["val_fingerprint"], record.parent / name,
                             r["sha256"], int(r["size"]), r)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def available(directory: Path | None = None) -> list[ShippedAnchor]:
    """Every shipped task anchor (in ``directory``, default SHIPPED_DIR)."""
    return [s for p in sorted((directory or SHIPPED_DIR).glob("*.json")) if (s := _read(p)) is not None]


def find(anchor: str, data: str, resolution: int, val_fingerprint: str,
         directory: Path | None = None) -> ShippedAnchor | None:
    """The shipped task anchor made for exactly this experiment, if there is one."""
    for s in available(directory):
        if (s.anchor, s.data, s.resolution, s.val_fingerprint) == (anchor, data, resolution, val_fingerprint):
            return s
    return None
