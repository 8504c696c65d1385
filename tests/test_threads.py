"""Thread defaults: the free cores, torchrun's share, SLIMKIT_THREADS and --threads."""

import pytest
import torch

from slimkit.errors import UserError
from slimkit.threads import ENV, HostLoad, apply_threads, default_threads, host_load


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_idle_host_uses_every_core():
    assert default_threads(HostLoad(cores=8, load_1m=0.1, running=1, local_world_size=1)) == \
        (8, "free cores")


def test_a_busy_process_takes_its_core():
    # one other process spinning: load ~1 and two runnable processes (it and this one)
    assert default_threads(HostLoad(2, 1.0, 2, 1))[0] == 1
    # two hogs on a 2-core host: one thread, never zero
    assert default_threads(HostLoad(2, 2.1, 3, 1))[0] == 1


def test_torchrun_divides_the_cores():
    # 4 local processes on 8 idle cores: 2 each; their own load is not counted as foreign
    assert default_threads(HostLoad(8, 3.9, 4, 4))[0] == 2


def test_env_overrides_and_is_validated(monkeypatch):
    monkeypatch.setenv(ENV, "3")
    assert default_threads(HostLoad(2, 5.0, 6, 1)) == (3, ENV)
    monkeypatch.setenv(ENV, "zero")
    with pytest.raises(UserError, match=ENV):
        default_threads()


def test_apply_sets_torch_and_records_the_choice():
    choice = apply_threads(1, quiet=True)
    assert torch.get_num_threads() == 1 and choice.source == "argument"
    assert choice.to_dict()["host"]["cores"] == host_load().cores
    with pytest.raises(UserError, match="--threads"):
        apply_threads(0, quiet=True)


def test_cap_only_never_raises_a_lower_count():
    torch.set_num_threads(1)
    choice = apply_threads(cap_only=True, quiet=True)
    assert choice.threads == 1 and torch.get_num_threads() == 1
