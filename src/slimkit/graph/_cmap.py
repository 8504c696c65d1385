"""Atom maps, the type channel propagation (`_propagate`) and its op rules (`_rules`) share:
a LongTensor over a tensor's dims 1..k naming the atom (channel id) at each position.
"""

from __future__ import annotations

from typing import Any, Union

from torch import Tensor

# an atom map (LongTensor over dims 1..k), a list of them (tuple outputs) or None
CMap = Union[Tensor, list, None]


def full(cm: Tensor, shape: Any) -> Tensor:
    """``cm`` broadcast over all of ``shape[1:]`` (a view)."""
    rest = tuple(int(s) for s in shape[1:])
    return cm.reshape(tuple(cm.shape) + (1,) * (len(rest) - cm.dim())).expand(rest)


def compact(m: Tensor) -> Tensor:
    """Drop trailing dims along which the map is constant (keeps at least dim 1)."""
    while m.dim() > 1 and bool((m == m.narrow(-1, 0, 1)).all()):
        m = m[..., 0]
    return m.contiguous()


def varies(m: Tensor, d: int) -> bool:
    """Whether map ``m`` changes along its axis ``d`` (0 = the tensor's dim 1)."""
    return d < m.dim() and m.shape[d] > 1 and not bool((m == m.narrow(d, 0, 1)).all())
