"""IDX files (LeCun's MNIST format, also Fashion-MNIST's), raw or gzip-compressed.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32
per dimension; the data follow in C order, big-endian. Every inconsistency (bad magic,
unknown type, a size that does not match the dimensions) raises `DataError` naming the file.

>>> images = read_idx("train-images-idx3-ubyte.gz")     # doctest: +SKIP
>>> images.shape, images.dtype  # doctest: +SKIP
((60000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from slimkit.data._dataset import ArrayDataset, DataError, check_split, register_dataset

# type code -> big-endian numpy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
FASHION_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip detected by its magic bytes) into a native-endian array."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (magic {raw[:4].hex()}; expected 0000 + type code "
            f"{'/'.join(f'{c:02x}' for c in IDX_TYPES)} + ndim)"
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header} for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX dims {dims} need {expected} data bytes but the file has {len(raw) - header}"
            + (" (truncated)" if len(raw) - header < expected else "")
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as IDX (gzip when `compress`, default: when the name ends in .gz)."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    dt = np.dtype(array.dtype).newbyteorder("=")
    if dt not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code; allowed: {sorted(map(str, codes))}")
    body = struct.pack(">HBB", 0, codes[dt], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body += np.ascontiguousarray(array, dtype=IDX_TYPES[codes[dt]]).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(body, mtime=0) if compress else body)


def _find(root: Path, stem: str) -> Path:
    """`train-images-idx3-ubyte` in any of its usual spellings, gzip or raw."""
    alt = stem.replace("-idx", ".idx")  # the original LeCun downloads unzip to 'train-images.idx3-ubyte'
    tried = []
    for folder in (root, root / "raw"):
        for name in (stem + ".gz", stem, alt + ".gz", alt):
            p = folder / name
            tried.append(p.name)
            if p.is_file():
                return p
    raise DataError(f"{root / (stem + '.gz')}: file not found (looked for {', '.join(dict.fromkeys(tried))})")


def read_idx_pair(root: Path, split: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray, Path]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 of an MNIST-layout split in `root`."""
    prefix = "train" if check_split(split) == "train" else "t10k"
    img_path, lbl_path = _find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{img_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: expected labels (N,), got shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{lbl_path}: {len(labels)} labels for {len(images)} images in {img_path.name}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{lbl_path}: label out of range [0, {num_classes}): {labels.min()}..{labels.max()}")
    return images[:, None], labels.astype(np.int64), img_path


def _root(root: str | os.PathLike | None, name: str, default: Path | None) -> Path:
    if root is None:
        env = os.environ.get("SLIMKIT_DATA")
        if env:
            root = Path(env)
        elif default is not None and default.is_dir():
            return default
        else:
            hint = f" (Debian/Ubuntu: apt install dataset-{name}, which fills {default})" if default else ""
            raise DataError(f"{default or name}: no {name} data; pass root=<folder with the IDX files>{hint}")
    root = Path(root)
    for candidate in (root, root / name, root / name.upper(), root / name.replace("-", "_")):
        if candidate.is_dir() and (any(candidate.glob("t*-ubyte*")) or (candidate / "raw").is_dir()):
            return candidate
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    return root  # _find reports the missing file by name


@register_dataset("mnist", num_classes=10, input_shape=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD)
def mnist(root: str | os.PathLike | None = None, split: str = "train") -> ArrayDataset:
    """MNIST (LeCun et al. 1998) from the four IDX files in `root` (or `root/mnist`)."""
    folder = _root(root, "mnist", None)
    images, labels, src = read_idx_pair(folder, split)
    return ArrayDataset(images, labels, num_classes=10, mean=MNIST_MEAN, std=MNIST_STD, name="mnist",
                        source=str(src))


@register_dataset("fashion-mnist", num_classes=10, input_shape=(1, 28, 28), mean=FASHION_MEAN, std=FASHION_STD)
def fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> ArrayDataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from IDX files; default root is Debian's
    `/usr/share/datasets/fashion-mnist` (package dataset-fashion-mnist)."""
    folder = _root(root, "fashion-mnist", FASHION_DEFAULT_ROOT)
    images, labels, src = read_idx_pair(folder, split)
    return ArrayDataset(images, labels, num_classes=10, mean=FASHION_MEAN, std=FASHION_STD,
                        classes=FASHION_CLASSES, name="fashion-mnist", source=str(src))
