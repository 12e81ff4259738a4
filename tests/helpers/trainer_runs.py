"""The one harness for trainer runs in tests: a tiny OpenAI-layout CLIP file, a 32 px Caltech101-layout dataset,
and ``train.py`` command lines that use the real YAMLs with only size, epochs, paths and workers overridden.

Two ways to get the tiny world: ``make_tiny_setup(tmp_path)`` per test (ZS-CLIP, CoOp, CoCoOp, MaPLe), or the
session fixture ``trainer_env`` (tests/conftest.py; student + teacher CLIP files) with :func:`run_env_train`
(IVLP, PromptSRC, PromptKD).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.helpers.dataset_fixtures import DatasetFixture, make_caltech101
from tests.helpers.tiny_clip import save_tiny_clip

ROOT = Path(__file__).resolve().parents[2]

# Student-like (ViT, width 64, embed 32) and teacher-like (embed/text width 48) tiny CLIPs, both 32 px.
STUDENT_CLIP = {"seed": 0}
# 3 layers: deep prompts at blocks 1 and 2, so a checkpoint with a gap in them can be built.
TEACHER_CLIP = {"seed": 1, "embed_dim": 48, "transformer_width": 48, "transformer_heads": 3}
TEACHER_CLIP.update(vision_layers=3, transformer_layers=3)
NUM_CLASSES = 5  # odd: base = 3, new = 2


@dataclass
class TinySetup:
    """Paths of one test's tiny world."""

    data: Path
    clip_file: Path
    cache: Path
    classnames: list[str]
    tmp: Path
    fixture: DatasetFixture

    def args(
        self,
        trainer: str,
        config: str,
        output: Path,
        *opts: str,
        seed: int = 1,
        epochs: int | None = 2,
        eval_from: Path | None = None,
        load_epoch: int | None = None,
        eval_only: bool = False,
    ) -> list[str]:
        """``train.py`` arguments for ``trainer`` with ``configs/trainers/<config>.yaml``; ``eval_from`` adds
        ``--eval-only --model-dir eval_from [--load-epoch load_epoch]``, ``eval_only`` just ``--eval-only``."""
        overrides = [
            "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0",
            "MODEL.BACKBONE.NAME", str(self.clip_file),
            "DATASET.CACHE_DIR", str(self.cache),
        ]  # fmt: skip
        if epochs is not None:
            overrides += ["OPTIM.MAX_EPOCH", str(epochs)]
        return [
            "--root", str(self.data),
            "--seed", str(seed),
            "--trainer", trainer,
            "--dataset-config-file", str(ROOT / "configs/datasets/caltech101.yaml"),
            "--config-file", str(ROOT / f"configs/trainers/{config}.yaml"),
            "--output-dir", str(output),
            *(["--eval-only"] if eval_only or eval_from is not None else []),
            *(["--model-dir", str(eval_from)] if eval_from is not None else []),
            *(["--load-epoch", str(load_epoch)] if load_epoch is not None else []),
            *overrides,
            *opts,
        ]  # fmt: skip


def make_tiny_setup(tmp_path: Path, classes: int = 5, per_class: int = 6, **clip_kw) -> TinySetup:
    """Dataset fixture + tiny CLIP (``state_dict`` file; extra ``clip_kw`` go to ``save_tiny_clip``)."""
    fixture = make_caltech101(tmp_path / "data", num_classes=classes, per_class=per_class, size=32)
    clip_file = tmp_path / "tiny-clip.pt"
    save_tiny_clip(clip_file, fmt="state_dict", **clip_kw)
    return TinySetup(tmp_path / "data", clip_file, tmp_path / "cache", list(fixture.classnames), tmp_path, fixture)


def run_train(args: list[str]):
    """``train.main(args)`` in-process; returns the trainer."""
    import train

    return train.main(args)


def run_env_train(env: dict[str, str], trainer: str, config: str, out: Path | str, *opts: str, flags: tuple = ()):
    """``train.main`` on the ``trainer_env`` world with ``configs/trainers/<trainer>/<config>.yaml``."""
    argv = [
        "--root", env["root"], "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", str(ROOT / "configs/datasets/caltech101.yaml"),
        "--config-file", str(ROOT / f"configs/trainers/{trainer}/{config}.yaml"), "--output-dir", str(out), *flags,
        "MODEL.BACKBONE.NAME", env["student"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATASET.CACHE_DIR", env["cache"], *opts,
    ]  # fmt: skip
    return run_train(argv)


def distil_zero_shot(env: dict[str, str], out: Path, losses: list[float], *opts: str, flags: tuple = ()):
    """A 2-epoch PromptKD run (bf16, batch 4) with a zero-shot teacher on the ``trainer_env`` world.

    ``losses`` is the ``kd_step_losses`` fixture's list. Returns (this run's step losses, final metrics, trainer).
    """
    start = len(losses)
    kd = ("DATASET.NUM_SHOTS", "0", "TRAINER.PROMPTKD.TEACHER_CLIP", env["teacher"], "TRAINER.PROMPTKD.TEACHER_CKPT",
          "none", "TRAINER.PROMPTKD.PREC", "bf16", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")  # fmt: skip
    trainer = run_env_train(env, "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx", out, *kd, *opts, flags=flags)
    final = [r for r in read_results(out) if r.get("event") == "eval" and r.get("phase") == "final"]
    return list(losses[start:]), [r["metrics"] for r in final], trainer


def free_port() -> int:
    """A free localhost TCP port for a test's torch.distributed rendezvous (MASTER_PORT)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_results(output: Path | str) -> list[dict]:
    """The records of ``output/results.jsonl``."""
    path = Path(output) / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def last_accuracy(output: Path, phase: str) -> float:
    records = [r for r in read_results(output) if r.get("event") == "eval" and r.get("phase") == phase]
    assert records, f"no {phase} evaluation in {output / 'results.jsonl'}"
    return records[-1]["metrics"]["accuracy"]


def load_saved_state(folder: Path) -> dict[str, torch.Tensor]:
    """``state_dict`` of the newest checkpoint named by the ``checkpoint`` pointer in ``folder``."""
    from dassl.utils import load_checkpoint

    name = (folder / "checkpoint").read_text().strip()
    return load_checkpoint(str(folder / name))["state_dict"]


def gradient_report(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    """(trainable names with a non-zero gradient, frozen names with any gradient)."""
    params = list(model.named_parameters())
    with_grad = {n for n, p in params if p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0}
    frozen_grad = {n for n, p in params if not p.requires_grad and p.grad is not None}
    return with_grad, frozen_grad
