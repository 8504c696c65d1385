import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATASETS = Path(os.environ.get("SLIMKIT_SHARED_DATASETS", SHARED / "datasets"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Latency tables and data caches written by tests go to a session folder, not the
    user's ~/.cache (an explicit SLIMKIT_CACHE is kept)."""
    if "SLIMKIT_CACHE" not in os.environ:
        os.environ["SLIMKIT_CACHE"] = str(tmp_path_factory.mktemp("slimkit-cache"))
    yield


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_datasets() -> Path:
    """The shared data folder; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def _torchrun(worker: Path, out: Path, nproc: int = 2, timeout: int = 180) -> Path:
    """Run `worker out` under torchrun with `nproc` CPU processes; fails the test on error."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--standalone", str(worker), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def torchrun():
    """`torchrun(worker, out, nproc=2, timeout=180)`: a multi-process CPU launch."""
    return _torchrun
