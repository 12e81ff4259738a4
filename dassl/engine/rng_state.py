"""Capture and restore every random-number generator a training run consumes.

Stored in checkpoints so that a run interrupted after epoch k and resumed from ``model.pth.tar-k`` draws the
same shuffles, augmentations and dropout masks as the uninterrupted run (bitwise on CPU). The state is kept
in plain containers and tensors so checkpoints still load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """Python ``random``, NumPy global, torch CPU and (when present) every CUDA generator."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored only when the device count matches."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run the block without consuming any generator of the run: every state is restored afterwards.

    For optional work whose random draws must not shift the rest of the run (an extra teacher's throwaway
    initialisation would otherwise change the student's initial prompts and every later draw).
    """
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)
