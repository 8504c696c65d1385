"""`slimkit --help` and `slimkit <command> --help` answer fast and never import torch."""

import subprocess
import sys
import time

import pytest

from slimkit.cli._names import PRUNE_METHODS, PRUNE_TARGETS, QUANT_OBSERVERS, QUANT_PRESETS
from slimkit.cli.main import COMMANDS, SUMMARIES

# Runs the CLI's help inside one interpreter and reports which heavy modules it imported.
_PROBE = """
import sys
from slimkit.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "numpy", "onnxruntime", "onnx") if m in sys.modules))
"""


def _help(*argv: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv, "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return time.perf_counter() - start, out


@pytest.mark.parametrize("argv", [(), ("prune",), ("quantize",), ("demo",), ("compare",)])
def test_help_is_fast_and_imports_no_torch(argv):
    seconds, out = _help(*argv)
    assert "usage: slimkit" in out
    assert out.strip().splitlines()[-1] == "HEAVY []"
    assert seconds < 2.0, f"slimkit {' '.join(argv)} --help took {seconds:.2f} s"


# Their flags are generated from the method config classes, which live beside torch code.
GENERATED = ("lowrank", "distill", "compress")


def test_every_command_help_imports_no_torch():
    probe = ("import sys\nfrom slimkit.cli.main import main, COMMANDS\n"
             f"for c in [c for c in COMMANDS if c not in {GENERATED!r}]:\n"
             "    try:\n        main([c, '--help'])\n    except SystemExit:\n        pass\n"
             "print('TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "TORCH False"


def test_python_m_slimkit_help_exits_zero():
    done = subprocess.run([sys.executable, "-m", "slimkit", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    words = " ".join(done.stdout.split())
    for name in COMMANDS:
        assert f"{name} {SUMMARIES[name]}" in words


def test_help_names_match_the_registries():
    from slimkit.pruning import METHODS, TARGETS
    from slimkit.quant.observers import OBSERVERS
    from slimkit.quant.ptq import PRESETS

    assert PRUNE_METHODS.names() == METHODS.names()
    assert PRUNE_TARGETS == TARGETS
    assert QUANT_OBSERVERS.names() == OBSERVERS.names()
    assert QUANT_PRESETS.names() == PRESETS.names()
