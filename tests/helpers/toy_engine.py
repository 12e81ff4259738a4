"""A toy trainer and a toy image dataset for the engine tests (tiny, CPU, deterministic).

``make_toy_dataset(root)`` writes ``root/{train,val,test}/class_{k}/*.png`` (16x16 RGB images whose mean colour
depends on the class, plus noise), ``ToyColors`` reads that layout, and ``ToyNet`` is a ``TrainerX`` with a
two-layer MLP (dropout included, so the RNG state matters for resume tests). Importing this module registers
both, plus the config node ``TRAINER.TOYNET`` (``PREC``, ``NAN_AT_STEP``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from yacs.config import CfgNode as CN

from dassl.config import register_cfg_defaults
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX, TrainerXU
from dassl.optim import build_lr_scheduler, build_optimizer

TOY_CLASSES = ("red", "green", "blue")
SPLITS = {"train": 6, "val": 2, "test": 4}


def make_toy_dataset(root: str, per_split: dict[str, int] | None = None, size: int = 16, seed: int = 0) -> str:
    """Write the toy image folders under ``root`` (idempotent) and return ``root``."""
    per_split = per_split or SPLITS
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for label, name in enumerate(TOY_CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                base = np.full((size, size, 3), 60.0)
                base[..., label] = 90.0
                pixels = np.clip(base + rng.normal(0, 70, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}.png"))
    return root


def _read_split(root: str, split: str) -> list[Datum]:
    items = []
    for label, name in enumerate(TOY_CLASSES):
        folder = os.path.join(root, split, name)
        if not os.path.isdir(folder):
            continue
        for fname in sorted(os.listdir(folder)):
            items.append(Datum(impath=os.path.join(folder, fname), label=label, classname=name))
    return items


@DATASET_REGISTRY.register()
class ToyColors(DatasetBase):
    """Reader of the layout written by :func:`make_toy_dataset` (``val`` is optional)."""

    def __init__(self, cfg) -> None:
        root = cfg.DATASET.ROOT
        train = _read_split(root, "train")
        val = _read_split(root, "val")
        test = _read_split(root, "test")
        super().__init__(train_x=train, val=val or None, test=test)


@register_cfg_defaults
def _add_toynet_defaults(cfg) -> None:
    cfg.TRAINER.TOYNET = CN()
    cfg.TRAINER.TOYNET.PREC = "fp32"
    cfg.TRAINER.TOYNET.NAN_AT_STEP = -1  # 0-based global step whose loss is made NaN (-1: never)
    cfg.TRAINER.TOYNET.HIDDEN = 32
    cfg.TRAINER.TOYNET.DROPOUT = 0.2
    cfg.TRAINER.TOYNET.EXTRA_HEAD = False  # also train a registered module that is not inside self.model
    cfg.TRAINER.TOYNET.CRASH_AFTER_EPOCH = -1  # raise SimulatedCrash after this 1-based epoch (-1: never)


class SimulatedCrash(RuntimeError):
    """Raised by ToyNet to interrupt a run after a given epoch (its checkpoint is already written)."""


class ToyMLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@TRAINER_REGISTRY.register()
class ToyNet(TrainerX):
    """Cross-entropy on a tiny MLP; records the autocast output dtype and every reported loss."""

    def build_model(self) -> None:
        cfg = self.cfg
        h, w = cfg.INPUT.SIZE
        toy = cfg.TRAINER.TOYNET
        self.model = ToyMLP(3 * h * w, toy.HIDDEN, self.num_classes, toy.DROPOUT).to(self.device)
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
        self.extra = None
        if toy.EXTRA_HEAD:
            self.extra = nn.Linear(self.num_classes, self.num_classes).to(self.device)
            extra_optim = build_optimizer(self.extra, cfg.OPTIM)
            self.register_model("extra", self.extra, extra_optim, build_lr_scheduler(extra_optim, cfg.OPTIM))
        self.loss_history: list[float] = []
        self.output_dtypes: set[torch.dtype] = set()

    def model_inference(self, input):
        output = self.model(input)
        return self.extra(output) if self.extra is not None else output

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.epoch + 1 == self.cfg.TRAINER.TOYNET.CRASH_AFTER_EPOCH:
            raise SimulatedCrash(f"simulated crash after epoch {self.epoch + 1}")

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            if self.extra is not None:
                output = self.extra(output)
            loss = F.cross_entropy(output, label)
        self.output_dtypes.add(output.dtype)
        step = self.epoch * self.num_batches + self.batch_idx
        if step == self.cfg.TRAINER.TOYNET.NAN_AT_STEP:
            loss = loss * float("nan")
        self.model_backward_and_update(loss)
        self.loss_history.append(loss.item())
        acc = (output.argmax(1) == label).float().mean().item() * 100
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": acc}


@DATASET_REGISTRY.register()
class ToyColorsU(ToyColors):
    """ToyColors plus an unlabelled split (the test images without their use of labels) for TrainerXU."""

    def __init__(self, cfg) -> None:
        root = cfg.DATASET.ROOT
        DatasetBase.__init__(
            self, train_x=_read_split(root, "train"), train_u=_read_split(root, "test"), test=_read_split(root, "test")
        )


@TRAINER_REGISTRY.register()
class ToyXU(TrainerXU):
    """Supervised loss on the labelled batch plus entropy minimisation on the unlabelled one."""

    def build_model(self) -> None:
        h, w = self.cfg.INPUT.SIZE
        self.model = ToyMLP(3 * h * w, 16, self.num_classes, 0.0).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, build_lr_scheduler(self.optim, self.cfg.OPTIM))
        self.batch_sizes: list[tuple[int, int]] = []

    def forward_backward(self, batch_x, batch_u):
        input_x, label_x, input_u = self.parse_batch_train(batch_x, batch_u)
        self.batch_sizes.append((input_x.shape[0], input_u.shape[0]))
        loss_x = F.cross_entropy(self.model(input_x), label_x)
        prob_u = self.model(input_u).softmax(1)
        loss_u = -(prob_u * prob_u.clamp_min(1e-8).log()).sum(1).mean()
        self.model_backward_and_update(loss_x + loss_u)
        return {"loss_x": loss_x.item(), "loss_u": loss_u.item()}


@TRAINER_REGISTRY.register()
class ToySimpleNet(TrainerX):
    """Uses SimpleTrainer's default build_model (SimpleNet on a torchvision backbone)."""

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


def toy_argv(root: str, output_dir: str, *extra: str, opts: dict | None = None, seed: int | None = 1) -> list[str]:
    """train.py arguments for a short ToyNet run on ``root``; ``opts`` override the defaults below."""
    defaults = {
        "DATASET.NAME": "ToyColors",
        "INPUT.SIZE": "(16, 16)",
        "INPUT.TRANSFORMS": "['random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS": "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE": "4",
        "DATALOADER.TEST.BATCH_SIZE": "5",
        "OPTIM.NAME": "sgd",
        "OPTIM.LR": "0.05",
        "OPTIM.MAX_EPOCH": "2",
        "OPTIM.LR_SCHEDULER": "cosine",
        "TRAIN.PRINT_FREQ": "2",
        "VERBOSE": "True",
        "USE_CUDA": "False",  # the engine tests are CPU tests (bitwise resume, gloo DDP) even on a GPU machine
    }
    defaults.update({k: str(v) for k, v in (opts or {}).items()})
    argv = ["--root", root, "--output-dir", output_dir, "--trainer", "ToyNet", *extra]
    if seed is not None:
        argv += ["--seed", str(seed)]
    for key, value in defaults.items():
        argv += [key, value]
    return argv
