import json

import pytest
import torch

from slimkit import zoo
from slimkit.auto.search import AutoConfig, Candidate, _pareto, candidates, parse_target, recipe_for, search
from slimkit.errors import UserError
from slimkit.recipes.schema import parse_recipe


@pytest.mark.parametrize("text,kind,value,rel", [
    ("latency=0.5x", "latency", 0.5, True), ("size=200KB", "size", 200e3, False),
    ("macs=10M", "macs", 10e6, False), ("latency=2ms", "latency", 2.0, False), ("size = 0.25x", "size", 0.25, True)])
def test_targets_parse(text, kind, value, rel):
    t = parse_target(text)
    assert (t.kind, t.value, t.relative) == (kind, pytest.approx(value), rel)


@pytest.mark.parametrize("text", ["latency", "speed=0.5x", "latency=1.5x", "size=3parsecs", "latency=2KB",
                                  "macs=-1x", ""])
def test_bad_targets_are_one_clear_error(text):
    with pytest.raises(UserError, match="--target"):
        parse_target(text)


def test_every_candidate_is_a_valid_reproducible_recipe(tmp_path):
    cfg = AutoConfig(parse_target("latency=0.5x"), prune_ratios=(0.0, 0.5))
    task = {"data": "mnist5k", "root": None, "input_shape": [1, 28, 28], "num_classes": 10}
    from slimkit.train import save_model

    path = save_model(tmp_path / "m.pt", zoo.create("lenet5"), arch="lenet5")
    pool = candidates(cfg, has_fc=True)
    assert len(pool) == 2 * 2 * 2
    for c in pool:
        recipe = recipe_for(c, path, task, cfg, ["fc1"])
        parsed = parse_recipe(json.loads(json.dumps(recipe)), source="test")  # plain data, validated
        names = [name for name, _ in parsed.steps]
        assert names[-1] == "export"
        assert ("l1_filter" in names) == bool(c.prune) and ("ptq" in names) == c.int8
        assert ("distill" in names) == (bool(c.prune) or c.lowrank)


def test_pareto_keeps_only_undominated_points():
    def c(acc, lat):
        x = Candidate(0.0, False, False)
        x.result = {"accuracy": acc, "latency_ratio": lat}
        return x

    a, b, d, e = c(0.9, 0.5), c(0.95, 0.6), c(0.85, 0.55), c(0.95, 0.7)
    assert _pareto([a, b, d, e]) == [a, b]


@pytest.mark.slow
def test_search_end_to_end_resumes_from_its_cache(tmp_path):
    from slimkit import data
    from slimkit.train import fit, save_model

    torch.manual_seed(0)
    model = zoo.create("lenet5")
    fit(model, data.loader(data.subset(data.load("mnist5k", split="train"), 1000), batch_size=64, train=True),
        epochs=1, progress=False)
    path = save_model(tmp_path / "m.pt", model, arch="lenet5")
    task = {"data": "mnist5k", "root": None, "input_shape": [1, 28, 28], "num_classes": 10}
    cfg = AutoConfig(parse_target("latency=0.6x"), max_drop=50, prune_ratios=(0.0, 0.5), lowrank=False,
                     finetune_epochs=0, max_candidates=2, limit=500)
    out = tmp_path / "auto"
    first = search(path, task, cfg, out, log_fn=lambda s: None)
    assert len(first["candidates"]) >= 1
    assert (out / "auto.md").exists() and (out / "pareto.png").stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/result.json")}
    again = search(path, task, cfg, out, log_fn=lambda s: None)  # cached: nothing re-run
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*/result.json")} == stamps
    accuracies = [c["result"]["accuracy"] for c in first["candidates"]]
    assert [c["result"]["accuracy"] for c in again["candidates"]] == accuracies
    if first["chosen"] is not None:
        assert (out / "chosen.yaml").exists()
        parse_recipe(__import__("yaml").safe_load((out / "chosen.yaml").read_text()))


@pytest.mark.slow
def test_two_torchrun_ranks_share_the_candidates(tmp_path):
    import os
    import subprocess
    import sys

    from slimkit import data
    from slimkit.train import fit, save_model
    from slimkit.train.api import task_record

    torch.manual_seed(0)
    model = zoo.create("lenet5")
    fit(model, data.loader(data.subset(data.load("mnist5k", split="train"), 500), batch_size=64, train=True),
        epochs=1, progress=False)
    path = save_model(tmp_path / "m.pt", model, arch="lenet5", task=task_record("mnist5k", None))
    out = tmp_path / "auto"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "slimkit",
           "auto", str(path), "--target", "latency=0.9x", "--max-drop", "50", "--prune-ratios", "0,0.5",
           "--no-lowrank", "--finetune-epochs", "0", "--limit", "300", "--max-candidates", "2", "--out", str(out)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((out / "cache").glob("*/result.json"))) == 2  # one candidate per rank
    assert done.stdout.count("# slimkit auto") == 1  # only rank 0 reports
