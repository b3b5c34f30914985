"""int8 routes: one per device format that has one (``Format.int8`` in restnet.export.FORMATS, see
``base.Int8Route``).

The written file runs in its fp32 format's runtime (``get_format(route.format).load``),
so it is checked the same way as an fp32 export; it is not held to the fp32 gate:
its top-1 agreement with the fp32 model on the validation split is reported, and
below ``base.AGREEMENT_FLAG`` the file is flagged.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable

import torch
from torch import nn

from restnet.data import InputSpec
from restnet.export import FORMATS
from restnet.export.base import Int8Route, Quantized
from restnet.export.int8_finetune import finetune
from restnet.export.int8_input import pin_input
from restnet.export.int8_recipe import DEFAULT, Recipe


def routes() -> dict[str, Int8Route]:
    """Format name -> its int8 route, in table order, for the formats that have one."""
    return {name: f.int8 for name, f in FORMATS.items() if f.int8 is not None}


def get_route(fmt: str) -> Int8Route:
    table = routes()
    if fmt not in table:
        raise ValueError(f"no int8 export for format {fmt!r}; int8 is available for {', '.join(table)}")
    return table[fmt]


def quantize(route: Int8Route, model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor],
             recipe: Recipe = DEFAULT, tune: torch.Tensor | None = None,
             log: Callable[[str], None] | None = None, spec: InputSpec | None = None) -> Quantized:
    """The route's PT2E stages; with ``spec``, the image quantiser pinned to whole grey levels where one
    int8 grid holds them all (int8_input); then, when the recipe fine-tunes and ``tune`` (training images,
    never validation ones) is given, its weights fine-tuned through the quantisers towards ``model``'s logits."""
    q = route.quantize(model, example, calibration, recipe)
    if spec is not None and (grid := pin_input(q.program, spec)) and log:
        log(f"int8 input pinned to whole grey levels (scale {grid[0]:.6g}, zero point {grid[1]})")
    if recipe.finetune.images and tune is not None:
        if recipe.finetune.flip:
            tune = torch.cat([tune, tune.flip(-1)])  # mirrored: the same grey levels, another image
        with torch.no_grad():
            teacher = torch.cat([model(tune[k:k + 256]) for k in range(0, len(tune), 256)])
        # The converted program shares the tensors PT2E did not rewrite (the classifier's, ...) with ``model``:
        # train a copy, or fine-tuning would change the fp32 model the other files are made from.
        q = dataclasses.replace(q, program=copy.deepcopy(q.program))
        finetune(q.program, tune, teacher, recipe.finetune, log=log)
    return q
