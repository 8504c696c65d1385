"""Decoded-array cache: uint8 `.npy` files written atomically, read with allow_pickle=False.

The cache lives in one folder, `$SLIMKIT_CACHE` (default `~/.cache/slimkit`), never in the
data folder; the first write to it in a process says where it goes (on stderr). File names
carry a key made from the source's path, size and modification time, so a changed source is
decoded afresh and one cache folder serves every data folder.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from slimkit.fileio import atomic_write


def cache_root() -> Path:
    """`$SLIMKIT_CACHE`, else `~/.cache/slimkit` (not created here)."""
    return Path(os.environ.get("SLIMKIT_CACHE") or Path.home() / ".cache" / "slimkit").expanduser()


def cache_dir_for(source: Path) -> Path:
    """Where to cache arrays decoded from `source` (a file or a folder): `cache_root()`,
    created if needed; the data folder itself is never written."""
    folder = cache_root()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"{folder}: cannot create the cache folder ({e.strerror}); set SLIMKIT_CACHE "
                      "to a writable folder") from None
    return folder


_ANNOUNCED: set[Path] = set()


def announce_write(folder: Path, what: str, nbytes: int) -> None:
    """Say once per folder and process that decoded data is being cached, where and how much."""
    if folder in _ANNOUNCED:
        return
    _ANNOUNCED.add(folder)
    print(f"slimkit: caching decoded {what} ({nbytes / 2**20:.0f} MB) in {folder} "
          "(set SLIMKIT_CACHE to move it)", file=sys.stderr)


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
