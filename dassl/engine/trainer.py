"""Trainer engine: ``TrainerBase``, ``SimpleTrainer``, ``TrainerX``, ``TrainerXU`` (dassl-api.md section 3).

Attribute names, hooks, the constructor order, checkpoint files/keys and console lines follow upstream Dassl
so that upstream-style trainers run unchanged. Differences (dassl-api.md section 11, #4-#9, #19):

- one device decision (``cuda:LOCAL_RANK`` or ``cpu``), no DataParallel; DDP under torchrun;
- precision via :mod:`dassl.engine.precision` (autocast + GradScaler), not model casts;
- checkpoints also store ``best_result``/``best_epoch`` and the RNG states, and resume picks the latest
  ``model.pth.tar-N`` even when the ``checkpoint`` pointer is missing or names ``model-best.pth.tar``;
- non-finite losses stop with the epoch and batch named; ``load_model`` prints ``val_result=n/a`` when absent;
- TensorBoard is optional (lazy import); every evaluation is also appended to ``results.jsonl``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os.path as osp
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from dassl.data import DataManager
from dassl.data.data_manager import set_loader_epoch
from dassl.evaluation import Classification, build_evaluator
from dassl.modeling import SimpleNet
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    count_num_param,
    load_pretrained_weights,
    mkdir_if_missing,
    tolist_if_not,
)

from . import distributed as ddp
from .checkpointing import CheckpointingMixin
from .precision import Precision, resolve_precision
from .results_log import RESULTS_FILENAME, append_result_line, build_result_record

logger = logging.getLogger(__name__)

_FINAL_MODELS = ("last_step", "best_val")


def _progress_disabled() -> bool:
    """tqdm bars only on an interactive terminal (they would clutter CI logs and redirected stderr)."""
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):
        return True


class TrainerBase(CheckpointingMixin):
    """Model/optimizer/scheduler bookkeeping and the epoch loop; knows nothing about configs."""

    precision: Precision | None = None
    grad_scaler: torch.amp.GradScaler | None = None

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._trained_state_only: set[str] = set()
        self._writer = None
        self._grad_sync_modules: list[nn.Module] = []

    # ---------------------------------------------------------------- registry of trainable parts
    def register_model(
        self,
        name: str = "model",
        model: nn.Module | None = None,
        optim=None,
        sched=None,
        *,
        trained_state_only: bool = False,
    ) -> None:
        """Register the *unwrapped* module with its optimizer/scheduler (either may be None).

        ``trained_state_only``: its checkpoints hold only trainable parameters and persistent buffers (a frozen
        backbone is rebuilt from its own weights file, not saved every epoch).
        """
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if self.__dict__.get("_optims") is None:
            raise AttributeError("Cannot assign optim before super().__init__() call")
        if self.__dict__.get("_scheds") is None:
            raise AttributeError("Cannot assign sched before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched
        if trained_state_only:
            self._trained_state_only.add(name)

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            assert name in names_real, f"Model name {name!r} is not registered; registered: {names_real}"
        return names

    # ---------------------------------------------------------------- modes, lr, anomaly, tensorboard
    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f"set_model_mode got mode={mode!r}; allowed: 'train', 'test', 'eval'")

    def update_lr(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Stop at the first non-finite loss, naming where it happened."""
        if not torch.isfinite(loss).all():
            raise FloatingPointError(
                f"Loss is infinite or NaN! (epoch {getattr(self, 'epoch', 0) + 1}/{getattr(self, 'max_epoch', '?')}, "
                f"batch {getattr(self, 'batch_idx', 0) + 1}/{getattr(self, 'num_batches', '?')}, "
                f"loss={loss.detach().float().flatten()[:4].tolist()}). "
                "Lower OPTIM.LR, check the input data, or train with PREC fp32."
            )

    def init_writer(self, log_dir: str) -> None:
        """Create a TensorBoard writer; training goes on without one when tensorboard is not installed."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is optional
                logger.warning("TensorBoard unavailable (%s); scalars are not written", err)
                return
            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value, global_step: int | None = None) -> None:
        if self._writer is None:
            return
        self._writer.add_scalar(tag, scalar_value, global_step)

    # ---------------------------------------------------------------- loop
    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic loop; the range is read after ``before_train`` so a resume can move ``start_epoch``."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):  # noqa: B020 (upstream attribute loop)
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: str | None = None):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    # ---------------------------------------------------------------- optimisation steps
    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast region of the run's precision (plain fp32 when no precision was resolved)."""
        if self.precision is None:
            return contextlib.nullcontext()
        return self.precision.autocast()

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Backward pass (scaled under fp16 autocast); gradients of modules outside DDP are averaged."""
        self.detect_anomaly(loss)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
        else:
            loss.backward()
        if self._grad_sync_modules:
            ddp.all_reduce_gradients(self._grad_sync_modules)

    def model_update(self, names: str | list[str] | None = None) -> None:
        scaler = self.grad_scaler
        stepped = False
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is None:
                continue
            if scaler is None:
                optim.step()
            elif any(p.grad is not None for group in optim.param_groups for p in group["params"]):
                scaler.step(optim)  # skips the step when the scaled gradients overflowed
                stepped = True
        if scaler is not None and stepped:
            scaler.update()

    def model_backward_and_update(self, loss: torch.Tensor, names: str | list[str] | None = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Config-driven trainer with upstream's constructor order (dassl-api.md section 3.3)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.check_cfg(cfg)

        self.device = ddp.select_device(cfg.USE_CUDA)
        self.distributed = ddp.init_distributed(self.device)

        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self._eval_phase = "eval_only"
        self.best_epoch: int | None = None
        self.loaded_epoch: int | None = None

        if cfg.TEST.FINAL_MODEL not in _FINAL_MODELS:
            raise ValueError(
                f"TEST.FINAL_MODEL={cfg.TEST.FINAL_MODEL!r} is not supported; use one of {list(_FINAL_MODELS)}"
            )
        self.precision = resolve_precision(self.get_precision_name(), self.device)
        self.grad_scaler = self.precision.make_grad_scaler()
        logger.info("Device: %s; precision: %s", self.device, self.precision.description)

        self.build_data_loader()  # under DDP, DataManager shards the loaders itself
        self.build_model()
        if self.distributed:
            self._wrap_models_for_ddp()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -math.inf

    def check_cfg(self, cfg) -> None:
        """Hook for trainers to validate their config (called before ``self.cfg`` exists)."""

    def get_precision_name(self) -> str:
        """``cfg.TRAINER.<NAME>.PREC`` when the trainer has such a key, else ``fp32``."""
        trainer_node = self.cfg.TRAINER.get(str(self.cfg.TRAINER.NAME).upper())
        if trainer_node is not None and hasattr(trainer_node, "get") and trainer_node.get("PREC") is not None:
            return trainer_node.get("PREC")
        return "fp32"

    # ---------------------------------------------------------------- building
    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        """Default model: ``SimpleNet`` on a torchvision backbone (CLIP trainers override this method)."""
        cfg = self.cfg
        print("Building model")
        self.model = SimpleNet(cfg, cfg.MODEL, self.num_classes)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        print(f"# params: {count_num_param(self.model):,}")
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def _wrap_models_for_ddp(self) -> None:
        """Wrap ``self.model`` in DDP when a trainable registered module is (inside) it.

        Registered modules stay unwrapped (checkpoints hold their plain keys). A trainable registered module
        that is not reachable from ``self.model`` gets its initial weights broadcast from rank 0 and its
        gradients averaged explicitly in ``model_backward``.
        """
        top = getattr(self, "model", None)
        wrapped = False
        for name in self.get_model_names():
            module = self._models[name]
            if module is None or not any(p.requires_grad for p in module.parameters()):
                continue
            if isinstance(top, nn.Module) and any(m is module for m in top.modules()):
                if not wrapped:
                    self.model = ddp.wrap_ddp(top, self.device)
                    wrapped = True
                    logger.info("DDP: wrapped self.model (contains registered model %r)", name)
            else:
                for tensor in list(module.parameters()) + list(module.buffers()):
                    torch.distributed.broadcast(tensor.data, src=0)
                self._grad_sync_modules.append(module)
                logger.info("DDP: registered model %r is outside self.model; gradients averaged explicitly", name)

    # ---------------------------------------------------------------- loop hooks
    def train(self) -> None:  # noqa: D102 (upstream signature)
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME if self.cfg.RESUME else self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST:
            source = "val" if self.val_loader is not None else "test (no val split exists)"
            logger.info("Model selection: best_val, selected on the *%s* split after every epoch", source)
        else:
            logger.info("Model selection: last_step (the model after the last epoch is evaluated)")
        if ddp.is_main_process():
            writer_dir = osp.join(self.output_dir, "tensorboard")
            mkdir_if_missing(writer_dir)
            self.init_writer(writer_dir)
        self.time_start = time.time()

    def before_epoch(self) -> None:
        """Reshuffle DistributedSampler shards per epoch (no-op for single-process samplers)."""
        set_loader_epoch(self.train_loader_x, self.epoch)
        set_loader_epoch(getattr(self, "train_loader_u", None), self.epoch)

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False

        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            with self.eval_phase("epoch"):
                curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.best_epoch = self.epoch + 1
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            with self.eval_phase("final"):
                self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    # ---------------------------------------------------------------- evaluation
    @contextlib.contextmanager
    def eval_phase(self, phase: str) -> Iterator[None]:
        """Tag the evaluations inside the block (``epoch``/``final``/``eval_only``) for results.jsonl."""
        previous, self._eval_phase = self._eval_phase, phase
        try:
            yield
        finally:
            self._eval_phase = previous

    def _result_epoch(self, phase: str) -> int | None:
        """Number of training epochs behind the evaluated weights, when known."""
        if phase == "epoch":
            return self.epoch + 1
        if phase == "final":
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                return self.best_epoch if self.best_epoch is not None else self.loaded_epoch
            return self.max_epoch
        return self.loaded_epoch

    def record_results(
        self, split: str, results: dict[str, Any], classes: str | None = None, phase: str | None = None
    ) -> None:
        """Append one evaluation to ``OUTPUT_DIR/results.jsonl`` (rank 0 only)."""
        if not ddp.is_main_process():
            return
        phase = phase or self._eval_phase
        metrics = dict(results)
        counts = getattr(getattr(self, "evaluator", None), "counts", None)
        if callable(counts):  # raw totals behind the percentages (Classification evaluator)
            for key, value in counts().items():
                metrics.setdefault(key, value)
        record = build_result_record(
            self.cfg, split=split, classes=classes, phase=phase, epoch=self._result_epoch(phase), metrics=metrics
        )
        append_result_line(osp.join(self.output_dir, RESULTS_FILENAME), record)

    @torch.no_grad()
    def test(self, split: str | None = None):
        """Evaluate on ``val`` (if it exists and is asked for) or ``test``; return the first metric."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")

        for batch in tqdm(data_loader, desc=f"eval {split}", leave=False, disable=_progress_disabled()):
            input, label = self.parse_batch_test(batch)
            with self.autocast():
                output = self.model_inference(input)
            self.evaluator.process(output, label)

        if isinstance(self.evaluator, Classification):  # tags the confusion-matrix file with the split
            results = self.evaluator.evaluate(split=split)
        else:  # evaluators written for upstream take no arguments
            results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        self.record_results(split, results)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: str | list[str] | None = None) -> float | None:
        """Learning rate of the first registered optimizer (None when nothing trainable is registered)."""
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is not None:
                return optim.param_groups[0]["lr"]
        return None

    def _check_loss_summary(self, loss_summary) -> None:
        """Stop on a non-finite reported loss even when the trainer did its own backward pass."""
        if not isinstance(loss_summary, dict):
            return
        for key, value in loss_summary.items():
            number = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
            if not torch.isfinite(number).all():
                raise FloatingPointError(
                    f"Loss is infinite or NaN! ({key}={number.flatten()[:4].tolist()} at epoch "
                    f"{self.epoch + 1}/{self.max_epoch}, batch {self.batch_idx + 1}/{self.num_batches}). "
                    "Lower OPTIM.LR, check the input data, or train with PREC fp32."
                )

    def _log_iteration(self, batch_time: AverageMeter, data_time: AverageMeter, losses: MetricMeter) -> None:
        """Upstream's iteration line (dassl-api.md section 3.5) and the per-iteration TensorBoard scalars."""
        meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
        only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
        lr = self.get_current_lr()
        if meet_freq or only_few_batches:
            nb_remain = self.num_batches - self.batch_idx - 1
            nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
            eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
            info = [
                f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                f"{losses}",
                f"lr {lr:.4e}" if lr is not None else "lr n/a",
                f"eta {eta}",
            ]
            print(" ".join(info))
        if self._writer is not None:
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            if lr is not None:
                self.write_scalar("train/lr", lr, n_iter)


