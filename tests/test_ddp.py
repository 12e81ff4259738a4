"""Two-process CPU (gloo) DDP run equals the one-process run on the same global batches."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

import train
from tests.helpers.toy_engine import make_toy_dataset, toy_argv
from tests.helpers.trainer_runs import free_port

# No dropout/augmentation and sequential sampling: every step sees the same global batch in both runs.
DDP_OPTS = {
    "DATALOADER.TRAIN_X.SAMPLER": "SequentialSampler",
    "INPUT.TRANSFORMS": "['normalize']",
    "TRAINER.TOYNET.DROPOUT": 0.0,
    "OPTIM.MAX_EPOCH": 2,
    "OPTIM.LR": 0.1,
    "TRAINER.TOYNET.EXTRA_HEAD": True,  # a trainable registered module outside self.model (explicit grad sync)
}


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    trainer = train.main(toy_argv(root, out, opts=DDP_OPTS))
    assert trainer.distributed and type(trainer.model).__name__ == "TransparentDDP"
    assert trainer.train_loader_x.batch_size == 2  # global batch 4 split over 2 ranks
    assert trainer.model.net is trainer._models["model"].net  # attribute reads reach the wrapped module


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    root = make_toy_dataset(str(tmp_path / "toy"))
    out_ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, free_port(), root, str(out_ddp)), nprocs=2, join=True)

    out_one = tmp_path / "one"
    single = train.main(toy_argv(root, str(out_one), opts=DDP_OPTS))

    for name in ("model", "extra"):
        ddp_state = torch.load(out_ddp / name / "model.pth.tar-2", weights_only=True)["state_dict"]
        single_state = single._models[name].state_dict()
        assert set(ddp_state) == set(single_state)  # saved unwrapped: no 'module.' prefix
        for key, value in single_state.items():
            torch.testing.assert_close(ddp_state[key], value, rtol=1e-5, atol=1e-6)

    # only rank 0 wrote files; the evaluator gathered all 12 test images from both ranks
    log = (out_ddp / "log.txt").read_text()
    assert log.count("Finish training") == 1
    (ddp_final,) = [json.loads(x) for x in (out_ddp / "results.jsonl").read_text().splitlines()]
    (one_final,) = [json.loads(x) for x in (out_one / "results.jsonl").read_text().splitlines()]
    assert ddp_final["metrics"]["total"] == 12
    assert ddp_final["metrics"]["accuracy"] == one_final["metrics"]["accuracy"]
