"""`DistillConfig`: what to distil and how strongly (validated on construction).

Kept apart from the trainer so that the loss registry (`losses`) can name the config's type
without an import circle: the loss names are checked against `LOSSES` at construction time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slimkit.errors import UserError

__all__ = ["DistillConfig"]


def _losses():
    import slimkit.distill.adversarial  # noqa: F401  (registers "adversarial")
    from slimkit.distill.losses import LOSSES

    return LOSSES


@dataclass(frozen=True)
class DistillConfig:
    """What to distil and how strongly.

    - `loss`: a registered name or a tuple of them (`LOSSES.names()`).
    - `T`, `alpha`: temperature and soft/hard mix of the kd term (alpha=1: soft targets only).
    - `feature_pairs`: `(student_module, teacher_module)` names for feature losses.
    - `beta`: weight of every non-kd term; None uses each loss's published default.
    - `p`: attention-map exponent (AT); `disc_hidden`, `disc_lr`: adversarial discriminator.
    - `epochs`, `lr`: the training run of `slimkit.compress.distill` (the function `distill`
      takes its own `epochs`); `teacher`: a model file to use as teacher there ("" = the
      context's teacher; in a recipe, the model before the first step).
    """

    loss: str | tuple[str, ...] = "kd"
    T: float = 4.0
    alpha: float = 0.9
    feature_pairs: tuple[tuple[str, str], ...] = ()
    beta: float | None = None
    p: float = 2.0
    disc_hidden: int = 64
    disc_lr: float = 1e-3
    epochs: int = 1
    lr: float = 0.01
    teacher: str = ""

    def __post_init__(self) -> None:
        LOSSES = _losses()
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")
        if not isinstance(self.teacher, str):
            raise UserError(f"teacher must be a model file path (str), got {self.teacher!r}")
        names = (self.loss,) if isinstance(self.loss, str) else tuple(self.loss)
        if not names:
            raise UserError(f"loss must name at least one of {LOSSES.names()}")
        unknown = [n for n in names if n not in LOSSES]
        if unknown:
            raise UserError(
                f"unknown distillation loss {unknown[0]!r}; known: {', '.join(LOSSES.names())}"
            )
        if len(set(names)) != len(names):
            raise UserError(f"loss lists a name twice: {names}")
        object.__setattr__(self, "loss", names[0] if len(names) == 1 else names)
        pairs = tuple(tuple(p) for p in self.feature_pairs)
        if any(len(p) != 2 or not all(isinstance(n, str) for n in p) for p in pairs):
            raise UserError(
                f"feature_pairs must be (student_name, teacher_name) pairs of str, "
                f"got {self.feature_pairs!r}"
            )
        object.__setattr__(self, "feature_pairs", pairs)
        for n in names:
            spec = LOSSES.get(n)
            if spec.uses_features and len(pairs) < spec.min_pairs:
                raise UserError(
                    f"loss {n!r} needs at least {spec.min_pairs} feature_pairs "
                    f"(student_module, teacher_module), got {len(pairs)}"
                )
        if not (isinstance(self.T, (int, float)) and math.isfinite(self.T) and self.T > 0):
            raise UserError(f"T must be a finite number > 0, got {self.T!r}")
        if not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise UserError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.beta is not None and not (
            isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0
        ):
            raise UserError(f"beta must be None or a finite number >= 0, got {self.beta!r}")
        if not self.p > 0:
            raise UserError(f"p must be > 0, got {self.p!r}")
        if not (isinstance(self.disc_hidden, int) and self.disc_hidden >= 1):
            raise UserError(f"disc_hidden must be an int >= 1, got {self.disc_hidden!r}")
        if not self.disc_lr > 0:
            raise UserError(f"disc_lr must be > 0, got {self.disc_lr!r}")

    @property
    def losses(self) -> tuple[str, ...]:
        return (self.loss,) if isinstance(self.loss, str) else self.loss

    def weight(self, name: str) -> float:
        """The weight of term `name` (`beta`, or the loss's default when `beta` is None)."""
        return _losses().get(name).default_beta if self.beta is None else float(self.beta)
