"""Recipes are validated completely before anything runs; a small chain runs end to end."""

from pathlib import Path

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
    (with_(extra=1), "unknown top-level key"),
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


# ---- steps from the registry, chain checks, masks that stay, shipped recipes end to end ----

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_every_registered_method_is_a_step():
    from slimkit.compress import METHODS

    assert set(METHODS.names()) <= set(STEPS.names())
    assert {"finetune", "export", "distill"} <= set(STEPS.names())


@pytest.mark.parametrize("steps, words", [
    ([{"share": {"bits": 4}}, {"ptq": {}}], "step 2 \\(ptq\\) cannot follow share"),
    ([{"magnitude": {"ratio": 0.5}}, {"export": {"format": "deep_compression"}}],
     "takes shared models"),
    ([{"ptq": {}}, {"l1_filter": {"ratio": 0.5}}], "cannot follow ptq"),
    ([{"ptq": {}}, {"finetune": {}}], "cannot follow ptq"),
])
def test_impossible_chains_are_refused_before_running(steps, words):
    with pytest.raises(UserError, match=words):
        parse_recipe(with_(steps=steps))


@pytest.mark.parametrize("raw, words", [
    (with_(model={"arch": "lenet5", "weights": "x"}), "unknown model key"),
    (with_(train={"epochs": 1, "lr": 0.05, "momentum": 0.9}), "unknown train key"),
    (with_(train={"epochs": "two"}), "train.epochs"),
    (with_(train={"lr": -1}), "train.lr"),
    (with_(data={"name": "mnist5k", "batch_size": 0}), "data.batch_size"),
    (with_(report={"weights": {"r_A": 1}, "title": "x"}), "unknown report key"),
    (with_(steps=[{"l1_filter": {"ratio": 0.5, "granularity": "element"}}]), "unknown key"),
    (with_(steps=[{"distill": {"teacher": "missing.pt"}}]), "not a loadable model file"),
    (with_(steps=[{"export": {"format": "tflite"}}]), "export.format"),
])
def test_every_section_is_validated(raw, words):
    with pytest.raises(UserError, match=words):
        parse_recipe(raw)


def test_model_file_must_load(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="model"):
        parse_recipe(with_(model={"file": str(bad)}))


def _tiny_ctx(tmp_path):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from slimkit.recipes.steps import StepContext

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    dl = DataLoader(TensorDataset(x, y), batch_size=16)
    return StepContext(dl, dl, torch.zeros(1, 1, 28, 28), tmp_path)


def test_pruned_zeros_stay_zero_through_a_recipe_finetune(tmp_path):
    """The issue's case: magnitude pruning, then a recipe fine-tune epoch (576 zeros used to
    become 59); the masks are part of the model, so the count is unchanged."""
    from slimkit import zoo
    from slimkit.pruning.keep import count_zeros, masked_layers

    ctx = _tiny_ctx(tmp_path)
    model = zoo.create("lenet5")
    step = STEPS.get("magnitude")
    cfg = step.config({"ratio": 0.5, "include": ["conv2"], "granularity": "kernel"})
    pruned = step.apply(model, cfg, ctx)
    zeros = count_zeros(pruned)
    assert zeros == 12_500                               # half of conv2's 50*20*5*5 weights
    assert list(masked_layers(pruned)) == ["conv2"]
    ft = STEPS.get("finetune")
    tuned = ft.apply(pruned, ft.config({"epochs": 1, "lr": 0.1}), ctx)
    assert count_zeros(tuned) == zeros
    import torch
    assert not torch.equal(tuned.conv1.weight, model.conv1.weight)   # it did train


def test_masks_survive_save_and_load(tmp_path):
    import torch

    from slimkit import zoo
    from slimkit.compress import MagnitudeConfig, compress
    from slimkit.pruning.keep import count_zeros, load_masked, masked_layers, save_masked
    from slimkit.train import fit

    pruned = compress(zoo.create("lenet5"), MagnitudeConfig(ratio=0.8)).model
    zeros = count_zeros(pruned)
    save_masked(tmp_path / "m.pt", pruned, arch="lenet5")
    back = load_masked(tmp_path / "m.pt")
    assert set(masked_layers(back)) == set(masked_layers(pruned)) and count_zeros(back) == zeros
    fit(back, _tiny_ctx(tmp_path).train_loader, epochs=1, lr=0.1, progress=False)
    assert count_zeros(back) == zeros
    # and a plain state_dict round trip keeps the masks (they are buffers)
    twin = compress(zoo.create("lenet5"), MagnitudeConfig(ratio=0.1)).model
    twin.load_state_dict(pruned.state_dict())
    assert count_zeros(twin) == zeros
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(twin.eval()(x), pruned.eval()(x))


def _run_shipped(name, tmp_path, limit=256):
    raw = yaml.safe_load((RECIPES / name).read_text())
    raw["data"].update(limit=limit, calib_size=64)
    raw["train"] = {"epochs": 1, "lr": 0.05}
    report = run_recipe(parse_recipe(raw, name), tmp_path, log=lambda *a: None)
    exported = [p for p in tmp_path.iterdir() if p.name.endswith(".ratios.json")]
    assert len(exported) == 1
    import json

    side = json.loads(exported[0].read_text())
    assert (tmp_path / side["file"]).stat().st_size == side["size_bytes"] > 0
    assert set(side["ratios"]) == {"r_A", "r_p", "r_T", "r_c", "r_E", "r_D"}
    return report, side


def test_shipped_prune_quantize_recipe_runs_end_to_end(tmp_path):
    report, side = _run_shipped("lenet5-prune-quantize.yaml", tmp_path, limit=128)
    assert side["ratios"]["r_p"] < 0.3 and side["ratios"]["r_c"] < 0.6
    assert [r.method for r in report.rows][-1] == "l1_filter + ptq + export"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5-deep-compression.yaml",
                                  "lenet5-prune-distill-qat-int8.yaml",
                                  "lenet5-lowrank-quantize.yaml",
                                  "lenet5-prune-lowrank-distill.yaml"])
def test_shipped_recipes_run_end_to_end(name, tmp_path):
    report, side = _run_shipped(name, tmp_path)
    assert side["ratios"]["r_p"] < 1.0
    if name == "lenet5-deep-compression.yaml":
        assert side["ratios"]["r_p"] < 0.1     # pruned + 5-bit codes + Huffman


@pytest.mark.slow  # ~5 s: fine-tune, PTQ and the int8 export
def test_sparse_then_int8_chain_keeps_zeros_and_exports(tmp_path):
    """magnitude -> finetune -> ptq -> export int8: the zeros reach the int8 file's model."""
    import torch

    from slimkit import zoo
    from slimkit.pruning.keep import count_zeros, masked_layers

    ctx = _tiny_ctx(tmp_path)
    model = zoo.create("lenet5")
    chain = [("magnitude", {"ratio": 0.5, "exclude": ["fc2"]}), ("finetune", {"epochs": 1}),
             ("ptq", {}), ("export", {"format": "int8", "file": "m.onnx"})]
    zeros = None
    for name, params in chain:
        step = STEPS.get(name)
        model = step.apply(model, step.config(params), ctx)
        if name == "magnitude":
            zeros = count_zeros(model)
    assert not masked_layers(model) and model.qspec
    assert sum(int((m.weight == 0).sum()) for n, m in model.named_modules()
               if n in ("conv1", "conv2", "fc1")) >= zeros
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert torch.isfinite(model(torch.zeros(1, 1, 28, 28))).all()
