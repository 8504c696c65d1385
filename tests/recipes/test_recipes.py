"""Recipes are validated completely before anything runs; a small chain runs end to end."""

import pytest
import yaml

from slimkit.errors import UserError
from slimkit.recipes import STEPS, load_recipe, parse_recipe, run_recipe

GOOD = {
    "model": {"arch": "lenet5"},
    "data": {"name": "mnist5k", "batch_size": 64, "limit": 256, "calib_size": 64},
    "train": {"epochs": 1},
    "steps": [{"prune": {"method": "l1_filter", "ratio": 0.5}},
              {"quantize": {"weight_bits": 8, "act_bits": 8}}],
}


def with_(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in GOOD.items()}
    raw.update(changes)
    return raw


def test_good_recipe_parses_into_validated_configs():
    recipe = parse_recipe(GOOD)
    assert [name for name, _ in recipe.steps] == ["prune", "quantize"]
    assert recipe.steps[0][1].ratio == 0.5 and recipe.steps[1][1].weight_bits == 8


@pytest.mark.parametrize("raw, words", [
    (with_(model={"arch": "resnet9000"}), "unknown arch"),
    (with_(model={}), "exactly one of"),
    (with_(data={"name": "imagenet"}), "unknown data set"),
    (with_(data={"nmae": "mnist5k"}), "unknown data key"),
    (with_(steps=[]), "non-empty list"),
    (with_(steps=[{"prune": {"ratio": 1.5}}]), "ratio"),
    (with_(steps=[{"prune": {"mehtod": "l1_filter"}}]), "unknown key"),
    (with_(steps=[{"quantize": {"weight_bits": 40}}]), "bits"),
    (with_(report={"weights": {"r_Z": 1}}), "r_Z"),
    (with_(extra=1), "unknown key"),
])
def test_bad_recipes_fail_before_running(raw, words):
    with pytest.raises(UserError, match=words):
        parse_recipe(raw)


def test_unknown_step_lists_known_steps():
    with pytest.raises(KeyError, match="known: .*prune"):
        parse_recipe(with_(steps=[{"prunee": {}}]))


def test_yaml_file_is_read_safely(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(path)
    path.write_text(yaml.safe_dump(GOOD))
    assert load_recipe(path).arch == "lenet5"


def test_registered_steps():
    assert {"prune", "quantize", "share", "finetune", "lowrank"} <= set(STEPS.names())


@pytest.mark.slow
def test_chain_runs_and_each_step_is_measured(tmp_path):
    report = run_recipe(parse_recipe(GOOD), tmp_path, log=lambda *a: None)
    methods = [row.method for row in report.rows]
    assert methods == ["original", "prune", "prune + quantize"]
    pruned, quantized = report.rows[1], report.rows[2]
    assert pruned.ratios.r_c < 0.6                       # half the filters: far fewer MACs
    assert quantized.ratios.r_p < pruned.ratios.r_p / 3  # int8 weights: about 4x fewer bytes
    assert (tmp_path / "recipe.resolved.yaml").exists()
    assert (tmp_path / "quantized-int8.onnx").exists()


def test_shipped_recipes_are_valid():
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
    assert shipped, "the repository ships example recipes"
    for path in shipped:
        assert load_recipe(path).steps
