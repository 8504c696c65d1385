"""`slimkit train --task detection|segmentation` and `slimkit evaluate` on its model file."""

import re

import pytest

from slimkit.cli.main import main


@pytest.mark.parametrize("task, metric", [("detection", "map50"), ("segmentation", "miou")])
def test_dense_task_trains_saves_and_evaluates_to_the_same_score(task, metric, tmp_path, capsys):
    out = tmp_path / f"{task}.pt"
    assert main(["train", "--task", task, "--epochs", "1", "--scenes", "64", "--width", "4",
                 "--batch-size", "16", "--out", str(out)]) == 0
    trained = re.search(rf"{metric} ([0-9.]+)%", capsys.readouterr().out).group(1)
    assert main(["evaluate", str(out)]) == 0
    evaluated = re.search(rf"{metric} ([0-9.]+)%", capsys.readouterr().out).group(1)
    assert evaluated == trained  # the same seeded test scenes, the same weights


def test_dense_task_refuses_classification_only_flags_and_foreign_data(tmp_path, capsys):
    assert main(["train", "--task", "detection", "--augment", "--out", str(tmp_path / "d.pt")]) == 2
    assert "classification only" in capsys.readouterr().err
    out = tmp_path / "s.pt"
    main(["train", "--task", "segmentation", "--epochs", "1", "--scenes", "32", "--width", "4",
          "--batch-size", "16", "--out", str(out)])
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", "mnist5k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synthetic scenes" in err
