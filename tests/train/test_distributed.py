import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from slimkit.train import distributed as D
from slimkit.train import load_checkpoint

from _train_tiny import blobs

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, torchrun) -> Path:
    """One 2-process torchrun launch that trains both tiny models (start-up dominates)."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun(WORKER, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_two_process_ddp_trains_and_ranks_agree(ddp_run, kind):
    r0, r1 = (json.loads((ddp_run / f"{kind}_rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for k, v in r0["state"].items():  # BatchNorm buffers included
        assert torch.equal(torch.tensor(v), torch.tensor(r1["state"][k])), k
    assert r0["val_top1"] == r1["val_top1"]  # all-reduced over the two shards
    # each rank takes half the batches: mlp 512 / 2 / 32 = 8 steps, convnet 64 / 2 / 32 = 1
    assert r0["steps"] == (3 * 8 if kind == "mlp" else 3)
    if kind == "mlp":
        assert r0["before"] < 0.3 and r0["val_top1"][-1] > 0.6
    ckpt = load_checkpoint(ddp_run / kind / "last.pt")  # written once, by rank 0
    assert ckpt["epoch"] == 2
    for k, v in ckpt["model"].items():
        assert torch.equal(v, torch.tensor(r0["state"][k]).to(v.dtype)), k


def test_single_process_helpers_answer_as_rank_zero_of_one():
    assert not D.init_from_env()
    assert (D.rank(), D.world_size(), D.is_main()) == (0, 1, True)
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t) is t
    dl = DataLoader(blobs(10), batch_size=4)
    assert D.shard_loader(dl, train=True) is dl
    D.barrier()


def test_shard_sampler_splits_without_padding():
    parts = [list(D.ShardSampler(10, num_replicas=3, rank_=r)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))
    assert [len(D.ShardSampler(10, 3, r)) for r in range(3)] == [4, 3, 3]


