"""Run by test_distributed.py under `python -m torch.distributed.run --nproc_per_node 2`:
trains an MLP (with dropout) and a conv net (with BatchNorm) in one process group."""

import json
import sys

import torch
from torch.utils.data import DataLoader

from slimkit.train import distributed as D
from slimkit.train import evaluate, fit

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _train_tiny import blobs, convnet, images, loader, mlp  # noqa: E402

out_dir = sys.argv[1]
torch.set_num_threads(1)
for kind in ("mlp", "convnet"):
    if kind == "mlp":
        model, train, test = mlp(), blobs(512), blobs(256, seed=0)
    else:
        model, train, test = convnet(), images(64), images(64)
    before = evaluate(model, DataLoader(test, batch_size=64))["top1"]
    hist = fit(model, loader(train, batch_size=32), epochs=3, lr=0.05, progress=False,
               val_loader=DataLoader(test, batch_size=50), checkpoint_dir=f"{out_dir}/{kind}")
    state = {k: v.tolist() for k, v in model.state_dict().items()}
    with open(f"{out_dir}/{kind}_rank{D.rank()}.json", "w") as f:
        json.dump({"world": D.world_size(), "before": before, "val_top1": hist.val_top1,
                   "steps": hist.steps, "state": state}, f)
D.cleanup()
