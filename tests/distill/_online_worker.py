"""Run by test_online.py under `python -m torch.distributed.run --nproc_per_node 2`."""

import json
import sys

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _tiny import blobs, loader, mlp

from slimkit.distill import CodistillConfig, codistill
from slimkit.distill.online import PEER_SOURCES
from slimkit.train import distributed as D
from slimkit.train import evaluate

out_dir = sys.argv[1]
torch.set_num_threads(1)
D.init_from_env()
result = {"world": D.world_size(), "rank": D.rank()}
# exchange check: each rank's peer probabilities on its own batch must equal the other rank's
# model (rebuilt here from its seed) applied to that batch
r = D.rank()
x = torch.randn(5, 8, generator=torch.Generator().manual_seed(100 + r))
mine, peer = mlp(hidden=16, seed=10 + r), mlp(hidden=16, seed=10 + (1 - r))
want = torch.softmax(peer(x) / 2.0, dim=1)
cfg = CodistillConfig(every=1, T=2.0)
got_p = PEER_SOURCES.get("predictions")(mine, cfg).peer_probs(x, 0)
got_c = PEER_SOURCES.get("checkpoints")(
    mine, CodistillConfig(every=1, T=2.0, mode="checkpoints")
).peer_probs(x, 0)
result["exchange_err"] = [(got_p - want).abs().max().item(), (got_c - want).abs().max().item()]
test = DataLoader(blobs(256, seed=1), batch_size=256)
for mode in ("predictions", "checkpoints"):
    model = mlp(hidden=16, seed=10 + D.rank())  # each rank its own model
    before = evaluate(model, test)["top1"]
    cfg = CodistillConfig(every=2, mode=mode, weight=1.0, T=2.0, burn_in_steps=2)
    hist = codistill(
        model, loader(blobs(256, seed=0), batch_size=16), cfg, epochs=3, val_loader=test
    )
    result[mode] = {
        "before": before,
        "val_top1": hist.val_top1,
        "train_loss": hist.train_loss,
        "steps": hist.steps,
        "w0": model[0].weight.flatten()[:8].tolist(),
    }
with open(f"{out_dir}/rank{D.rank()}.json", "w") as f:
    json.dump(result, f)
D.cleanup()
