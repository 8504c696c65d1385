"""File I/O shared by every slimkit file format: atomic writes, checksums, strict reading.

- `atomic_write(path, data)`: a unique temporary file in the target folder, flushed and
  fsync'ed, then `os.replace`d over `path`; the temporary file is removed on any failure, so a
  crash leaves the old file or none, never half a file. New files get mode ``0o666 & ~umask``.
- `check_writable(path, flag="--out", inputs=...)`: refuse a bad output path *before* any work.
- `digest_tensors` / `digest_tree`: SHA-256 over a file's whole content (tensor names,
  dtypes, shapes, bytes and the metadata), stored in the file and checked on load, so a flipped
  bit, a swapped tensor or an edited header is refused instead of loading as wrong weights.
- `read_safetensors` / `write_safetensors`: the safetensors container parsed field by field
  (header length, JSON, dtypes, shapes, offsets, declared sizes versus the file size) with
  every failure a `FormatError` naming the file and the field; never a pickle.

>>> write_safetensors("m.safetensors", {"w": torch.ones(2)}, {"format": "demo/1"})  # doctest: +SKIP
>>> tensors, meta = read_safetensors("m.safetensors", what="demo file")            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from slimkit.errors import FormatError, MissingFileError, UserError

__all__ = ["CHECKSUM_KEY", "atomic_write", "check_writable", "digest_tensors", "digest_tree",
           "read_safetensors", "parse_safetensors", "write_safetensors", "verify_checksum",
           "check_metadata", "check_state_dict", "parse_json", "check_finite", "guard_load", "UNCHECKED"]

CHECKSUM_KEY = "sha256"
MAX_HEADER_BYTES = 100 * 1024 * 1024

_umask_lock = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:                    # elsewhere: set and restore at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike,
    data: bytes | bytearray | memoryview | Callable[[BinaryIO], None],
    *,
    mode: int | None = None,
) -> Path:
    """Write ``data`` (bytes, or a callable ``write(file)``) to ``path`` atomically.

    The bytes go to a unique temporary file in the same folder, which is flushed, fsync'ed and
    then ``os.replace``d over ``path`` (the folder is fsync'ed too). On any failure, including
    KeyboardInterrupt, the temporary file is removed and ``path`` is left as it was. The file
    gets ``mode`` or, by default, ``0o666`` less the process umask (like ``open(path, "w")``).
    Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, (0o666 & ~_umask()) if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
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


def check_writable(
    path: str | os.PathLike,
    flag: str = "--out",
    *,
    inputs: Iterable[str | os.PathLike] = (),
    create_parents: bool = False,
) -> Path:
    """Refuse an output path that cannot be written, before any training or calibration.

    Raises `UserError` naming ``flag`` and the path when ``path`` is an existing folder, lies
    under a file, has a missing parent folder (allowed with ``create_parents=True`` if the
    nearest existing ancestor is a writable folder), a read-only parent folder, is an existing
    read-only file, or is the same file as one of ``inputs``. "Read-only" means not writable by
    this process or without any write permission bit (so a 0o555 folder is refused even for
    root). Nothing is created or changed.
    Returns ``path`` as a `Path`.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise UserError(f"{flag} {str(path)!r}: not a file path")
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a folder, expected a file path")
    ancestor = p.parent                  # the nearest existing folder (or file) above p
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():
            raise UserError(f"{flag} {p}: {ancestor} is a broken link")
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UserError(f"{flag} {p}: lies under {ancestor}, which is a file, not a folder")
    if ancestor != p.parent and not create_parents:
        raise UserError(f"{flag} {p}: folder {p.parent} does not exist")
    if not _writable(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: folder {ancestor} is not writable")
    if p.exists() and not p.is_file():
        raise UserError(f"{flag} {p}: exists and is not a regular file")
    if p.exists() and not _writable(p, os.W_OK):
        raise UserError(f"{flag} {p}: the file exists and is read-only")
    for src in inputs:
        try:
            same = Path(src).exists() and p.exists() and os.path.samefile(src, p)
        except OSError:
            same = False
        if same or Path(src).resolve() == p.resolve():
            raise UserError(f"{flag} {p}: is the input file {src}; choose another output path")
    return p


def _writable(path: Path, access: int) -> bool:
    """Writable by us *and* not marked read-only by its mode bits (root ignores the bits, but a
    path with no write bit for anyone is still treated as read-only)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, access) and bool(mode & 0o222)


