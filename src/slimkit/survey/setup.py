"""Budgets, data and baselines of `slimkit survey`.

A budget sets every size of the run (subsets, training steps, latency rounds, seeds) and is
part of every cell's config, so changing it never reuses a result of another budget.
Data: Fashion-MNIST and CIFAR-10 under ``--data-root`` (``fashion-mnist/`` and
``cifar10-jpeg.tar.gz``, as in ``../shared/datasets``) when present; else the embedded
mnist5k digits and seeded ``synthetic`` 3x32x32 images, and every table says so. The smoke
budget always uses the embedded/synthetic data (it is for tests).

Cost on a 2-core x86 host, one thread: smoke tens of seconds, quick 6-8 minutes; full about
4,800 s of cell compute, of which Table 7 is 2,050 s (36 minutes as three processes on a
2-core Xeon). Full's Table 7 starts from a trained VGG-16 file (30 MB, not in git); when it is
missing the run stops before any work with its rebuild commands (`REBUILD`: 6 minutes on a
GPU, about 70 on a 2-core CPU with bf16 AMX).

A baseline is a cell too: its trained weights go to ``OUT/cache/models/<key>.pt``
(`slimkit.train.save_model`, checksummed) and its accuracy to the cell file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimkit.errors import UserError
from slimkit.survey.cells import CellCache, cell_key

__all__ = ["BUDGETS", "Budget", "CODE_VERSION", "Survey", "default_checkpoints",
           "rebuild_command"]

# part of every cell's config: bump it when what a cell computes changes, so no stale result
# is read back
CODE_VERSION = 4


@dataclass(frozen=True)
class Budget:
    """Sizes of one run; ``*_train_n`` / ``test_n`` are subset sizes (0 = the whole split)."""

    name: str
    digits_train_n: int      # LeNet tasks
    cifar_train_n: int       # AlexNet / VGG-16 tasks
    test_n: int
    train_epochs: int        # baselines trained here (no checkpoint)
    train_max_steps: int     # 0 = no cap
    vgg_train_n: int
    ft_steps: int            # fine-tuning after each compression
    lenet_ft_steps: int
    dc_cycles: int           # Deep Compression on the LeNets: prune/retrain cycles (Han'15)
    kmeans_iter: int
    cp_iter: int
    cp_layers: tuple[str, ...]   # VGG-16 convs CP touches (fqn globs); ("*",) = all but first
    latency_rounds: int
    latency_budget_s: float
    kd_seeds: int
    kd_train_n: int
    kd_epochs: int
    teacher_epochs: int
    kd_test_n: int           # distillation's test subset (0 = the whole split: MLPs are cheap)
    batch_size: int = 128
    t7_arch: str = "vgg16"   # Table 7's network; the smoke budget uses AlexNet as a stand-in
    # False: a trained checkpoint missing on real data is an error before any work (training
    # it here at this budget would take hours), unless run_survey(train_missing=True)
    trains_missing: bool = True

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", digits_train_n=512, cifar_train_n=64, test_n=64,
                    train_epochs=1, train_max_steps=2, vgg_train_n=64, ft_steps=1,
                    lenet_ft_steps=2, dc_cycles=1, kmeans_iter=5, cp_iter=1,
                    cp_layers=("features.3",), latency_rounds=3, latency_budget_s=0.5,
                    kd_seeds=2, kd_train_n=512, kd_epochs=1, teacher_epochs=1, kd_test_n=64,
                    batch_size=32, t7_arch="alexnet"),
    "quick": Budget("quick", digits_train_n=6000, cifar_train_n=5000, test_n=1000,
                    train_epochs=3, train_max_steps=0, vgg_train_n=600, ft_steps=10,
                    lenet_ft_steps=60, dc_cycles=3, kmeans_iter=30, cp_iter=3,
                    cp_layers=("features.3", "features.7", "features.10"),
                    latency_rounds=9, latency_budget_s=4.0,
                    kd_seeds=5, kd_train_n=2000, kd_epochs=40, teacher_epochs=3, kd_test_n=0),
    "full": Budget("full", digits_train_n=0, cifar_train_n=0, test_n=0,
                   train_epochs=30, train_max_steps=0, vgg_train_n=0, ft_steps=400,
                   lenet_ft_steps=1000, dc_cycles=8, kmeans_iter=300, cp_iter=25, cp_layers=("*",),
                   latency_rounds=15, latency_budget_s=20.0,
                   kd_seeds=10, kd_train_n=2000, kd_epochs=50, teacher_epochs=10,
                   kd_test_n=0, trains_missing=False),
}


def default_checkpoints() -> Path | None:
    """``benchmarks/checkpoints`` of a source checkout (the trained LeNets, ResNet-20)."""
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "checkpoints"
    return path if path.is_dir() else None


# trained baselines of benchmarks/baselines.py, used when the survey runs on their data
CHECKPOINTS = {("lenet300", "fashion-mnist"): "lenet300_fashion.pt",
               ("lenet5", "fashion-mnist"): "lenet5_fashion.pt",
               ("alexnet", "cifar10"): "alexnet_cifar10.pt",
               ("vgg16", "cifar10"): "vgg16_cifar10.pt"}  # 30 MB, not in git: used when rebuilt

# baseline files not in git, with the commands that rebuild them: (command, what it cost;
# benchmarks/results/baselines*.md record each run)
REBUILD = {"vgg16_cifar10.pt": (
    ("python benchmarks/baselines.py --models vgg16 --device cuda --precision bf16 "
     "--batch-size 256 --lr-vgg16 0.1 --epochs-for-budget 400 --time-budget 480",
     "154 one-cycle epochs, about 6 minutes on one H200 GPU, 90.78%"),
    ("python benchmarks/baselines.py --models vgg16 --precision bf16 --train-threads 2 "
     "--epochs-vgg16 16",
     "16 one-cycle epochs on the CPU, 69 minutes on a 2-core Xeon with AMX bf16, 87.79%"),
)}


def rebuild_command(filename: str) -> str:
    """How to rebuild a baseline file of `CHECKPOINTS`: each command, its cost in brackets."""
    arch = next(a for (a, _), f in CHECKPOINTS.items() if f == filename)
    ways = REBUILD.get(filename, ((f"python benchmarks/baselines.py --models {arch}",
                                   "benchmarks/results/baselines.md records its run"),))
    return " or ".join(f"`{command}` ({note})" for command, note in ways)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Survey:
    """One run: budget, output folder, cache, data root, checkpoints, models built so far."""

    budget: Budget
    out: Path
    data_root: Path | None = None
    checkpoints: Path | None = None
    cache: CellCache = field(init=False)
    _loaders: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = CellCache(self.out / "cache")
        if self.data_root is not None:
            self.data_root = Path(self.data_root)
            if not self.data_root.is_dir():
                raise UserError(f"--data-root {self.data_root} is not a folder")

    # -- data -----------------------------------------------------------------------------
    def dataset(self, kind: str) -> dict[str, Any]:
        """The data a task uses: kind 'digits' (LeNets) or 'cifar' (AlexNet, VGG-16)."""
        root = self.data_root if self.budget.name != "smoke" else None
        if kind == "digits":
            if root is not None and (root / "fashion-mnist").is_dir():
                return {"name": "fashion-mnist", "root": str(root / "fashion-mnist"),
                        "paper": "MNIST", "differs": "Fashion-MNIST (harder than MNIST)"}
            return {"name": "mnist5k", "root": None, "paper": "MNIST",
                    "differs": "mnist5k: 5,000 embedded 8x8 digits upsampled to 28x28 "
                               "(4,000 train / 1,000 test), not MNIST"}
        if kind == "cifar":
            if root is not None and (root / "cifar10-jpeg.tar.gz").is_file():
                return {"name": "cifar10", "root": str(root / "cifar10-jpeg.tar.gz"),
                        "paper": "CIFAR-10", "differs": "CIFAR-10 (JPEG copy)"}
            return {"name": "synthetic", "root": None, "paper": "CIFAR-10",
                    "differs": "synthetic seeded 3x32x32 images (class prototypes + noise), "
                               "NOT CIFAR-10: accuracies say nothing about CIFAR-10"}
        raise ValueError(f"unknown data kind {kind!r}")

    def split(self, ds: dict[str, Any], split: str, n: int, seed: int = 0):
        from slimkit import data

        key = (ds["name"], split, n, seed)
        if key not in self._loaders:
            kw: dict[str, Any] = {}
            if ds["name"] == "synthetic":
                kw = {"n": max(n, 64) if n else 2048, "seed": 0, "noise": 1.0}
            full = data.load(ds["name"], root=ds["root"], split=split, **kw)
            self._loaders[key] = data.subset(full, n, seed=seed) if n and n < len(full) \
                else full
        return self._loaders[key]

    def loaders(self, ds: dict[str, Any], train_n: int, *, batch_size: int | None = None):
        from slimkit import data

        train = self.split(ds, "train", train_n)
        test = self.split(ds, "test", self.budget.test_n)
        bs = min(batch_size or self.budget.batch_size, self.budget.batch_size)
        return (data.loader(train, batch_size=bs, train=True, seed=0),
                data.loader(test, batch_size=256))

    # -- baselines ------------------------------------------------------------------------
    def baseline(self, arch: str, kind: str, train_n: int, *, lr: float = 1e-3):
        """(trained model in eval mode, cell result) for ``arch`` on the ``kind`` data."""
        from slimkit import zoo
        from slimkit.train import evaluate, fit, load_model, save_model

        ds = self.dataset(kind)
        ckpt = self._checkpoint(arch, ds)
        b = self.budget
        config = self._baseline_config(arch, ds, train_n, ckpt, lr)
        model_path = self.out / "cache" / "models" / f"{cell_key(config)}.pt"
        cached = self.cache.get(config)
        if cached is not None:
            try:
                model = load_model(model_path).eval()
                self.cache.reused += 1
                self.cache.note_seconds(config, cached)
                return model, cached
            except (OSError, ValueError) as exc:
                import warnings

                warnings.warn(f"survey cache: baseline {model_path} refused ({exc}); "
                              "training it again", stacklevel=2)
        import time

        start = time.perf_counter()
        train_loader, test_loader = self.loaders(ds, train_n)
        if ckpt is not None:
            model = load_model(ckpt).eval()
            # the bytes name the baseline, so the cells built on it follow a rebuilt file
            origin = f"checkpoint benchmarks/checkpoints/{ckpt.name} (sha256 {config['checkpoint'][:12]})"
        else:
            import torch

            torch.manual_seed(0)
            model = zoo.create(arch, num_classes=10,
                               in_channels=zoo.input_shape(arch)[0])
            fit(model, train_loader, epochs=b.train_epochs, optimizer="adam", lr=lr,
                weight_decay=0.0, progress=False, seed=0,
                max_steps=b.train_max_steps or None)
            model.eval()
            steps = f", at most {b.train_max_steps} steps" if b.train_max_steps else ""
            origin = (f"trained here: {b.train_epochs} epoch(s){steps} on "
                      f"{len(train_loader.dataset)} images, Adam lr {lr}")
        acc = evaluate(model, test_loader)
        result = {"top1": acc["top1"], "top5": acc["top5"], "origin": origin,
                  "train_images": len(train_loader.dataset),
                  "test_images": len(test_loader.dataset),
                  "_compute_s": round(time.perf_counter() - start, 3)}
        model_path.parent.mkdir(parents=True, exist_ok=True)
        save_model(model_path, model, arch=arch)
        self.cache.put(config, result)
        self.cache.computed += 1
        self.cache.note_seconds(config, result)
        return model, result

    def _checkpoint(self, arch: str, ds: dict[str, Any]) -> Path | None:
        if self.checkpoints and (arch, ds["name"]) in CHECKPOINTS:
            path = Path(self.checkpoints) / CHECKPOINTS[arch, ds["name"]]
            return path if path.is_file() else None
        return None

    def _baseline_config(self, arch: str, ds: dict[str, Any], train_n: int,
                         ckpt: Path | None, lr: float) -> dict[str, Any]:
        b = self.budget
        return {"cell": "baseline", "code": CODE_VERSION, "arch": arch, "data": ds["name"],
                "train_n": train_n, "test_n": b.test_n, "epochs": b.train_epochs,
                "max_steps": b.train_max_steps, "lr": lr,
                "checkpoint": _sha256(ckpt) if ckpt else None}

    def missing_checkpoint(self, arch: str, kind: str, train_n: int, *,
                           lr: float = 1e-3) -> str | None:
        """The file name of the trained checkpoint `baseline` would start from, when it is
        absent and no baseline trained here instead is cached; else None."""
        ds = self.dataset(kind)
        if (arch, ds["name"]) not in CHECKPOINTS or self._checkpoint(arch, ds) is not None:
            return None
        if self.cache.path(self._baseline_config(arch, ds, train_n, None, lr)).is_file():
            return None
        return CHECKPOINTS[arch, ds["name"]]

    def cell_config(self, **kw: Any) -> dict[str, Any]:
        """A cell's config: its own keys plus the whole budget."""
        return {**kw, "code": CODE_VERSION, "budget": self.budget.to_dict()}


def env_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise UserError(f"--budget must be one of {', '.join(BUDGETS)}, got {name!r}")
    return BUDGETS[name]

