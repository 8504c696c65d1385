"""Read the official CIFAR python batches without unpickling arbitrary objects.

The batches are pickled dicts whose `data` field is a numpy array, so exactly the globals
numpy needs to rebuild an ndarray are allowed (`_reconstruct`, `ndarray`, `dtype`, under both
`numpy.core` and `numpy._core`); every other global - `os.system`, `builtins.eval`, any class -
is refused before it is looked up.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside ALLOWED_GLOBALS."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(f"refused global {module}.{name}")
        return super().find_class(module, name)


def safe_loads(data: bytes) -> Any:
    """Unpickle `data` allowing only plain containers, scalars, strings, bytes and ndarrays.

    Python 2 pickles (as CIFAR's are) load with `encoding="bytes"`, so their str keys come
    back as bytes.
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
