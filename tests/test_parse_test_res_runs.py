"""parse_test_res.py on trees written by real tiny train.py runs: PromptKD base2novel (one run reports base and
novel) and PromptSRC (train_base run + eval-only test_new run), folder names as the scripts write them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from reporting.cli import main
from reporting.logparse import parse_log_file
from tests.helpers.trainer_runs import make_tiny_setup, run_train

KD_CFG = "vit_b16_c2_ep20_batch8_4+4ctx"
SRC_CFG = "vit_b16_c2_ep20_batch4_4+4ctx"
SEEDS = (1, 2)
# ~8 s of tiny training in the module fixture on an idle 2-core machine, more under load
pytestmark = pytest.mark.slow


def _kd_dir(root: Path, seed: int) -> Path:
    return root / "base2new" / "train_base" / "caltech101" / "shots_0" / "PromptKD" / KD_CFG / f"seed_{seed}"


def _src_dir(root: Path, split: str, seed: int) -> Path:
    return root / "base2new" / split / "caltech101" / "shots_2" / "PromptSRC" / SRC_CFG / f"seed{seed}"


def _kd_args(tiny) -> list[str]:
    """Zero-shot tiny-CLIP teacher (no teacher checkpoint needed), prompt depth 1 for the 2-layer towers."""
    return ["DATASET.NUM_SHOTS", "0", "TRAINER.MODAL", "base2novel", "TRAINER.PROMPTKD.TEACHER_CKPT", "none",
            "TRAINER.PROMPTKD.TEACHER_CLIP", str(tiny.clip_file), "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "1",
            "TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT", "1", "TRAINER.PROMPTKD.PREC", "fp32"]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two seeds of each method, one epoch each, tiny CLIP, 32 px Caltech101 layout (4 classes x 4 images)."""
    tiny = make_tiny_setup(tmp_path_factory.mktemp("parse_runs"), classes=4, per_class=4)
    root = tiny.tmp / "output"
    kd = _kd_args(tiny)
    src = ["DATASET.NUM_SHOTS", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "1",
           "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "1", "TRAINER.PROMPTSRC.PREC", "fp32"]  # fmt: skip
    for seed in SEEDS:
        run_train(tiny.args("PromptKD", f"PromptKD/{KD_CFG}", _kd_dir(root, seed), *kd, seed=seed, epochs=1))
        train_dir, test_dir = _src_dir(root, "train_base", seed), _src_dir(root, "test_new", seed)
        base_args = [*src, "DATASET.SUBSAMPLE_CLASSES", "base"]
        run_train(tiny.args("PromptSRC", f"PromptSRC/{SRC_CFG}", train_dir, *base_args, seed=seed, epochs=1))
        new_args = [*src, "DATASET.SUBSAMPLE_CLASSES", "new"]
        run_train(tiny.args("PromptSRC", f"PromptSRC/{SRC_CFG}", test_dir, *new_args, seed=seed, epochs=None,
                            eval_from=train_dir, load_epoch=1))  # fmt: skip
    return tiny


@pytest.fixture
def tree(world) -> Path:
    return world.tmp / "output"


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def _finals(run_dir: Path) -> dict[str, float]:
    """classes -> accuracy of the last final / eval-only records, read straight from results.jsonl."""
    out = {}
    for record in _records(run_dir):
        if record["event"] == "eval" and record["phase"] in ("final", "eval_only"):
            out[record["classes"]] = record["metrics"]["accuracy"]
    return out


def _expected(root: Path) -> dict[str, list[tuple[float, float]]]:
    kd = [_finals(_kd_dir(root, s)) for s in SEEDS]
    src = [
        (_finals(_src_dir(root, "train_base", s))["base"], _finals(_src_dir(root, "test_new", s))["new"]) for s in SEEDS
    ]
    return {"PromptKD": [(f["base"], f["new"]) for f in kd], "PromptSRC": src}


def _tables(capsys, root: Path, *extra: str) -> dict[str, dict]:
    capsys.readouterr()  # drop what the training runs printed
    assert main([str(root), "--format", "json", *extra]) == 0
    return {t["trainer"]: t for t in json.loads(capsys.readouterr().out)["tables"]}


def _hm(b: float, n: float) -> float:
    return 0.0 if b + n == 0 else 2 * b * n / (b + n)


def test_real_runs_are_paired_per_dataset_and_seed(tree, capsys):
    tables = _tables(capsys, tree)
    assert set(tables) == {"PromptKD", "PromptSRC"}
    for trainer, pairs in _expected(tree).items():
        table = tables[trainer]
        assert table["kind"] == "base2novel" and table["problems"] == []
        (row,) = table["rows"]
        assert row["label"] == "Caltech101" and row["n"] == 2
        assert row["cells"]["base"]["values"] == [b for b, _ in pairs]
        assert row["cells"]["novel"]["values"] == [n for _, n in pairs]
        assert row["cells"]["hm"]["mean"] == pytest.approx(sum(_hm(b, n) for b, n in pairs) / 2)
    assert tables["PromptKD"]["shots"] == 0 and tables["PromptSRC"]["shots"] == 2


def test_text_logs_alone_give_the_same_table(tree, capsys, tmp_path):
    logs_only = tmp_path / "logs_only"
    shutil.copytree(tree, logs_only, ignore=shutil.ignore_patterns("results.jsonl", "*.pth.tar*", "tensorboard"))
    tables = _tables(capsys, logs_only)
    for trainer, pairs in _expected(tree).items():
        (row,) = tables[trainer]["rows"]
        # log lines carry one decimal
        assert row["cells"]["base"]["values"] == [round(b, 1) for b, _ in pairs]
        assert row["cells"]["novel"]["values"] == [round(n, 1) for _, n in pairs]


def test_upstream_mode_on_real_seed_folders(tree, capsys):
    kd_exp = _kd_dir(tree, 1).parent
    capsys.readouterr()
    assert main([str(kd_exp), "--table", "upstream"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, seed in zip(lines[2:4], SEEDS, strict=True):
        novel = _finals(_kd_dir(tree, seed))["new"]  # the last accuracy after "Finish training"
        assert line == f"file: {_kd_dir(tree, seed)}/log.txt. accuracy: {novel:.1f}%. "
    test_new = _src_dir(tree, "test_new", 1).parent
    assert main([str(test_new), "--test-log"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[2]
        == f"file: {_src_dir(tree, 'test_new', 1)}/log.txt. accuracy: {_expected(tree)['PromptSRC'][0][1]:.1f}%. "
    )


def test_missing_test_new_run_is_reported(tree, capsys, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tree, partial, ignore=shutil.ignore_patterns("*.pth.tar*", "tensorboard"))
    shutil.rmtree(_src_dir(partial, "test_new", 2))
    tables = _tables(capsys, partial)
    src = tables["PromptSRC"]
    assert src["rows"][0]["n"] == 1 and src["rows"][0]["partial"]
    (problem,) = src["problems"]
    assert problem["description"].startswith("Caltech101, seed 2: novel result: not reported by ")
    assert main([str(partial), "--strict"]) == 1
    capsys.readouterr()


def test_rerun_appended_to_the_same_folder(world, tree, capsys, tmp_path):
    """Re-running a finished PromptKD run with more epochs resumes in place and appends to log.txt/results.jsonl."""
    again = tmp_path / "again"
    shutil.copytree(tree, again)
    run_dir = _kd_dir(again, 1)
    run_train(world.args("PromptKD", f"PromptKD/{KD_CFG}", run_dir, *_kd_args(world), seed=1, epochs=2))
    assert len(parse_log_file(os.path.join(run_dir, "log.txt"))) == 2
    assert len([r for r in _records(run_dir) if r["event"] == "summary"]) == 2
    latest = _finals(run_dir)  # the re-run's records come last
    row = _tables(capsys, again)["PromptKD"]["rows"][0]
    assert row["cells"]["base"]["values"][0] == latest["base"] and row["cells"]["novel"]["values"][0] == latest["new"]
