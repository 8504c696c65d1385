"""slimkit.distill: knowledge distillation (survey section 2.4).

- `taps(model, names)`: forward-hook feature capture by module name.
- `LOSSES`: kd (Hinton'15), at (Zagoruyko & Komodakis'17), fsp (Yim'17), sp (Tung & Mori'19),
  nst (Huang & Wang'17), adversarial (Xu'18 / Belagiannis'18).
- `distill(student, teacher, loader, DistillConfig(...), epochs=...)` through `slimkit.train.fit`.
- `codistill(model, loader, CodistillConfig(...), epochs=...)`: online distillation across
  `torchrun` ranks (Anil et al. 2018).

>>> from slimkit.distill import distill, DistillConfig
>>> res = distill(student, teacher, loader, DistillConfig(loss="kd", T=4, alpha=0.9), epochs=5)  # doctest: +SKIP
"""

from slimkit.distill.adversarial import (
    AdversarialTerm,
    Discriminator,
    discriminator_loss,
    generator_loss,
)
from slimkit.distill.losses import (
    LOSSES,
    DistillBatch,
    LossSpec,
    at_loss,
    attention_map,
    channel_adapters,
    fsp_loss,
    fsp_matrix,
    kd_loss,
    mmd_poly,
    nst_loss,
    similarity_matrix,
    sp_loss,
)
from slimkit.distill.online import CodistillConfig, codistill
from slimkit.distill.taps import FeatureTaps, check_names, module_names, taps
from slimkit.distill.trainer import DistillConfig, DistillLoss, distill

__all__ = [
    "LOSSES",
    "AdversarialTerm",
    "CodistillConfig",
    "Discriminator",
    "DistillBatch",
    "DistillConfig",
    "DistillLoss",
    "FeatureTaps",
    "LossSpec",
    "at_loss",
    "attention_map",
    "channel_adapters",
    "check_names",
    "codistill",
    "discriminator_loss",
    "distill",
    "fsp_loss",
    "fsp_matrix",
    "generator_loss",
    "kd_loss",
    "mmd_poly",
    "module_names",
    "nst_loss",
    "similarity_matrix",
    "sp_loss",
    "taps",
]
