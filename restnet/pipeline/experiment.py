"""The inputs every stage of the method depends on, as one frozen value (what the caches are keyed on)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from restnet.anchors import get_anchor
from restnet.training.adapt import AdaptConfig


@dataclass(frozen=True)
class CKAConfig:
    estimator: str = "hsic"
    batch_size: int = 256  # the paper's b
    repeats: int = 5  # the paper's 5 repeats


@dataclass(frozen=True)
class Experiment:
    """Defaults: the default pair on CIFAR-10, sized for a 2-core CPU (see docs/results.md).

    ``train_size`` images adapt the anchors; stitches train on a seeded subset of
    ``stitch_train_size`` of them (a stitch has thousands of parameters, an
    anchor millions). ``val_size`` images are carved from the training split
    for every decision; accuracies are reported on ``test_size`` images of the
    official test split (None = all).
    """

    front: str = "tf_efficientnet_lite2"
    back: str = "tf_efficientnet_lite0"
    data: str = "cifar10"
    resolution: int = 64
    train_size: int | None = 30000
    val_size: int | None = 5000
    test_size: int | None = None
    stitch_train_size: int | None = 15000
    seed: int = 0
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    front_weights: str | None = None
    front_classes: int | None = None
    back_weights: str | None = None
    back_classes: int | None = None
    cka: CKAConfig = field(default_factory=CKAConfig)
    kernel_size: int = 3
    pretrained: bool = True
    shipped: bool = True  # load restnet's converged task anchors where one was made for this experiment

    def __post_init__(self) -> None:
        get_anchor(self.front)
        get_anchor(self.back)


def with_overrides(exp: Experiment, **kw) -> Experiment:
    return replace(exp, **{k: v for k, v in kw.items() if v is not None})
