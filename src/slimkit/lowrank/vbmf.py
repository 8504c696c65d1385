"""Rank selection by empirical variational Bayesian matrix factorisation (EVBMF).

Nakajima, Sugiyama, Babacan & Tomioka, "Global Analytic Solution of Fully-observed
Variational Bayesian Matrix Factorization" (JMLR 2013), Theorem 2 / Corollary: with the noise
variance sigma^2 estimated by minimising the empirical-Bayes free energy (a 1-D problem), the
VB solution keeps exactly the singular values above

    gamma_bar = sqrt(M sigma^2 (1 + tau_bar) (1 + alpha / tau_bar)),   alpha = L / M <= 1,

with tau_bar ~ 2.5129 sqrt(alpha). Kim et al. (ICLR 2016) apply it to the mode-0 and mode-1
unfoldings of each conv kernel to pick the Tucker-2 ranks (R_out, R_in) in one shot.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> y = torch.randn(60, 5, generator=g) @ torch.randn(5, 80, generator=g)
>>> evbmf(y + 0.1 * torch.randn(60, 80, generator=g)).rank
5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from slimkit.errors import UserError
from slimkit.lowrank._tensor import singular_values, unfold

__all__ = ["VBMFResult", "evbmf", "vbmf_ranks"]

_TAU_BAR = 2.5129  # tau_bar ~ 2.5129 sqrt(alpha), the paper's approximation of the EVB threshold


@dataclass(frozen=True)
class VBMFResult:
    """The VB rank, the estimated (or given) noise variance and the kept shrunk values."""

    rank: int
    sigma2: float
    threshold: float  # singular values above it are kept
    singular_values: Tensor  # all of them, descending
    shrunk: Tensor  # VB posterior-mean singular values of the kept components, (rank,)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def _free_energy(sigma2: float, l: int, m: int, s: np.ndarray, residual: float,
                 xubar: float) -> float:
    """Empirical-Bayes VB free energy as a function of sigma^2 (up to constants)."""
    h = len(s)
    alpha = l / m
    x = s**2 / (m * sigma2)
    z1 = x[x > xubar]
    z2 = x[x <= xubar]
    tau_z1 = _tau(z1, alpha)
    return float(np.sum(z2 - np.log(z2)) + np.sum(z1 - tau_z1)
                 + np.sum(np.log((tau_z1 + 1) / z1)) + alpha * np.sum(np.log(tau_z1 / alpha + 1))
                 + residual / (m * sigma2) + (l - h) * math.log(sigma2))


def evbmf(y: Tensor, sigma2: float | None = None) -> VBMFResult:
    """EVBMF of a matrix ``y``; ``sigma2=None`` estimates the noise variance."""
    if y.dim() != 2 or min(y.shape) < 2:
        raise UserError(f"evbmf needs a matrix with both sides >= 2, got shape {tuple(y.shape)}")
    if sigma2 is not None and not sigma2 > 0:
        raise UserError(f"sigma2 must be > 0, got {sigma2!r}")
    mat = y.detach().double().cpu()
    if mat.shape[0] > mat.shape[1]:  # the theory takes L <= M
        mat = mat.T
    l, m = mat.shape
    s_t = singular_values(mat)
    s = s_t.numpy()
    alpha = l / m
    tau_bar = _TAU_BAR * math.sqrt(alpha)
    xubar = (1 + tau_bar) * (1 + alpha / tau_bar)
    if sigma2 is None:
        residual = 0.0  # H = L: every singular value is modelled
        eh_ub = int(min(math.ceil(l / (1 + alpha)) - 1, l)) - 1
        upper = (float(np.sum(s**2)) + residual) / (l * m)
        lower = max(s[eh_ub + 1] ** 2 / (m * xubar), float(np.mean(s[eh_ub + 1:] ** 2)) / m)
        if upper <= lower or upper == 0.0:
            sigma2 = max(upper, 1e-300)
        else:
            sigma2 = float(minimize_scalar(_free_energy, args=(l, m, s, residual, xubar),
                                           bounds=(lower, upper), method="bounded").x)
    threshold = math.sqrt(m * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    pos = int((s > threshold).sum())
    kept = s[:pos]
    c = (l + m) * sigma2 / kept**2
    shrunk = kept / 2 * (1 - c + np.sqrt(np.maximum((1 - c) ** 2 - 4 * l * m * sigma2**2 / kept**4,
                                                    0.0)))
    return VBMFResult(pos, sigma2, threshold, s_t.float(), torch.from_numpy(shrunk).float())


def vbmf_ranks(kernel: Tensor) -> tuple[int, int]:
    """Kim et al.'s Tucker-2 ranks (R_out, R_in): EVBMF rank of the mode-0 and mode-1
    unfoldings of a 4-D kernel, each at least 1."""
    if kernel.dim() != 4:
        raise UserError(f"vbmf_ranks needs a 4-D kernel, got shape {tuple(kernel.shape)}")
    r_out = evbmf(unfold(kernel, 0)).rank if kernel.shape[0] >= 2 else 1
    r_in = evbmf(unfold(kernel, 1)).rank if kernel.shape[1] >= 2 else 1
    return max(r_out, 1), max(r_in, 1)