# ---------------------------------------------------------------------------------- digests


def _tensor_bytes(t: Tensor) -> bytes:
    t = t.detach().cpu()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes()


def _update_tensor(h: Any, t: Tensor) -> None:
    h.update(f"T{str(t.dtype)}{list(t.shape)}:".encode())
    h.update(_tensor_bytes(t))


def digest_tensors(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 (hex) over the metadata (except the checksum itself) and every tensor's name,
    dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256(b"slimkit-tensors/1\n")
    meta = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        h.update(b"\0" + name.encode() + b"\0")
        _update_tensor(h, tensors[name])
    return h.hexdigest()


def digest_tree(obj: Any) -> str:
    """SHA-256 (hex) of a tree of dicts, lists, tuples, str, int, float, bool, None and tensors
    (a model file or checkpoint payload); dict order does not matter, lists and tuples hash
    alike."""
    h = hashlib.sha256(b"slimkit-tree/1\n")
    _update_tree(h, obj)
    return h.hexdigest()


def _update_tree(h: Any, obj: Any) -> None:
    if isinstance(obj, Tensor):
        _update_tensor(h, obj)
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _update_tree(h, k)
            _update_tree(h, obj[k])
    elif isinstance(obj, (list, tuple, torch.Size)):
        h.update(f"L{len(obj)}:".encode())
        for v in obj:
            _update_tree(h, v)
    elif obj is None or isinstance(obj, bool):
        h.update(f"{obj!r};".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode() + b)
    else:
        raise TypeError(f"cannot checksum a {type(obj).__name__}")


# ------------------------------------------------------------------------------ safetensors

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str | bytes, where: str) -> Any:
    """Strict JSON (no duplicate keys, no NaN/Infinity); a `FormatError` naming ``where``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError) as e:
        raise FormatError(f"{where} is not valid JSON ({e})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, Tensor],
                      metadata: Mapping[str, str]) -> int:
    """Write ``tensors`` + ``metadata`` (str -> str) atomically with a SHA-256 checksum in the
    metadata; returns the file size in bytes."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    meta[CHECKSUM_KEY] = digest_tensors(tensors, meta)
    blob = st_save(tensors, metadata=meta)
    atomic_write(path, blob)
    return len(blob)


def read_safetensors(path: str | os.PathLike, what: str = "safetensors file",
                     ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Parse a safetensors file field by field; returns ``(tensors, metadata)``.

    Checks the header length against the file size, the header JSON, each tensor's dtype,
    shape and data offsets (in range, non-overlapping, covering the data region exactly, each
    the size its dtype and shape declare), metadata values being strings, and bool bytes being
    0 or 1. Does *not* check the checksum (see `verify_checksum`). Every failure is a
    `FormatError` naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} not found: {p}")
    try:
        blob = p.read_bytes()
    except OSError as e:
        raise UserError(f"{p}: cannot read {what} ({e.strerror})") from None
    return parse_safetensors(blob, f"{p}")


