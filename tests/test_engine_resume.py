"""Interrupted-and-resumed training equals the uninterrupted run bitwise on CPU."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

import train
from tests.helpers.toy_engine import SimulatedCrash, make_toy_dataset, toy_argv

LOSS_PART = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/\d+\] .*? (loss \S+ \(\S+\) acc \S+ \(\S+\) lr \S+)", re.M)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> str:
    return make_toy_dataset(str(tmp_path_factory.mktemp("toy")))


def _logged(out, from_epoch: int) -> list[tuple]:
    return [m for m in LOSS_PART.findall((out / "log.txt").read_text()) if int(m[0]) >= from_epoch]


@pytest.mark.parametrize("final_model", ["last_step", "best_val"])
def test_resume_from_epoch_2_equals_uninterrupted_4_epochs(toy_root, tmp_path, final_model):
    opts = {
        "OPTIM.MAX_EPOCH": 4,
        "TRAIN.CHECKPOINT_FREQ": 1,
        "TEST.FINAL_MODEL": final_model,
        "OPTIM.WARMUP_EPOCH": 1,
        "OPTIM.WARMUP_TYPE": "linear",
        "TRAIN.PRINT_FREQ": 1,
    }
    full = train.main(toy_argv(toy_root, str(tmp_path / "full"), opts=opts))

    out = tmp_path / "resumed"
    with pytest.raises(SimulatedCrash):
        train.main(toy_argv(toy_root, str(out), opts={**opts, "TRAINER.TOYNET.CRASH_AFTER_EPOCH": 2}))
    random.seed(123)  # disturb every generator: resume must restore them
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = train.main(toy_argv(toy_root, str(out), opts=opts))

    assert resumed.start_epoch == 2
    assert resumed.loss_history == full.loss_history[len(full.loss_history) // 2 :]  # epochs 3-4, exact floats
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert _logged(out, 3) == _logged(tmp_path / "full", 3) and len(_logged(out, 3)) == 8
    full_final = (tmp_path / "full" / "results.jsonl").read_text().splitlines()[-1]
    resumed_final = (out / "results.jsonl").read_text().splitlines()[-1]
    assert re.sub(r'"(output_dir|time)": "[^"]*"', "", full_final) == re.sub(
        r'"(output_dir|time)": "[^"]*"', "", resumed_final
    )
    if final_model == "best_val":
        assert resumed.best_result == full.best_result and resumed.best_epoch == full.best_epoch


def test_non_finite_loss_stops_with_epoch_and_batch(toy_root, tmp_path):
    argv = toy_argv(toy_root, str(tmp_path / "nan"), opts={"TRAINER.TOYNET.NAN_AT_STEP": 5})
    with pytest.raises(FloatingPointError, match=r"Loss is infinite or NaN! \(epoch 2/2, batch 2/4"):
        train.main(argv)
