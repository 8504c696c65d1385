"""The contract a CLI relies on: every registered task builds data, a model, trains and scores."""

import fnmatch

import pytest
import torch

from slimkit.errors import UserError
from slimkit.tasks import TASKS, SceneConfig, evaluate_task, get_task, train_task


def test_names():
    assert TASKS.names() == ["detection", "segmentation"]
    assert get_task("detection") is TASKS.get("detection")
    with pytest.raises(UserError, match="unknown task 'depth'"):
        get_task("depth")


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name):
    task = get_task(name)
    cfg = SceneConfig(size=32, n=8, scale=(10, 16))
    ds = task.dataset(cfg)
    model = task.build_model(width=4)
    assert task.input_shape(cfg) == (1, 32, 32)
    names = [n for n, _ in model.named_modules()]
    for glob in task.outputs:  # the fixed output layers exist
        assert fnmatch.filter(names, glob), glob
    hist = train_task(model, task.loader(ds, batch_size=4, train=True), task, epochs=1)
    assert len(hist) == 2
    res = evaluate_task(model, task.loader(ds, batch_size=4), task)
    assert res["n"] == 8 and 0.0 <= res[task.metric] <= 1.0


def test_train_task_rejects_bad_arguments():
    task = get_task("segmentation")
    model = task.build_model(width=4)
    batch = [(torch.zeros(1, 1, 32, 32), {"mask": torch.zeros(1, 32, 32, dtype=torch.long)})]
    for kw in (dict(epochs=0), dict(alpha=1.5), dict(T=0.0)):
        with pytest.raises(UserError):
            train_task(model, batch, task, **kw)
    with pytest.raises(UserError, match="loader is empty"):
        train_task(model, [], task)
