"""slimkit.train: one training loop with hooks, atomic checkpoints, model files and DDP.

>>> from slimkit.train import fit, evaluate, Hook, save_model, load_model
>>> hist = fit(model, train_loader, epochs=5, val_loader=test_loader)  # doctest: +SKIP
>>> save_model("lenet5.pt", model, arch="lenet5")  # doctest: +SKIP
"""

from slimkit.train.api import train_model
from slimkit.train.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from slimkit.train.history import History
from slimkit.train.hooks import Hook, HookList
from slimkit.train.loop import cross_entropy, evaluate, fit
from slimkit.train.modelfile import build_from_state, load_model, read_model_file, save_model
from slimkit.train.optim import OPTIMIZERS, SCHEDULES
from slimkit.train.resize import channel_spec, resize_to_state_dict
from slimkit.train.seed import epoch_generator, seed_everything

__all__ = [
    "History", "Hook", "HookList", "OPTIMIZERS", "SCHEDULES", "atomic_write", "build_from_state",
    "channel_spec", "cross_entropy", "epoch_generator", "evaluate", "fit", "load_checkpoint",
    "load_model", "read_model_file", "resize_to_state_dict", "save_checkpoint", "save_model",
    "seed_everything", "train_model",
]