def parse_safetensors(blob: bytes, source: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """`read_safetensors` on bytes already in memory; ``source`` names them in errors."""
    def bad(msg: str) -> FormatError:
        return FormatError(f"{source}: corrupt file: {msg}")

    size = len(blob)
    if size < 8:
        raise bad(f"{size} bytes, too short for a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if n < 2 or n > size - 8 or n > MAX_HEADER_BYTES:
        raise bad(f"header length {n} does not fit the file size {size}")
    header = parse_json(blob[8:8 + n], f"{source}: the header")
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            raise bad(f"tensor {name!r}: unsupported dtype {info['dtype']!r}")
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or len(shape) > 8 or not all(
                _is_int(d) and 0 <= d < 2**40 for d in shape):
            raise bad(f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)
                and 0 <= offs[0] <= offs[1] <= data_len):
            raise bad(f"tensor {name!r}: data_offsets {offs!r} outside the {data_len}-byte "
                      "data region")
        nbytes = math.prod(shape) * dtype.itemsize
        if offs[1] - offs[0] != nbytes:
            raise bad(f"tensor {name!r}: {offs[1] - offs[0]} bytes for dtype "
                      f"{info['dtype']} shape {shape} (needs {nbytes})")
        spans.append((offs[0], offs[1], name, dtype, shape))
    spans.sort()
    end = 0
    for begin, stop, name, _, _ in spans:
        if begin != end:
            raise bad(f"tensor {name!r}: data starts at {begin}, expected {end} (gap or overlap)")
        end = stop
    if end != data_len:
        raise bad(f"the data region has {data_len} bytes but the tensors declare {end}")
    data = memoryview(blob)[8 + n:]
    tensors: dict[str, Tensor] = {}
    for begin, stop, name, dtype, shape in spans:
        if stop == begin:
            t = torch.empty(shape, dtype=dtype)
        else:
            raw = torch.frombuffer(bytearray(data[begin:stop]), dtype=torch.uint8)
            if dtype == torch.bool and bool((raw > 1).any()):
                raise bad(f"tensor {name!r}: bool bytes other than 0 and 1")
            t = raw.view(dtype).reshape(shape)
        tensors[name] = t
    return tensors, meta


def verify_checksum(tensors: Mapping[str, Tensor], meta: Mapping[str, str], source: str) -> bool:
    """Check ``meta["sha256"]`` against the content. Returns False when the file has no
    checksum (written before checksums existed); raises `FormatError` when it does not match."""
    stored = meta.get(CHECKSUM_KEY)
    if stored is None:
        return False
    if stored != digest_tensors(tensors, meta):
        raise FormatError(f"{source}: corrupt file: checksum mismatch (the content was changed "
                          "after it was written)")
    return True


def check_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """Refuse NaN or infinite values in floating-point tensors (weights, scales, statistics)."""
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise FormatError(f"{source}: tensor {name!r} holds NaN or infinite values")


def check_metadata(meta: Mapping[str, str], tensors: Mapping[str, Tensor], source: str, *,
                   fmt: str, legacy: str | None, keys: Iterable[str], what: str,
                   optional: Iterable[str] = ()) -> None:
    """Check a safetensors file's ``format``, its metadata keys (all of ``keys``, any of
    ``optional``, no others) and its checksum. A file in the ``legacy`` format (written before
    checksums existed) must carry no checksum; it loads with a `UserWarning` saying that
    corruption cannot be detected.
    """
    got = meta.get("format")
    if got != fmt and (legacy is None or got != legacy):
        raise FormatError(f"{source}: not a {what} (format {got!r}, expected {fmt!r})")
    want = {"format", *keys} | ({CHECKSUM_KEY} if got == fmt else set())
    want |= set(optional) & set(meta)
    if set(meta) != want:
        missing, extra = sorted(want - set(meta)), sorted(set(meta) - want)
        raise FormatError(f"{source}: corrupt file: metadata keys missing {missing}, "
                          f"unexpected {extra}")
    if got == fmt:
        verify_checksum(tensors, meta, source)
    else:
        import warnings

        warnings.warn(f"{source}: {legacy} file has no checksum; corruption cannot be detected "
                      "(save it again to add one)", UserWarning, stacklevel=3)


UNCHECKED = "unchecked failure"
_RAW_ERRORS = (RuntimeError, KeyError, IndexError, TypeError, AttributeError, ValueError,
               OverflowError, struct.error, zipfile.BadZipFile, EOFError, UnicodeError,
               RecursionError, MemoryError)


@contextmanager
def guard_load(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Last line of defence of a loader: any exception that its field-by-field checks did not
    anticipate becomes a `FormatError` naming the file (the text says ``unchecked failure``,
    so tests can tell these from the named checks). slimkit's own errors pass through."""
    try:
        yield
    except UserError:
        raise
    except _RAW_ERRORS as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise FormatError(f"{path}: corrupt or unusable {what} ({UNCHECKED}: "
                          f"{type(e).__name__}: {reason})") from e


def check_state_dict(model: torch.nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Compare ``state`` with ``model.state_dict()``: same keys, and each value a tensor of the
    same shape and dtype. Raises `UserError` naming ``source`` and the keys at fault."""
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise UserError(f"{source}: weights do not match the architecture (missing keys "
                        f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
                        f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''})")
    for key, value in state.items():
        ref = want[key]
        if not isinstance(value, Tensor):
            raise FormatError(f"{source}: {key!r} is a {type(value).__name__}, not a tensor")
        if value.shape != ref.shape:
            raise UserError(f"{source}: {key!r} has shape {list(value.shape)} in the file but "
                            f"{list(ref.shape)} in the architecture")
        if value.dtype != ref.dtype:
            raise UserError(f"{source}: {key!r} has dtype {value.dtype} in the file but "
                            f"{ref.dtype} in the architecture")
