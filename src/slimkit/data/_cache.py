"""Decoded-array cache: uint8 `.npy` files written atomically, read with allow_pickle=False.

The cache sits next to the data when that folder is writable, otherwise in `$SLIMKIT_CACHE`
(default `~/.cache/slimkit`). File names carry a key made from the source's path, size and
modification time, so a changed source is decoded afresh.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np

from slimkit.fileio import atomic_write


def _writable(folder: Path) -> bool:
    """Writable by us *and* not marked read-only by its mode bits (root ignores the bits, but a
    folder with no write bit for anyone, like a shared data folder, is still left alone)."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def cache_dir_for(source: Path) -> Path:
    """Where to cache arrays decoded from `source` (a file or a folder)."""
    parent = source if source.is_dir() else source.parent
    beside = parent / ".slimkit-cache"
    if beside.is_dir() and _writable(beside):
        return beside
    if not beside.exists() and _writable(parent):
        try:
            beside.mkdir()
            return beside
        except OSError:
            pass
    fallback = Path(os.environ.get("SLIMKIT_CACHE") or Path.home() / ".cache" / "slimkit")
    try:
        fallback.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"{fallback}: cannot create the cache folder ({e.strerror}); set SLIMKIT_CACHE") from None
    return fallback


def source_key(source: Path) -> str:
    """A short key that changes when `source` (file, or folder tree) changes."""
    h = hashlib.sha256(str(source.resolve()).encode())
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for p in paths:
        if ".slimkit-cache" in p.parts:
            continue
        st = p.stat()
        h.update(f"{p.relative_to(source) if p != source else p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write `array` to `path` atomically (`slimkit.fileio.atomic_write`: unique temporary file
    in the same folder, fsync, `os.replace`; removed on failure)."""
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
