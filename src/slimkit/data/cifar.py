"""CIFAR-10 / CIFAR-100 (Krizhevsky 2009) from any of three layouts under `root`:

1. the official python batches (`cifar-10-batches-py/data_batch_1..5`, `test_batch`;
   `cifar-100-python/train`, `test`), loose or inside `cifar-10-python.tar.gz`, read with a
   numpy-only unpickler (`_safe_pickle`): no arbitrary object is ever unpickled;
2. an ImageFolder tree `train/<class>/*.png|jpg`, `test/<class>/...` (labels = sorted class
   names, CIFAR's usual order);
3. that tree packed as `.tar.gz` (e.g. `cifar10-jpeg.tar.gz`), read member by member without
   extracting.

Decoded images (2, 3) are cached as uint8 `.npy` arrays in `$SLIMKIT_CACHE` (default
`~/.cache/slimkit`; never in the data folder), said on stderr when first written (`_cache`).

>>> from slimkit import data
>>> train = data.load("cifar10", root="../shared/datasets")  # doctest: +SKIP
>>> train[0][0].shape, len(train)  # doctest: +SKIP
(torch.Size([3, 32, 32]), 50000)
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from slimkit.data._cache import announce_write, cache_dir_for, load_npy, save_npy_atomic, source_key
from slimkit.data._dataset import SPLITS, ArrayDataset, DataError, check_split, register_dataset
from slimkit.data._safe_pickle import safe_loads

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")


@dataclass(frozen=True)
class CifarLayout:
    name: str
    num_classes: int
    pickle_dir: str
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    label_key: str
    archives: tuple[str, ...]  # official pickle archive, then image-tree archives

    def batches(self, split: str) -> tuple[str, ...]:
        return self.train_batches if split == "train" else self.test_batches


CIFAR10 = CifarLayout(
    "cifar10", 10, "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    "labels", ("cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz", "cifar10.tar.gz"),
)
CIFAR100 = CifarLayout(
    "cifar100", 100, "cifar-100-python", ("train",), ("test",), "fine_labels",
    ("cifar-100-python.tar.gz", "cifar100-jpeg.tar.gz", "cifar100.tar.gz"),
)


# ---- 1. official python batches -------------------------------------------------------------


def parse_batch(raw: bytes, where: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    try:
        obj = safe_loads(raw)
    except Exception as e:  # RefusedGlobal, truncated data, garbage: all the same to a user
        raise DataError(f"{where}: not a CIFAR python batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in d or label_key not in d:
        raise DataError(f"{where}: missing 'data' or {label_key!r}; keys: {sorted(map(str, d))}")
    data, labels = d["data"], np.asarray(d[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{where}: 'data' must be a uint8 array (N, 3072), got {type(data).__name__} {shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: {data.shape[0]} images but {label_key!r} has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: label out of range [0, {num_classes}): {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_pickle_dir(folder: Path, layout: CifarLayout, split: str) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for name in layout.batches(split):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: file not found (CIFAR python batch)")
        parts.append(parse_batch(path.read_bytes(), str(path), layout.label_key, layout.num_classes))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_pickle_tar(archive: Path, layout: CifarLayout, split: str) -> tuple[np.ndarray, np.ndarray]:
    wanted = set(layout.batches(split))
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for member, f in _tar_files(archive):
        name = PurePosixPath(member).name
        if name in wanted:
            found[name] = parse_batch(f.read(), f"{archive}:{member}", layout.label_key, layout.num_classes)
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{archive}: archive lacks CIFAR batches {missing}")
    parts = [found[n] for n in layout.batches(split)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---- 2./3. image trees, loose or packed ------------------------------------------------------


def _tar_files(archive: Path) -> Iterator[tuple[str, io.BufferedReader]]:
    """Regular files of a tar archive, streamed in order (nothing is extracted to disk)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if m.isfile():
                    f = tar.extractfile(m)
                    if f is not None:
                        yield m.name, f  # type: ignore[misc]
    except FileNotFoundError:
        raise DataError(f"{archive}: file not found") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: unreadable tar archive ({e})") from None


def _decode(raw: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where}: not a readable image ({e})") from None
    if arr.shape != (32, 32, 3):
        raise DataError(f"{where}: expected a 32x32 image, got {arr.shape[1]}x{arr.shape[0]}")
    return arr.transpose(2, 0, 1)  # (3, 32, 32)


def _split_class(rel: PurePosixPath) -> tuple[str, str] | None:
    """'[top/]train/<class>/<file>' -> ('train', '<class>'), else None."""
    parts = rel.parts
    if len(parts) >= 3 and parts[-3] in SPLITS and rel.suffix.lower() in IMAGE_SUFFIXES:
        return parts[-3], parts[-2]
    return None


