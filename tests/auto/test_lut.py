import json

import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.auto import LatencyTable, units
from slimkit.errors import UserError


class Calls:
    """A fake timer: ms = number of fx nodes in the unit; the overhead unit costs 0.25 ms."""

    def __init__(self):
        self.n = 0

    def __call__(self, module, shapes, batch_size, threads, warmup, repeats):
        self.n += 1
        ops = [n for n in module.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
        if shapes == [(1,)]:
            return 0.25
        return float(len(ops))


class Branchy(nn.Module):
    """Not a zoo net: a conv used by two consumers, a residual add and a concat."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)
        self.fc = nn.Linear(3 * c, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.stem(x)))
        z = torch.cat([self.a(y) + y, self.b(y), y], 1)
        return self.fc(z.mean((2, 3)))


def test_units_fuse_conv_bn_act_and_keep_multi_input_ops_apart():
    _, found = units(Branchy(), (3, 8, 8))
    names = [[n.name for n in u.nodes] for u in found]
    assert names[0] == ["stem", "bn", "relu"]
    add = next(u for u in found if u.nodes[0].name == "add")
    assert len(add.inputs) == 2
    cat = next(u for u in found if u.nodes[0].name == "cat")
    assert len(cat.inputs) == 3
    assert all(u.key for u in found) and len({u.key for u in found}) == len(found)


def test_prediction_is_sum_of_units_minus_repeated_call_overhead(tmp_path):
    timer = Calls()
    table = LatencyTable(timer=timer, path=tmp_path / "t.json")
    pred = table.predict(Branchy(), (3, 8, 8))
    n = len(pred.per_unit)
    assert pred.per_unit["stem"] == 3.0  # conv + bn + relu timed as one unit
    assert pred.overhead_ms == pytest.approx(0.25 * (n - 1))
    assert pred.total_ms == pytest.approx(sum(pred.per_unit.values()) - 0.25 * (n - 1))
    assert pred.measured_now == timer.n == n + 1  # every unit once, plus the overhead probe
    assert "**total**" in pred.table()


def test_table_is_reused_from_disk_and_only_new_layers_are_timed(tmp_path):
    path = tmp_path / "t.json"
    LatencyTable(timer=Calls(), path=path).predict(Branchy(), (3, 8, 8))
    timer = Calls()
    again = LatencyTable(timer=timer, path=path)
    assert again.predict(Branchy(), (3, 8, 8)).measured_now == 0 and timer.n == 0
    wider = Branchy()
    wider.b = nn.Conv2d(8, 8, 1, bias=False)  # one layer changes its signature
    assert again.predict(wider, (3, 8, 8)).measured_now == 1 and timer.n == 1


def test_entries_from_another_host_are_not_mixed_in(tmp_path):
    path = tmp_path / "t.json"
    LatencyTable(timer=Calls(), path=path).predict(Branchy(), (3, 8, 8))
    obj = json.loads(path.read_text())
    obj["host"]["cpu"] = "some other cpu"
    path.write_text(json.dumps(obj))
    assert LatencyTable(timer=Calls(), path=path).entries == {}


@pytest.mark.parametrize("text", ["{", "[]", '{"entries": {"k": -1}}', '{"entries": {"k": "x"}}'])
def test_corrupt_table_is_one_clear_error(tmp_path, text):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(UserError, match="not a slimkit latency table"):
        LatencyTable(path=path)


def test_bad_arguments_and_untraceable_models_are_refused():
    with pytest.raises(UserError, match="unknown latency backend"):
        LatencyTable(backend="tpu")
    with pytest.raises(UserError, match="batch_size"):
        LatencyTable(batch_size=0)

    class Untraceable(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UserError, match="cannot be traced"):
        LatencyTable(timer=Calls()).predict(Untraceable(), (4,))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_real_prediction_is_within_a_factor_of_two_of_measurement(backend):
    from slimkit.metrics.latency import measure_latency, onnx_latency

    model = zoo.create("lenet5").eval()
    pred = LatencyTable(backend=backend, repeats=10).predict(model, (1, 28, 28))
    measure = measure_latency if backend == "torch" else onnx_latency
    meas = min(measure(model, (1, 28, 28), threads=1, repeats=20).median_ms for _ in range(2))
    assert 0.5 < pred.total_ms / meas < 2.0, (pred.total_ms, meas)
