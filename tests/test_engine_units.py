"""Engine pieces that need no data: TrainerBase bookkeeping, resume-file choice, RNG capture, results lines."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from dassl.engine import TrainerBase
from dassl.engine.results_log import append_result_line, build_result_record, normalize_metrics
from dassl.engine.rng_state import capture_rng_state, restore_rng_state
from dassl.utils.checkpoint_files import find_resume_file


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), random.gauss(0, 1)


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = capture_rng_state()
    expected = _draws()
    path = tmp_path / "rng.pt"
    torch.save({"rng_state": state}, path)
    loaded = torch.load(path, weights_only=True)["rng_state"]
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert _draws() != expected
    restore_rng_state(loaded)
    assert _draws() == expected


def test_register_model_requires_base_init_and_unique_names():
    class Broken(TrainerBase):
        def __init__(self):  # forgets super().__init__()
            pass

    with pytest.raises(AttributeError, match="super"):
        Broken().register_model("model", nn.Linear(2, 2))

    t = TrainerBase()
    t.register_model("a", nn.Linear(2, 2))
    t.register_model("b", nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(AssertionError, match="duplicate"):
        t.register_model("a", nn.Linear(2, 2))
    assert t.get_model_names() == ["a", "b"]
    assert t.get_model_names("b") == ["b"]
    with pytest.raises(AssertionError, match="not registered"):
        t.get_model_names("c")
    with pytest.raises(KeyError, match="allowed"):
        t.set_model_mode("bogus")
    t.set_model_mode("eval")
    assert not t._models["a"].training


def test_get_current_lr_without_optimizer_is_none():
    from dassl.engine import SimpleTrainer

    t = TrainerBase()
    t.register_model("zs", nn.Linear(2, 2))  # a zero-shot model has no optimizer
    assert SimpleTrainer.get_current_lr(t) is None
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.125)
    t.register_model("learner", nn.Linear(2, 2), opt)
    assert SimpleTrainer.get_current_lr(t) == 0.125


def test_detect_anomaly_names_epoch_and_batch():
    t = TrainerBase()
    t.epoch, t.max_epoch, t.batch_idx, t.num_batches = 1, 5, 6, 10
    t.detect_anomaly(torch.tensor(1.5))
    with pytest.raises(FloatingPointError, match=r"Loss is infinite or NaN! \(epoch 2/5, batch 7/10"):
        t.detect_anomaly(torch.tensor(float("inf")))


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_find_resume_file_prefers_latest_epoch_over_pointer(tmp_path):
    d = tmp_path / "model"
    assert find_resume_file(str(d))[0] is None
    d.mkdir()
    assert find_resume_file(str(d))[0] is None  # empty folder: train from scratch
    _touch(d / "model-best.pth.tar")
    assert find_resume_file(str(d))[0] == str(d / "model-best.pth.tar")
    for n in (2, 10, 4):
        _touch(d / f"model.pth.tar-{n}")
    (d / "checkpoint").write_text("model-best.pth.tar\n")  # upstream pointer after a best save
    assert find_resume_file(str(d))[0] == str(d / "model.pth.tar-10")
    for n in (2, 10, 4):
        (d / f"model.pth.tar-{n}").unlink()
    _touch(d / "custom.pth")
    (d / "checkpoint").write_text("custom.pth\n")
    assert find_resume_file(str(d))[0] == str(d / "custom.pth")


def test_results_line_schema(tmp_path):
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.NAME, cfg.TRAINER.NAME, cfg.SEED, cfg.OUTPUT_DIR = "OxfordPets", "CoOp", 0, str(tmp_path)
    metrics = {"accuracy": torch.tensor(97.5), "error_rate": 2.5, "macro_f1": np.float64(96.0), "total": 40}
    assert normalize_metrics(metrics) == {"accuracy": 97.5, "error": 2.5, "macro_f1": 96.0, "total": 40}
    rec = build_result_record(cfg, split="test", classes="new", phase="final", epoch=3, metrics=metrics)
    path = tmp_path / "results.jsonl"
    append_result_line(str(path), rec)
    append_result_line(str(path), {**rec, "phase": "eval_only"})
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["phase"] for x in lines] == ["final", "eval_only"]
    first = lines[0]
    assert list(first) == [
        "event", "split", "classes", "phase", "epoch", "dataset", "trainer", "seed", "num_shots", "subsample",
        "modal", "metrics", "output_dir", "time",
    ]  # fmt: skip
    assert (first["event"], first["classes"], first["seed"], first["dataset"]) == ("eval", "new", 0, "OxfordPets")
    assert first["metrics"]["accuracy"] == 97.5


def _linear_trainer(seed: int = 0) -> tuple[TrainerBase, nn.Linear]:
    torch.manual_seed(seed)
    layer = nn.Linear(4, 2)
    t = TrainerBase()
    t.register_model("m", layer, torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9))
    return t, layer


def test_grad_scaler_step_equals_plain_step_and_skips_overflow():
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    plain, plain_layer = _linear_trainer()
    scaled, scaled_layer = _linear_trainer()
    scaled.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for _ in range(3):
        plain.model_backward_and_update(plain_layer(x).pow(2).mean())
        scaled.model_backward_and_update(scaled_layer(x).pow(2).mean())
    for a, b in zip(plain_layer.parameters(), scaled_layer.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # power-of-two scaling is undone exactly

    before = [p.detach().clone() for p in scaled_layer.parameters()]
    scaled.model_zero_grad()
    scaled.model_backward(scaled_layer(x).pow(2).mean())
    scaled_layer.weight.grad.view(-1)[0] = float("inf")  # as if the scaled gradients overflowed
    scaled.model_update()
    assert all(torch.equal(a, b) for a, b in zip(before, scaled_layer.parameters(), strict=True))
    assert scaled.grad_scaler.get_scale() == 2.0**9  # overflow halves the scale


def test_tensorboard_is_optional(monkeypatch, tmp_path, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    t = TrainerBase()
    with caplog.at_level("WARNING"):
        t.init_writer(str(tmp_path / "tb"))
    assert t._writer is None and "TensorBoard unavailable" in caplog.text
    t.write_scalar("train/loss", 1.0, 0)  # no-op
    t.close_writer()


def test_before_epoch_sets_distributed_sampler_epoch():
    from torch.utils.data import DataLoader, DistributedSampler

    from dassl.engine import SimpleTrainer

    data = list(range(8))
    t = TrainerBase()
    t.train_loader_x = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    t.train_loader_u = None
    t.epoch = 3
    SimpleTrainer.before_epoch(t)
    assert t.train_loader_x.sampler.epoch == 3
    order_3 = list(t.train_loader_x.sampler)
    t.epoch = 4
    SimpleTrainer.before_epoch(t)
    assert list(t.train_loader_x.sampler) != order_3  # a new shuffle each epoch


def test_reporting_reads_the_results_file_the_engine_writes():
    from dassl.engine.results_log import RESULTS_FILE
    from reporting.runs import RESULTS_FILE as READ_BY_REPORTING

    assert READ_BY_REPORTING == RESULTS_FILE == "results.jsonl"
