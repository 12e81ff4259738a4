"""train.py end to end on the toy trainer/dataset (docs/design.md "Results as JSON lines")."""

from __future__ import annotations

import json
import re

import pytest
import torch
from yacs.config import CfgNode

import train
from tests.helpers.toy_engine import make_toy_dataset, toy_argv

ITER_LINE = re.compile(
    r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
    r"loss (\d+\.\d{4}) \((\d+\.\d{4})\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e[+-]\d{2} eta \d+:\d{2}:\d{2}$",
    re.M,
)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> str:
    return make_toy_dataset(str(tmp_path_factory.mktemp("toy")))


def _results(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_two_epoch_run_then_eval_only_then_rerun(toy_root, tmp_path):
    out = tmp_path / "run"
    trainer = train.main(toy_argv(toy_root, str(out), seed=0))
    log = (out / "log.txt").read_text()

    iters = ITER_LINE.findall(log)
    # 18 train images, batch 4, drop_last -> 4 batches; PRINT_FREQ 2 -> batches 2 and 4 of each epoch
    assert [(e, b) for e, _, b, _, _, _ in iters] == [("1", "2"), ("1", "4"), ("2", "2"), ("2", "4")]
    assert all(n == "2" and nb == "4" for _, n, _, nb, _, _ in iters)
    assert "No checkpoint found, train from scratch" in log
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    assert "=> result" in log and "* total: 12" in log
    assert re.search(r"^Elapsed: \d+:\d{2}:\d{2}$", log, re.M)
    assert log.index("Finish training") < log.index("* accuracy:") < log.index("Elapsed:")
    assert "fp32 (no autocast) on cpu" in log  # precision is logged
    assert "Model selection: last_step" in log

    model_dir = out / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["checkpoint", "model.pth.tar-2"]  # CHECKPOINT_FREQ 0
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-2\n"
    ckpt = torch.load(model_dir / "model.pth.tar-2", weights_only=True)
    assert {"state_dict", "epoch", "optimizer", "scheduler", "val_result", "best_result", "rng_state"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["val_result"] is None
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(ckpt["state_dict"][key], value, rtol=0, atol=0)
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())

    cfg = CfgNode.load_cfg((out / "config.yaml").read_text())
    assert cfg.SEED == 0 and cfg.TRAINER.NAME == "ToyNet" and cfg.OPTIM.MAX_EPOCH == 2  # seed 0 honoured

    (final,) = _results(out)
    assert (final["event"], final["split"], final["phase"], final["epoch"]) == ("eval", "test", "final", 2)
    assert (final["trainer"], final["dataset"], final["seed"], final["classes"]) == ("ToyNet", "ToyColors", 0, "all")
    metrics = final["metrics"]
    assert metrics["total"] == 12 and 0 <= metrics["correct"] <= 12
    assert metrics["accuracy"] == pytest.approx(100 * metrics["correct"] / 12)
    assert metrics["error"] == pytest.approx(100 - metrics["accuracy"])
    assert f"* accuracy: {metrics['accuracy']:.1f}%" in log

    # --eval-only reproduces the final accuracy from the saved epoch file
    out_eval = tmp_path / "eval"
    train.main(toy_argv(toy_root, str(out_eval), "--eval-only", "--model-dir", str(out), "--load-epoch", "2", seed=0))
    eval_log = (out_eval / "log.txt").read_text()
    assert f"Load {model_dir / 'model.pth.tar-2'} to model (epoch=2, val_result=n/a)" in eval_log
    assert "Finish training" not in eval_log
    (ev,) = _results(out_eval)
    assert (ev["phase"], ev["epoch"], ev["metrics"]) == ("eval_only", 2, metrics)

    # re-running in the same OUTPUT_DIR auto-resumes (nothing left to train) and appends to log.txt
    train.main(toy_argv(toy_root, str(out), seed=0))
    log2 = (out / "log.txt").read_text()
    assert log2.startswith(log)
    tail = log2[len(log) :]
    assert "Found checkpoint at" in tail and "Previous epoch: 2" in tail
    assert not ITER_LINE.search(tail) and "Finish training" in tail
    assert [r["phase"] for r in _results(out)] == ["final", "final"]
    assert _results(out)[1]["metrics"] == metrics
    assert not list(out.glob("log.txt-*"))


def test_best_val_selection_and_missing_pointer(toy_root, tmp_path):
    out = tmp_path / "bv"
    opts = {"TEST.FINAL_MODEL": "best_val", "OPTIM.MAX_EPOCH": 3, "TRAIN.CHECKPOINT_FREQ": 1, "OPTIM.LR": 0.2}
    train.main(toy_argv(toy_root, str(out), opts=opts))
    records = _results(out)
    per_epoch = [r for r in records if r["phase"] == "epoch"]
    assert [(r["split"], r["epoch"]) for r in per_epoch] == [("val", 1), ("val", 2), ("val", 3)]
    assert all(r["metrics"]["total"] == 6 for r in per_epoch)  # 2 val images x 3 classes
    accs = [r["metrics"]["accuracy"] for r in per_epoch]
    best_epoch = accs.index(max(accs)) + 1  # strict '>' keeps the earliest of equal results

    model_dir = out / "model"
    best = torch.load(model_dir / "model-best.pth.tar", weights_only=True)
    assert best["epoch"] == best_epoch and best["val_result"] == pytest.approx(max(accs))
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-3\n"  # best saves do not move the pointer
    last = torch.load(model_dir / "model.pth.tar-3", weights_only=True)
    assert last["best_result"] == pytest.approx(max(accs)) and last["best_epoch"] == best_epoch

    final = records[-1]
    assert (final["phase"], final["split"], final["epoch"]) == ("final", "test", best_epoch)
    log = (out / "log.txt").read_text()
    assert "Deploy the model with the best val performance" in log
    assert "Model selection: best_val, selected on the *val* split" in log

    # a model folder without the 'checkpoint' pointer still resumes, from the latest epoch file
    (model_dir / "checkpoint").unlink()
    train.main(toy_argv(toy_root, str(out), opts=opts))
    tail = (out / "log.txt").read_text()[len(log) :]
    assert f'Loading checkpoint from "{model_dir / "model.pth.tar-3"}"' in tail
    assert "Previous epoch: 3" in tail


def test_resume_flag_sets_resume_dir_and_no_train(toy_root, tmp_path):
    src = tmp_path / "src"
    train.main(toy_argv(toy_root, str(src), opts={"OPTIM.MAX_EPOCH": 1}))
    out = tmp_path / "dst"
    trainer = train.main(toy_argv(toy_root, str(out), "--resume", str(src), opts={"OPTIM.MAX_EPOCH": 1}))
    assert trainer.cfg.RESUME == str(src)
    log = (out / "log.txt").read_text()
    assert f"Found checkpoint at {src} (will resume training)" in log and "Previous epoch: 1" in log

    none = tmp_path / "none"
    trainer = train.main(toy_argv(toy_root, str(none), "--no-train"))
    assert not (none / "model").exists() and not (none / "results.jsonl").exists()
    assert (none / "config.yaml").exists()


def test_unknown_trainer_suggests_closest(toy_root, tmp_path):
    argv = toy_argv(toy_root, str(tmp_path / "x"))
    argv[argv.index("ToyNet")] = "ToyNett"
    with pytest.raises(ValueError, match=r"ToyNet"):
        train.main(argv)


def test_precision_bf16_and_fp16_on_cpu(toy_root, tmp_path):
    t = train.main(toy_argv(toy_root, str(tmp_path / "bf16"), opts={"TRAINER.TOYNET.PREC": "bf16"}))
    assert t.output_dtypes == {torch.bfloat16}
    assert "bf16 autocast on cpu" in (tmp_path / "bf16" / "log.txt").read_text()
    assert all(p.dtype == torch.float32 for p in t.model.parameters())

    t = train.main(toy_argv(toy_root, str(tmp_path / "fp16"), opts={"TRAINER.TOYNET.PREC": "fp16"}))
    assert t.output_dtypes == {torch.float32} and t.grad_scaler is None
    assert "fp16 requested on cpu: running fp32 math" in (tmp_path / "fp16" / "log.txt").read_text()

    with pytest.raises(ValueError, match=r"valid values are \['fp16', 'fp32', 'amp', 'bf16'\]"):
        train.main(toy_argv(toy_root, str(tmp_path / "bad"), opts={"TRAINER.TOYNET.PREC": "half"}))
