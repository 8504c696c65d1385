"""Run by test_trainer.py under `python -m torch.distributed.run --nproc_per_node 2`."""

import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _tiny import convnet, images, loader

from slimkit.distill import DistillConfig, distill
from slimkit.train import distributed as D

torch.set_num_threads(1)
teacher, student = convnet(6, seed=1), convnet(4, seed=2)
cfg = DistillConfig(
    loss=("kd", "fsp", "adversarial"), feature_pairs=(("relu1", "relu1"), ("relu2", "relu2"))
)
terms = {}
hist = distill(
    student,
    teacher,
    loader(images(64), batch_size=8),
    cfg,
    epochs=2,
    progress=False,
    terms_out=terms,
)
out = {
    "world": D.world_size(),
    "steps": hist.steps,
    "student": [v.tolist() for v in student.state_dict().values()],
    "adapter": terms["fsp"].adapters[0].weight.tolist(),
}
with open(f"{sys.argv[1]}/rank{D.rank()}.json", "w") as f:
    json.dump(out, f)
D.cleanup()
