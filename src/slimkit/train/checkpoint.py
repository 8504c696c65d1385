"""Training checkpoints: state_dicts, tensors and JSON-able metadata, written atomically.

A checkpoint never holds a pickled class: `load_checkpoint` uses `torch.load(...,
weights_only=True)`, so a file from elsewhere cannot run code. Writes go to a temporary file in
the same folder, are fsync'ed, then `os.replace`d over the target: a crash mid-write leaves the
previous checkpoint intact and no partial file behind.

>>> save_checkpoint("run/last.pt", model=model, optimizer=opt, scheduler=sched, epoch=3,
...                 history=hist.to_dict(), note="baseline")
>>> ckpt = load_checkpoint("run/last.pt"); model.load_state_dict(ckpt["model"])
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from slimkit.errors import UserError

CHECKPOINT_FORMAT = "slimkit.checkpoint/1"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, fsync it, then rename it over.

    If `write` raises, the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj, path)` through `atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


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
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (never unpickles classes).

    Raises `UserError` naming the file when it is missing, truncated, corrupt, not a slimkit
    checkpoint, or holds objects other than tensors and plain data.
    """
    ckpt = safe_load(path, map_location=map_location, what="checkpoint")
    if ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt:
        raise UserError(f"{path}: not a slimkit checkpoint (format {ckpt.get('format')!r})")
    return ckpt


def safe_load(path: str | os.PathLike, map_location: Any = "cpu", what: str = "file") -> dict:
    """`torch.load(path, weights_only=True)` with every failure turned into a clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad magic, forbidden global, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read {what} (corrupt, truncated or unsafe): {reason}") from exc
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a {what} dict, found {type(obj).__name__}")
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


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