def _assemble(
    items: dict[str, list[tuple[str, np.ndarray]]], classes: list[str], where: str, layout: CifarLayout
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if len(classes) != layout.num_classes:
        raise DataError(
            f"{where}: {layout.name} needs {layout.num_classes} class folders under train/, found "
            f"{len(classes)} ({', '.join(classes[:12])}{'...' if len(classes) > 12 else ''}); "
            f"a label would fall out of range"
        )
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split, pairs in items.items():
        unknown = sorted({c for c, _ in pairs} - set(index))
        if unknown:
            raise DataError(f"{where}: {split}/ has class folders not in train/: {unknown}")
        pairs.sort(key=lambda p: p[0])  # stable: by class, then file order as listed
        images = np.stack([a for _, a in pairs]) if pairs else np.zeros((0, 3, 32, 32), np.uint8)
        out[split] = images, np.array([index[c] for c, _ in pairs], dtype=np.int64)
    return out


def _read_image_tar(archive: Path, layout: CifarLayout) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    items: dict[str, list[tuple[str, str, np.ndarray]]] = {s: [] for s in SPLITS}
    for member, f in _tar_files(archive):
        sc = _split_class(PurePosixPath(member))
        if sc:
            items[sc[0]].append((sc[1], member, _decode(f.read(), f"{archive}:{member}")))
    if not items["train"] or not items["test"]:
        raise DataError(
            f"{archive}: wrong archive layout; expected [top/]train/<class>/<image> and "
            f"[top/]test/<class>/<image> (found {len(items['train'])} train, {len(items['test'])} test images)"
        )
    classes = sorted({c for c, _, _ in items["train"]})
    for s in SPLITS:
        items[s].sort(key=lambda t: (t[0], t[1]))
    pairs = {s: [(c, a) for c, _, a in items[s]] for s in SPLITS}
    return _assemble(pairs, classes, str(archive), layout)


def _read_image_tree(root: Path, layout: CifarLayout, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    files = sorted(p for p in (root / split).glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root / split}: wrong layout; no images in {split}/<class>/")
    pairs = [(p.parent.name, _decode(p.read_bytes(), str(p))) for p in files]
    return _assemble({split: pairs}, classes, str(root), layout)


def _cached(
    source: Path, layout: CifarLayout, split: str, decode: Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]]
) -> tuple[np.ndarray, np.ndarray]:
    folder = cache_dir_for(source)
    stem = f"{layout.name}-{source_key(source)}"
    paths = {s: (folder / f"{stem}-{s}-images.npy", folder / f"{stem}-{s}-labels.npy") for s in SPLITS}
    img, lbl = paths[split]
    if img.is_file() and lbl.is_file():
        return load_npy(img), load_npy(lbl)
    decoded = decode()
    nbytes = sum(a.nbytes + b.nbytes for a, b in decoded.values())
    announce_write(folder, f"{layout.name} from {source}", nbytes)
    for s, (images, labels) in decoded.items():
        save_npy_atomic(paths[s][0], images)
        save_npy_atomic(paths[s][1], labels)
    return decoded[split]


# ---- resolving root --------------------------------------------------------------------------


def _is_pickle_tar(archive: Path, layout: CifarLayout) -> bool:
    wanted = set(layout.train_batches + layout.test_batches)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if PurePosixPath(m.name).name in wanted:
                    return True
                if _split_class(PurePosixPath(m.name)):
                    return False
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: unreadable tar archive ({e})") from None
    return False


def read_cifar(root: str | os.PathLike | None, layout: CifarLayout, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N, 3, 32, 32) uint8, labels (N,), and the source path, from whatever `root` holds."""
    check_split(split)
    if root is None:
        root = os.environ.get("SLIMKIT_DATA")
        if not root:
            raise DataError(f"{layout.name}: no data folder; pass root=<folder or archive> or set SLIMKIT_DATA")
    root = Path(root)
    if root.is_file():
        archive = root
        if _is_pickle_tar(archive, layout):
            return (*_read_pickle_tar(archive, layout, split), str(archive))
        return (*_cached(archive, layout, split, lambda: _read_image_tar(archive, layout)), str(archive))
    if not root.is_dir():
        raise DataError(f"{root}: data folder or archive not found")
    for folder in (root / layout.pickle_dir, root):
        if (folder / layout.batches(split)[0]).is_file():
            return (*_read_pickle_dir(folder, layout, split), str(folder))
    for folder in (root, root / layout.name):
        if (folder / "train").is_dir() and (folder / split).is_dir():
            return (*_cached(folder, layout, split, lambda: _read_image_tree(folder, layout, split)), str(folder))
    for name in layout.archives:
        if (root / name).is_file():
            return read_cifar(root / name, layout, split)
    raise DataError(
        f"{root}: no {layout.name} data found; expected {layout.pickle_dir}/, train/ + test/ image folders, "
        f"or one of {', '.join(layout.archives)}"
    )


@register_dataset("cifar10", num_classes=10, input_shape=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                  augment="crop_flip")
def cifar10(root: str | os.PathLike | None = None, split: str = "train") -> ArrayDataset:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images, 10 classes."""
    images, labels, src = read_cifar(root, CIFAR10, split)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    return ArrayDataset(images, labels, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD, classes=classes,
                        name="cifar10", augment="crop_flip", source=src)


@register_dataset("cifar100", num_classes=100, input_shape=(3, 32, 32), mean=CIFAR100_MEAN, std=CIFAR100_STD,
                  augment="crop_flip")
def cifar100(root: str | os.PathLike | None = None, split: str = "train") -> ArrayDataset:
    """CIFAR-100 (fine labels): 50,000 train / 10,000 test 32x32 colour images, 100 classes."""
    images, labels, src = read_cifar(root, CIFAR100, split)
    return ArrayDataset(images, labels, num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD,
                        name="cifar100", augment="crop_flip", source=src)