class TrainerX(SimpleTrainer):
    """Trainer over labelled data only (``train_loader_x``); every CLIP prompt-learning trainer uses it."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)

        end = time.time()
        bar = tqdm(
            self.train_loader_x,
            desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
            leave=False,
            disable=_progress_disabled(),
        )
        for self.batch_idx, batch in enumerate(bar):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            self._check_loss_summary(loss_summary)
            losses.update(loss_summary)
            self._log_iteration(batch_time, data_time, losses)
            end = time.time()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)


class TrainerXU(SimpleTrainer):
    """Trainer over a labelled and an unlabelled loader (semi-supervised / domain adaptation style)."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()

        len_train_loader_x = len(self.train_loader_x)
        len_train_loader_u = len(self.train_loader_u)
        count_iter = self.cfg.TRAIN.COUNT_ITER
        if count_iter == "train_x":
            self.num_batches = len_train_loader_x
        elif count_iter == "train_u":
            self.num_batches = len_train_loader_u
        elif count_iter == "smaller_one":
            self.num_batches = min(len_train_loader_x, len_train_loader_u)
        else:
            raise ValueError(
                f"TRAIN.COUNT_ITER={count_iter!r} is not supported; use 'train_x', 'train_u' or 'smaller_one'"
            )

        train_loader_x_iter = iter(self.train_loader_x)
        train_loader_u_iter = iter(self.train_loader_u)

        end = time.time()
        for self.batch_idx in range(self.num_batches):  # noqa: B020
            try:
                batch_x = next(train_loader_x_iter)
            except StopIteration:
                train_loader_x_iter = iter(self.train_loader_x)
                batch_x = next(train_loader_x_iter)
            try:
                batch_u = next(train_loader_u_iter)
            except StopIteration:
                train_loader_u_iter = iter(self.train_loader_u)
                batch_u = next(train_loader_u_iter)

            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch_x, batch_u)
            batch_time.update(time.time() - end)
            self._check_loss_summary(loss_summary)
            losses.update(loss_summary)
            self._log_iteration(batch_time, data_time, losses)
            end = time.time()

    def parse_batch_train(self, batch_x, batch_u):
        input_x = batch_x["img"].to(self.device)
        label_x = batch_x["label"].to(self.device)
        input_u = batch_u["img"].to(self.device)
        return input_x, label_x, input_u
