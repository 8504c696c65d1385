"""Small multilinear-algebra helpers shared by the decompositions (torch only).

Conventions follow Kolda & Bader, "Tensor Decompositions and Applications" (SIAM Review 2009)
with C-order unfoldings: ``unfold(x, n)`` moves axis ``n`` to the front and flattens the rest
in their original order (last axis fastest), which is what `khatri_rao` matches.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from slimkit.errors import UserError


def unfold(x: Tensor, mode: int) -> Tensor:
    """Mode-``mode`` unfolding: (I_mode, prod of the other sizes)."""
    return x.movedim(mode, 0).reshape(x.shape[mode], -1)


def fold(m: Tensor, mode: int, shape: Sequence[int]) -> Tensor:
    """Inverse of `unfold` for a tensor of ``shape``."""
    rest = [s for i, s in enumerate(shape) if i != mode]
    return m.reshape(shape[mode], *rest).movedim(0, mode)


def mode_dot(x: Tensor, matrix: Tensor, mode: int) -> Tensor:
    """n-mode product ``x x_mode matrix``: contracts axis ``mode`` of x with matrix's columns."""
    shape = list(x.shape)
    shape[mode] = matrix.shape[0]
    return fold(matrix @ unfold(x, mode), mode, shape)


def khatri_rao(factors: Sequence[Tensor]) -> Tensor:
    """Column-wise Kronecker product; row index is C-order over the factors' rows."""
    out = factors[0]
    for f in factors[1:]:
        out = (out[:, None, :] * f[None, :, :]).reshape(-1, f.shape[1])
    return out


KR_MAX_ENTRIES = 1 << 24  # 128 MB in float64


def mttkrp(x: Tensor, factors: Sequence[Tensor], mode: int) -> Tensor:
    """Matricized tensor times Khatri-Rao product, ``unfold(x, mode) @ khatri_rao(others)``
    (I_mode, R), without forming the Khatri-Rao product.

    That product has prod(I_k, k != mode) * R entries: for the small kernel modes of a
    512 x 512 x 3 x 3 conv at rank ~800 that is 5 GB. Instead the largest other mode is
    contracted by one matmul and the remaining ones elementwise, so the largest intermediate
    has numel(x) / I_largest * R entries (Kolda & Bader 2009, section 3.4). A Khatri-Rao
    product of at most `KR_MAX_ENTRIES` entries is formed: one matmul is faster then."""
    others = [m for m in range(x.dim()) if m != mode]
    rank = factors[others[0]].shape[1]
    if x.numel() // x.shape[mode] * rank <= KR_MAX_ENTRIES:
        return unfold(x, mode) @ khatri_rao([factors[m] for m in others])
    big = max(others, key=lambda m: x.shape[m])
    rest = [m for m in others if m != big]
    t = x.permute(mode, *rest, big).reshape(-1, x.shape[big]) @ factors[big]
    t = t.reshape(x.shape[mode], *(x.shape[m] for m in rest), rank)
    for m in rest:  # the next mode to contract is always axis 1
        t = (t * factors[m].reshape(1, x.shape[m], *([1] * (t.dim() - 3)), rank)).sum(1)
    return t


def thin_svd(m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.linalg.svd(m, full_matrices=False)``, run on the tall orientation (LAPACK is
    several times faster on a tall matrix than on the same matrix wide)."""
    if m.shape[0] >= m.shape[1]:
        return torch.linalg.svd(m, full_matrices=False)
    u, s, vh = torch.linalg.svd(m.T, full_matrices=False)
    return vh.T, s, u.T


def singular_values(m: Tensor) -> Tensor:
    """Singular values of ``m``, descending (tall orientation, as `thin_svd`)."""
    return torch.linalg.svdvals(m if m.shape[0] >= m.shape[1] else m.T)


def leading_left_singular(m: Tensor, rank: int) -> Tensor:
    """The ``rank`` leading left singular vectors of ``m`` as columns: (rows, rank)."""
    u, _, _ = thin_svd(m)
    return u[:, :rank]


def check_rank(rank: int, limit: int, what: str) -> int:
    """Validate an integer rank in [1, limit]; raise UserError naming the bad value."""
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise UserError(f"{what} must be an int, got {rank!r}")
    if not 1 <= rank <= limit:
        raise UserError(f"{what} must be in [1, {limit}], got {rank}")
    return rank


def relative_error(ref: Tensor, approx: Tensor) -> float:
    """||ref - approx||_F / ||ref||_F (0 for an all-zero ref matched exactly)."""
    den = torch.linalg.norm(ref)
    num = torch.linalg.norm(ref - approx)
    return float(num / den) if den > 0 else float(num)
