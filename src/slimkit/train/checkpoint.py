"""Training checkpoints: state_dicts, tensors and JSON-able metadata, written atomically.

A checkpoint never holds a pickled class: `load_checkpoint` uses `torch.load(...,
weights_only=True)`, so a file from elsewhere cannot run code. Writes go through
`slimkit.fileio.atomic_write` (a unique temporary file in the same folder, fsync'ed, then
`os.replace`d over the target): a crash mid-write leaves the previous checkpoint intact and no
partial file behind. Each file carries a SHA-256 of its whole content (`seal` / `unseal`), so a
flipped bit is refused instead of resuming from wrong weights.

>>> save_checkpoint("run/last.pt", model=model, optimizer=opt, scheduler=sched, epoch=3,  # doctest: +SKIP
...                 history=hist.to_dict(), note="baseline")
>>> ckpt = load_checkpoint("run/last.pt", model=model); model.load_state_dict(ckpt["model"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from slimkit.errors import FormatError, MissingFileError, UserError
from slimkit.fileio import CHECKSUM_KEY, atomic_write, check_finite, check_state_dict, digest_tree

__all__ = ["CHECKPOINT_FORMAT", "atomic_write", "save_checkpoint", "load_checkpoint",
           "safe_load", "check_plain", "check_json_plain", "check_state", "seal", "unseal"]

CHECKPOINT_FORMAT = "slimkit.checkpoint/2"           # /2 adds the sha256 checksum
LEGACY_CHECKPOINT_FORMAT = "slimkit.checkpoint/1"    # loads with a warning (no checksum)
_CHECKPOINT_KEYS = {"format", "epoch", "model", "optimizer", "scheduler", "history", "meta"}


def seal(payload: dict) -> dict:
    """``payload`` plus a SHA-256 of its whole content under ``"sha256"`` (see `unseal`)."""
    payload = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    payload[CHECKSUM_KEY] = digest_tree(payload)
    return payload


def unseal(obj: dict, path: str | os.PathLike, what: str, *, fmt: str, legacy: str,
           keys: set[str]) -> dict:
    """Check a loaded payload's format, its top-level keys and its checksum (`seal`). A payload
    in the ``legacy`` format (written before checksums existed) loads with a warning."""
    got = obj.get("format")
    if got not in (fmt, legacy):
        raise FormatError(f"{path}: not a slimkit {what} (format {got!r}, expected {fmt!r})")
    want = keys | ({CHECKSUM_KEY} if got == fmt else set())
    if set(obj) != want:
        raise FormatError(f"{path}: corrupt {what}: keys missing {sorted(want - set(obj))}, "
                          f"unexpected {sorted(map(str, set(obj) - want))}")
    if got == fmt:
        try:
            ok = obj[CHECKSUM_KEY] == digest_tree(
                {k: v for k, v in obj.items() if k != CHECKSUM_KEY})
        except (TypeError, RecursionError) as e:      # an object digest_tree cannot hash
            raise FormatError(f"{path}: corrupt {what}: {e}") from None
        if not ok:
            raise FormatError(f"{path}: corrupt {what}: checksum mismatch (the content was "
                              "changed after it was written)")
    else:
        warnings.warn(f"{path}: {legacy} file has no checksum; corruption cannot be detected "
                      "(save it again to add one)", UserWarning, stacklevel=3)
    return obj


def torch_writer(obj: Any) -> Callable[[Any], None]:
    """A writer for `atomic_write` that `torch.save`s ``obj``."""
    return lambda f: torch.save(obj, f)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int,
    history: dict[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Write a training checkpoint atomically; `epoch` is the last *completed* epoch (0-based).

    `meta` must be JSON-able values (str, int, float, bool, None, lists and dicts of them) or
    tensors; anything else is rejected before the file is touched.
    """
    if epoch < -1:
        raise ValueError(f"epoch must be >= -1 (the last completed epoch), got {epoch}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": history if history is not None else {},
        "meta": meta,
    }
    check_plain(payload, "checkpoint")
    return atomic_write(path, torch_writer(seal(payload)))


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    model: nn.Module | None = None,
) -> dict:
    """Read a checkpoint written by `save_checkpoint` (never unpickles classes).

    Raises `UserError` naming the file when it is missing, truncated, corrupt (checksum, keys,
    types, non-finite weights), not a slimkit checkpoint, or holds objects other than tensors
    and plain data. With ``model``, the stored weights must also fit it key by key (shape and
    dtype): a checkpoint of another architecture is refused before anything is loaded.
    Checkpoints of the checksum-less format ``slimkit.checkpoint/1`` load with a warning.
    """
    ckpt = safe_load(path, map_location=map_location, what="checkpoint")
    if ckpt.get("format") not in (CHECKPOINT_FORMAT, LEGACY_CHECKPOINT_FORMAT):
        raise FormatError(f"{path}: not a slimkit checkpoint (format {ckpt.get('format')!r})")
    unseal(ckpt, path, "checkpoint", fmt=CHECKPOINT_FORMAT, legacy=LEGACY_CHECKPOINT_FORMAT,
           keys=_CHECKPOINT_KEYS)
    epoch = ckpt["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < -1:
        raise FormatError(f"{path}: corrupt checkpoint: epoch {epoch!r} is not an int >= -1")
    check_state(ckpt["model"], path, "checkpoint")
    for key in ("optimizer", "scheduler"):
        if ckpt[key] is not None and not isinstance(ckpt[key], dict):
            raise FormatError(f"{path}: corrupt checkpoint: {key!r} is a "
                              f"{type(ckpt[key]).__name__}, expected a dict or None")
    for key in ("history", "meta"):
        if not isinstance(ckpt[key], dict):
            raise FormatError(f"{path}: corrupt checkpoint: {key!r} is a "
                              f"{type(ckpt[key]).__name__}, expected a dict")
    if model is not None:
        model = getattr(model, "module", model)
        try:
            check_state_dict(model, ckpt["model"], str(path))
        except UserError as e:
            raise UserError(f"checkpoint {path} was saved from a different architecture than "
                            f"the model given: {str(e).split(': ', 1)[-1]}") from None
    return ckpt


def check_state(state: Any, path: str | os.PathLike, what: str) -> None:
    """A state_dict read from a file: str keys, dense tensors, finite floating-point values."""
    if not isinstance(state, dict):
        raise FormatError(f"{path}: corrupt {what}: the state_dict is a "
                          f"{type(state).__name__}, expected a dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise FormatError(f"{path}: corrupt {what}: state_dict entry {key!r} is a "
                              f"{type(value).__name__}, expected a tensor under a str key")
        if value.layout != torch.strided:
            raise FormatError(f"{path}: corrupt {what}: {key!r} is not a dense tensor")
    check_finite(state, str(path))


def safe_load(path: str | os.PathLike, map_location: Any = "cpu", what: str = "file") -> dict:
    """`torch.load(path, weights_only=True)` with every failure turned into a clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad magic, forbidden global, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FormatError(
            f"{path}: cannot read {what} (corrupt, truncated or unsafe): {reason}") from exc
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: expected a {what} dict, found {type(obj).__name__}")
    return obj


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size)


def check_plain(obj: Any, where: str) -> None:
    """Raise ValueError if `obj` holds anything but tensors and JSON-like data."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"{where}: key {k!r} must be str or int")
            check_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise ValueError(
            f"{where}: {type(obj).__name__} is not allowed in a checkpoint "
            "(only tensors, str, int, float, bool, None, lists and dicts)"
        )


_JSON_SCALARS = (str, int, float, bool, type(None))


def check_json_plain(obj: Any, where: str) -> None:
    """Raise `UserError` unless `obj` is JSON-like data: dicts with str keys, lists/tuples,
    str, int, float, bool and None (no tensors, no other objects)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise UserError(f"{where}: key {k!r} must be a str (plain JSON data)")
            check_json_plain(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_json_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _JSON_SCALARS):
        raise UserError(f"{where}: {type(obj).__name__} is not plain JSON-able data (only "
                        "str, int, float, bool, None, lists and dicts with str keys)")
