"""A survey cell: a config dict -> a result dict, cached on disk by the config's hash.

The key is the sha256 of the config's canonical JSON (sorted keys, no spaces), so the same
experiment under the same budget is computed once; a rerun reads every result back and an
interrupted run resumes at the first missing cell. Each cell file holds the config, the
result and a sha256 of both; it is written atomically (`slimkit.fileio.atomic_write`), so a
crash never leaves half a file. A file that does not parse, whose checksum or config does not
match, is refused (a warning) and the cell is computed again: a damaged cache never crashes a
run and never feeds it a wrong number.

>>> cache = CellCache("/tmp/survey-demo/cache")
>>> cache.run({"table": "demo", "x": 2}, lambda cfg: {"y": cfg["x"] ** 2})["y"]
4
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from slimkit.errors import UserError
from slimkit.fileio import atomic_write

__all__ = ["CELL_FORMAT", "CellCache", "canonical_json", "cell_key", "cell_label"]

CELL_FORMAT = "slimkit.survey.cell/1"


def _plain(value: Any, where: str) -> Any:
    """Check that ``value`` is plain JSON data (str-keyed dicts, lists, str, finite numbers,
    bool, None); tuples become lists. Non-finite floats are refused: JSON has none."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"survey cell {where}: {value!r} is not a finite number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UserError(f"survey cell {where}: key {k!r} is not a str")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise UserError(f"survey cell {where}: {type(value).__name__} is not plain JSON data")


def canonical_json(config: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, ASCII: one text per config."""
    return json.dumps(_plain(config, "config"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def cell_label(config: Mapping[str, Any]) -> str:
    """A short human name of a cell for progress lines, e.g. ``method vgg16/cifar10 cp``."""
    words = [str(config.get("cell", "cell"))]
    if "arch" in config or "data" in config:
        words.append("/".join(str(config[k]) for k in ("arch", "data") if k in config))
    spec = config.get("spec")
    if isinstance(spec, Mapping) and "method" in spec:
        words.append(str(spec["method"]))
    if "seed" in config:
        words.append(f"seed {config['seed']}")
    return " ".join(words)


def cell_key(config: Mapping[str, Any]) -> str:
    """sha256 hex of the config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()


def _digest(config_text: str, result_text: str) -> str:
    return hashlib.sha256(f"{CELL_FORMAT}\n{config_text}\n{result_text}".encode()).hexdigest()


class CellCache:
    """Cell results under ``root`` (``OUT/cache``), one ``<key>.json`` file per cell.

    ``computed`` and ``reused`` count this process's cells; ``refused`` lists the files that
    were damaged and recomputed; ``compute_s`` sums the seconds each cell took when it was
    computed (stored with it as ``_compute_s``), so a resumed run still knows its full cost.
    """

    def __init__(self, root: str | os.PathLike,
                 on_computed: Callable[[str, float], None] | None = None) -> None:
        self.root = Path(root)
        self.on_computed = on_computed  # (cell label, seconds): progress of a long run
        self.computed = 0
        self.reused = 0
        self.seconds: dict[str, float] = {}   # cell key -> its compute time (each cell once)
        self.refused: list[str] = []

    @property
    def compute_s(self) -> float:
        return sum(self.seconds.values())

    def note_seconds(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        self.seconds[cell_key(config)] = float(result.get("_compute_s", 0.0))

    def path(self, config: Mapping[str, Any]) -> Path:
        return self.root / f"{cell_key(config)}.json"

    def get(self, config: Mapping[str, Any]) -> dict | None:
        """The cached result, or None (absent, or damaged: then a warning says why)."""
        path = self.path(config)
        if not path.is_file():
            return None
        why = self._check(path, canonical_json(config))
        if isinstance(why, dict):
            return why
        self.refused.append(path.name)
        warnings.warn(f"survey cache: {path} refused ({why}); computing the cell again",
                      stacklevel=2)
        return None

    @staticmethod
    def _check(path: Path, config_text: str) -> dict | str:
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return f"unreadable: {type(exc).__name__}"
        if not isinstance(obj, dict) or set(obj) != {"format", "config", "result", "sha256"}:
            return "not a survey cell file"
        if obj["format"] != CELL_FORMAT:
            return f"format {obj['format']!r}, expected {CELL_FORMAT!r}"
        if not isinstance(obj["result"], dict):
            return "result is not an object"
        try:
            stored_config = canonical_json(obj["config"]) if isinstance(obj["config"], dict) \
                else None
            result_text = canonical_json(obj["result"])
        except UserError as exc:
            return str(exc)
        if stored_config != config_text:
            return "its config differs from the cell's (hash collision or edited file)"
        if obj["sha256"] != _digest(config_text, result_text):
            return "checksum mismatch"
        return obj["result"]

    def put(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> Path:
        """Write one cell atomically; the result must be plain JSON data."""
        config_text = canonical_json(config)
        result = _plain(result, "result")
        result_text = json.dumps(result, sort_keys=True, separators=(",", ":"), allow_nan=False)
        obj = {"format": CELL_FORMAT, "config": json.loads(config_text),
               "result": result, "sha256": _digest(config_text, result_text)}
        self.root.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.path(config), (json.dumps(obj, indent=1, sort_keys=True)
                                                + "\n").encode())

    def run(self, config: Mapping[str, Any], compute: Callable[[dict], Mapping[str, Any]]
            ) -> dict:
        """The cached result of ``config``, else ``compute(config)`` stored then returned."""
        cached = self.get(config)
        if cached is not None:
            self.reused += 1
            self.note_seconds(config, cached)
            return cached
        start = time.perf_counter()
        result = dict(compute(json.loads(canonical_json(config))))
        result.setdefault("_compute_s", round(time.perf_counter() - start, 3))
        self.put(config, result)
        self.computed += 1
        self.note_seconds(config, result)
        if self.on_computed is not None:
            self.on_computed(cell_label(config), float(result["_compute_s"]))
        return json.loads(json.dumps(_plain(result, "result")))
