"""The method end to end, one cached stage at a time.

An ``Experiment`` is the set of inputs every stage depends on (anchors, data,
resolution, sizes, seeds). Each stage's result is cached on disk under a key
made of exactly those inputs, so `restnet cka`, `select`, `train` and
`evaluate` can each run alone: a verb computes what is missing and reuses
what exists, and a second run of anything is cheap.

One module per stage, each taking its inputs as arguments: ``task`` (the
data), ``anchors`` (adapt the anchors; their bare architectures), ``cka``,
``rerank``, ``stitch`` (build and train the stitching layers) and
``evaluation`` (``records``: the read-or-compute the JSON records share);
``runner.Runner`` wires them together for one Experiment.
"""
from restnet.pipeline.experiment import CKAConfig, Experiment, with_overrides
from restnet.pipeline.runner import Runner

__all__ = ["CKAConfig", "Experiment", "Runner", "with_overrides"]
