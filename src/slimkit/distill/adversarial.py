"""Adversarial distillation: a small discriminator learns to tell teacher logits from student
logits; the student is trained to fool it (the GAN generator loss), on top of its other terms.

Xu, Hsu & Huang, "Training Shallow and Thin Networks for Acceleration via Knowledge
Distillation with Conditional Adversarial Networks" (ICLR workshop 2018) and Belagiannis,
Farshad & Galasso, "Adversarial Network Compression" (ECCV workshops 2018). The discriminator
is an MLP on the logits, trained with binary cross-entropy (teacher = 1, student = 0) by its
own Adam optimizer, one step per training batch, on detached logits; the student receives the
non-saturating generator loss `BCE(D(s), 1)`. The discriminator is kept outside the student's
parameters so the main optimizer never touches it; under DDP its gradients are averaged.

>>> cfg = DistillConfig(loss=("kd", "adversarial"), beta=0.1)  # doctest: +SKIP
>>> distill(student, teacher, loader, cfg, epochs=5)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.distill.losses import LOSSES, DistillBatch, LossSpec
from slimkit.train import distributed as D


class Discriminator(nn.Module):
    """MLP `K -> hidden -> hidden -> 1` with LeakyReLU; outputs one logit per sample."""

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.flatten(1)).squeeze(1)  # (N,)


def discriminator_loss(d: nn.Module, t_logits: Tensor, s_logits: Tensor) -> Tensor:
    """`BCE(D(t), 1) + BCE(D(s), 0)` on detached inputs."""
    real, fake = d(t_logits.detach()), d(s_logits.detach())
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def generator_loss(d: nn.Module, s_logits: Tensor) -> Tensor:
    """Non-saturating generator loss `BCE(D(s), 1)`; gradients reach `s_logits` only."""
    req = [p.requires_grad for p in d.parameters()]
    for p in d.parameters():
        p.requires_grad_(False)
    try:
        out = d(s_logits)
    finally:
        for p, r in zip(d.parameters(), req):
            p.requires_grad_(r)
    return F.binary_cross_entropy_with_logits(out, torch.ones_like(out))


class AdversarialTerm(nn.Module):
    """Steps the discriminator once on the batch (when grad is enabled), then returns the
    student's generator loss."""

    def __init__(self, num_classes: int, hidden: int = 64, lr: float = 1e-3) -> None:
        super().__init__()
        disc = Discriminator(num_classes, hidden)
        # a list, so the discriminator is not a submodule: the student's optimizer never sees it
        self._disc = [disc]
        self._opt = [torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))]
        self.last_d_loss = float("nan")

    @property
    def discriminator(self) -> Discriminator:
        return self._disc[0]

    def forward(self, b: DistillBatch) -> Tensor:
        d, opt = self._disc[0], self._opt[0]
        if next(d.parameters()).device != b.s_logits.device:
            d.to(b.s_logits.device)
        if torch.is_grad_enabled():
            opt.zero_grad(set_to_none=True)
            d_loss = discriminator_loss(d, b.t_logits, b.s_logits)
            d_loss.backward()
            if D.is_distributed():
                for p in d.parameters():
                    if p.grad is not None:
                        p.grad.copy_(D.all_reduce_mean(p.grad))
            opt.step()
            self.last_d_loss = d_loss.item()
        return generator_loss(d, b.s_logits)


LOSSES.register("adversarial")(
    LossSpec(
        build=lambda cfg, s, t, k: AdversarialTerm(k, cfg.disc_hidden, cfg.disc_lr),
        default_beta=1.0,
        uses_features=False,
        min_pairs=0,
    )
)
