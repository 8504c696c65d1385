"""`distill`: train a student against a frozen teacher through `slimkit.train.fit`.

The distillation objective plugs into `fit` as its `loss_fn`: each step runs the student
(feature taps record the layers named in `feature_pairs`), runs the teacher in eval mode
under `torch.no_grad()`, and sums the registered terms of `DistillConfig.loss`:

    loss = base + sum_i beta_i * term_i
    base = kd (Hinton'15: alpha * T^2 * KL + (1 - alpha) * CE) if "kd" is listed, else CE

Where a feature loss needs equal channel counts (FSP) the student's features pass through
1x1 conv adapters (FitNets, Romero et al. 2015); the adapters are trained with the student
(they ride along in a wrapper module handed to `fit`, so DDP averages their gradients too) and
can be read back through `terms_out`. The student is trained in place, like `fit`; the
teacher's weights and train/eval mode are left as they were.

>>> cfg = DistillConfig(loss=("kd", "at"), T=4, alpha=0.9,
...                     feature_pairs=(("layer2", "layer2"), ("layer3", "layer3")))
>>> hist = distill(student, teacher, train_loader, cfg, epochs=10, val_loader=test_loader)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

import slimkit.distill.adversarial  # noqa: F401  (registers "adversarial")
from slimkit.distill.config import DistillConfig
from slimkit.distill.losses import LOSSES, DistillBatch
from slimkit.distill.taps import FeatureTaps, check_names
from slimkit.errors import UserError
from slimkit.train import History, fit
from slimkit.train import distributed as D


class _StudentWithTerms(nn.Module):
    """The module `fit` trains: the student plus the terms' own parameters (adapters)."""

    def __init__(self, student: nn.Module, terms: nn.ModuleDict) -> None:
        super().__init__()
        self.student = student
        self.terms = terms

    def forward(self, x: Tensor) -> Tensor:
        return self.student(x)


class DistillLoss:
    """`loss_fn(net, x, y) -> (loss, student_logits)` for `slimkit.train.fit`."""

    def __init__(
        self,
        teacher: nn.Module,
        config: DistillConfig,
        s_taps: FeatureTaps,
        t_taps: FeatureTaps,
        terms: nn.ModuleDict,
    ) -> None:
        self.teacher, self.config = teacher, config
        self.s_taps, self.t_taps, self.terms = s_taps, t_taps, terms
        self.s_names = [p[0] for p in config.feature_pairs]
        self.t_names = [p[1] for p in config.feature_pairs]

    def __call__(self, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        s_logits = net(x)  # (N, K); taps record the student's features
        with torch.no_grad():
            t_logits = self.teacher(x)
        uses_feats = any(LOSSES.get(n).uses_features for n in self.config.losses)
        batch = DistillBatch(
            s_logits=s_logits,
            t_logits=t_logits.detach(),
            y=y,
            s_feats=self.s_taps.get(self.s_names) if uses_feats else [],
            t_feats=self.t_taps.get(self.t_names) if uses_feats else [],
        )
        base = None
        extra = s_logits.new_zeros(())
        for name in self.config.losses:
            value = self.terms[name](batch)
            if LOSSES.get(name).base:
                base = value
            else:
                extra = extra + self.config.weight(name) * value
        if base is None:
            base = F.cross_entropy(s_logits, y)
        self.s_taps.clear()
        self.t_taps.clear()
        return base + extra, s_logits


def distill(
    student: nn.Module,
    teacher: nn.Module,
    loader: DataLoader,
    config: DistillConfig = DistillConfig(),
    *,
    epochs: int,
    terms_out: dict[str, nn.Module] | None = None,
    **fit_kwargs: Any,
) -> History:
    """Train `student` in place to match `teacher` on `loader` with `config`'s losses.

    `fit_kwargs` go to `slimkit.train.fit` (lr, optimizer, val_loader, device, hooks, seed, ...;
    not `loss_fn`). Returns the `fit` History. Pass a dict as `terms_out` to receive the trained
    loss terms by name (e.g. `terms_out["fsp"].adapters`, `terms_out["adversarial"].discriminator`).
    """
    if not isinstance(config, DistillConfig):
        raise UserError(f"config must be a DistillConfig, got {type(config).__name__}")
    if "loss_fn" in fit_kwargs:
        raise UserError("distill builds its own loss_fn; do not pass one")
    s_names = [p[0] for p in config.feature_pairs]
    t_names = [p[1] for p in config.feature_pairs]
    check_names(student, s_names, "student")
    check_names(teacher, t_names, "teacher")
    D.init_from_env()  # as fit does, so the teacher lands on this rank's device
    device = D.local_device(fit_kwargs.get("device", "cpu"))
    teacher_was_training = teacher.training
    teacher_grad = [p.requires_grad for p in teacher.parameters()]
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        with (
            FeatureTaps(student, s_names) as s_taps,
            FeatureTaps(teacher, t_names, detach=True) as t_taps,
        ):
            s_shapes, t_shapes, k = _probe(student, teacher, loader, s_taps, t_taps, device)
            terms = nn.ModuleDict(
                {n: LOSSES.get(n).build(config, s_shapes, t_shapes, k) for n in config.losses}
            )
            wrapped = _StudentWithTerms(student, terms)
            loss_fn = DistillLoss(teacher, config, s_taps, t_taps, terms)
            history = fit(wrapped, loader, epochs=epochs, loss_fn=loss_fn, **fit_kwargs)
    finally:
        for p, r in zip(teacher.parameters(), teacher_grad):
            p.requires_grad_(r)
        teacher.train(teacher_was_training)
    if terms_out is not None:
        terms_out.update(terms.items())
    return history


@torch.no_grad()
def _probe(student, teacher, loader, s_taps, t_taps, device):
    """Feature shapes and class count from one batch (student in eval mode: BN stats untouched)."""
    x, _ = next(iter(loader))
    x = x[:2].to(device)
    was = student.training
    student.to(device).eval()
    try:
        s_logits, t_logits = student(x), teacher(x)
    finally:
        student.train(was)
    if s_logits.shape[1:] != t_logits.shape[1:]:
        raise UserError(
            f"student and teacher outputs differ: {tuple(s_logits.shape[1:])} vs "
            f"{tuple(t_logits.shape[1:])}"
        )
    s_shapes = [f.shape for f in s_taps.get()] if s_taps.names else []
    t_shapes = [f.shape for f in t_taps.get()] if t_taps.names else []
    s_taps.clear()
    t_taps.clear()
    # shapes follow feature_pairs order (get() returns names in tapped order, duplicates kept)
    return s_shapes, t_shapes, int(s_logits.shape[1])
