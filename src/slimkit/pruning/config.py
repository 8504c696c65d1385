"""The older all-methods pruning config: `PruneConfig(method=..., ratio=..., ...)`.

New code uses the per-method configs of `slimkit.compress` (e.g. `L1FilterConfig`), which carry
only the fields their method uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slimkit.errors import UserError
from slimkit.pruning.importance import ELEMENT_IMPORTANCE, importance_names
from slimkit.pruning.masks import MASKS
from slimkit.pruning.registry import METHODS

TARGETS = ("sparsity", "macs", "params", "latency")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "l1_filter"
    ratio: float = 0.5
    target: str = "sparsity"
    granularity: str = "element"  # unstructured methods (magnitude, han, agp)
    importance: str = ""  # "" = the method's own criterion
    scope: str = "layer"  # "layer" | "global" (unstructured threshold)
    ignore: tuple[str, ...] = ()  # fqn globs of layers left whole (e.g. the classifier)
    round_to: int = 1
    n: int = 2  # N:M granularity
    m: int = 4
    steps: int = 1  # prune/retrain rounds (han, iterative l1_filter)
    train_epochs: int = 1  # training inside the method (han, agp, slimming, ssl, sfp)
    finetune_epochs: int = 0  # fine-tuning after pruning
    lr: float = 0.01
    penalty: float = 1e-4  # slimming's L1 / SSL's group-lasso strength
    calib_batches: int = 4  # batches for channel_lasso / taylor
    fit_kwargs: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(
                f"unknown pruning method {self.method!r}; known: {', '.join(METHODS.names())}"
            )
        if self.target not in TARGETS:
            raise UserError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        r = self.ratio
        if not isinstance(r, (int, float)) or isinstance(r, bool):
            raise UserError(f"ratio must be a number, got {r!r}")
        if self.target == "sparsity" and not 0.0 <= r < 1.0:
            raise UserError(f"ratio (the sparsity to reach) must be in [0, 1), got {r!r}")
        if self.target != "sparsity" and not 0.0 < r <= 1.0:
            raise UserError(
                f"ratio (the fraction of {self.target} to keep) must be in (0, 1], got {r!r}"
            )
        if self.granularity not in MASKS:
            raise UserError(
                f"unknown granularity {self.granularity!r}; known: {', '.join(MASKS.names())}"
            )
        known = sorted(set(importance_names()) | set(ELEMENT_IMPORTANCE.names()))
        if self.importance and self.importance not in known:
            raise UserError(f"unknown importance {self.importance!r}; known: {', '.join(known)}")
        if self.scope not in ("layer", "global"):
            raise UserError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if isinstance(self.ignore, str):
            raise UserError(f"ignore must be a tuple of globs, e.g. ({self.ignore!r},)")
        for name in ("round_to", "steps", "n", "m", "calib_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("train_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0 or not self.penalty >= 0:
            raise UserError(
                f"need lr > 0 and penalty >= 0, got lr={self.lr!r}, penalty={self.penalty!r}"
            )
