"""The survey's cell cache: hits compute nothing, damage is refused and recomputed, an
interrupted run resumes where it stopped."""

import json
import math

import pytest

from slimkit.errors import UserError
from slimkit.survey.cells import CellCache, canonical_json, cell_key, cell_label


def counting():
    calls = []

    def compute(cfg):
        calls.append(cfg["i"])
        return {"square": cfg["i"] ** 2, "nested": {"xs": [1, 2.5, None, "a"]}}

    return calls, compute


def test_key_is_sha256_of_canonical_json():
    import hashlib

    a = {"b": 1, "a": [1, 2], "c": {"y": 1.5, "x": None}}
    b = {"c": {"x": None, "y": 1.5}, "a": (1, 2), "b": 1}
    assert canonical_json(a) == '{"a":[1,2],"b":1,"c":{"x":null,"y":1.5}}'
    assert cell_key(a) == cell_key(b) == hashlib.sha256(canonical_json(a).encode()).hexdigest()
    assert cell_key(a) != cell_key({**a, "b": 2})


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": math.inf}, {1: 2}, {"x": object()}])
def test_non_json_configs_refused(bad):
    with pytest.raises(UserError):
        cell_key(bad)


def test_second_run_computes_nothing(tmp_path):
    calls, compute = counting()
    first = CellCache(tmp_path)
    results = [first.run({"i": i}, compute) for i in range(3)]
    assert calls == [0, 1, 2] and first.computed == 3 and first.reused == 0
    second = CellCache(tmp_path)
    again = [second.run({"i": i}, compute) for i in range(3)]
    assert calls == [0, 1, 2]                      # nothing computed
    assert second.computed == 0 and second.reused == 3
    assert again == results
    assert all(r.pop("_compute_s") >= 0 for r in results)   # the cell's cost, kept with it
    assert results == [{"square": i * i, "nested": {"xs": [1, 2.5, None, "a"]}} for i in range(3)]
    assert second.compute_s == first.compute_s
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{cell_key({'i': i})}.json" for i in range(3))


def _damage(path, how):
    text = path.read_text()
    if how == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "edited_result":                   # a number changed, checksum left as it was
        obj = json.loads(text)
        obj["result"]["square"] = 99
        path.write_text(json.dumps(obj))
    elif how == "other_config":                    # a valid file of another cell, renamed
        obj = json.loads(text)
        obj["config"] = {"i": 7}
        path.write_text(json.dumps(obj))
    elif how == "wrong_format":
        obj = json.loads(text)
        obj["format"] = "something/9"
        path.write_text(json.dumps(obj))
    elif how == "not_an_object":
        path.write_text("[1, 2, 3]")
    elif how == "empty":
        path.write_text("")


@pytest.mark.parametrize("how", ["garbage", "truncated", "edited_result", "other_config",
                                 "wrong_format", "not_an_object", "empty"])
def test_damaged_cell_is_refused_and_recomputed(tmp_path, how):
    calls, compute = counting()
    CellCache(tmp_path).run({"i": 3}, compute)
    path = tmp_path / f"{cell_key({'i': 3})}.json"
    _damage(path, how)
    cache = CellCache(tmp_path)
    with pytest.warns(UserWarning, match="refused"):
        result = cache.run({"i": 3}, compute)
    assert result["square"] == 9 and calls == [3, 3]
    assert cache.refused == [path.name] and cache.computed == 1
    assert CellCache(tmp_path).run({"i": 3}, compute)["square"] == 9   # repaired on disk
    assert calls == [3, 3]


def test_interrupted_run_resumes(tmp_path):
    calls = []

    def compute(cfg):
        calls.append(cfg["i"])
        if cfg["i"] == 2 and calls.count(2) == 1:
            raise KeyboardInterrupt                # the user stops the run mid-cell
        return {"v": cfg["i"]}

    cache = CellCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        for i in range(4):
            cache.run({"i": i}, compute)
    assert len(list(tmp_path.glob("*.json"))) == 2     # cells 0 and 1, no partial file
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".json")]
    resumed = CellCache(tmp_path)
    assert [resumed.run({"i": i}, compute)["v"] for i in range(4)] == [0, 1, 2, 3]
    assert calls == [0, 1, 2, 2, 3] and resumed.reused == 2 and resumed.computed == 2


def test_result_must_be_plain_json(tmp_path):
    with pytest.raises(UserError, match="not plain JSON"):
        CellCache(tmp_path).run({"i": 0}, lambda cfg: {"x": {1, 2}})
    assert not list(tmp_path.glob("*.json"))


def test_progress_names_each_computed_cell_and_not_the_cached_ones(tmp_path):
    lines = []
    cache = CellCache(tmp_path, on_computed=lambda label, s: lines.append((label, s)))
    cfg = {"cell": "method", "arch": "vgg16", "data": "cifar10", "spec": {"method": "cp"}}
    cache.run(cfg, lambda c: {"v": 1})
    cache.run(cfg, lambda c: {"v": 2})                 # read back: no progress line
    cache.run({"cell": "distill", "seed": 3}, lambda c: {"v": 3, "_compute_s": 12.5})
    assert [label for label, _ in lines] == ["method vgg16/cifar10 cp", "distill seed 3"]
    assert lines[1][1] == 12.5 and lines[0][1] >= 0
    assert cell_label({"i": 0}) == "cell"
