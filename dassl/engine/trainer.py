"""Trainer engine: ``TrainerBase``, ``SimpleTrainer``, ``TrainerX``, ``TrainerXU`` with upstream Dassl's API.

Attribute names, hooks, the constructor order, checkpoint files/keys and console lines follow upstream Dassl
so that upstream-style trainers run unchanged. Each cross-cutting concern lives in its own module, mixed in here:
checkpoints (:mod:`.checkpointing`), the optimisation step with precision and non-finite checks
(:mod:`.optimization`), TensorBoard (:mod:`.tensorboard`), evaluation and ``results.jsonl`` (:mod:`.evaluation`),
the iteration line (:mod:`.iteration_log`) and DDP (:mod:`.distributed`). This module keeps the model registry,
the epoch loop with its hooks and the one training-step body (:meth:`SimpleTrainer.run_batches`) that TrainerX
and TrainerXU feed. Where this differs from upstream: docs/upstream.md.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os.path as osp
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from torch import nn
from tqdm import tqdm

from dassl.data import DataManager
from dassl.data.data_manager import set_loader_epoch
from dassl.errors import ConfigError, InputFileError, UserError
from dassl.evaluation import build_evaluator
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
from .compilation import check_compile_cfg
from .evaluation import EvaluationMixin
from .iteration_log import IterationLogMixin, progress_disabled
from .optimization import OptimizationMixin
from .precision import apply_tf32, resolve_precision
from .tensorboard import TensorBoardMixin

logger = logging.getLogger(__name__)

_FINAL_MODELS = ("last_step", "best_val")
_COUNT_ITER_CHOICES = ("train_x", "train_u", "smaller_one")


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """A ``ValueError`` raised while checking the config is a config error (the user's to fix)."""
    try:
        yield
    except UserError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


class TrainerBase(CheckpointingMixin, OptimizationMixin, TensorBoardMixin):
    """Model/optimizer/scheduler bookkeeping and the epoch loop; knows nothing about configs."""

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

    # ---------------------------------------------------------------- modes
    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f"set_model_mode got mode={mode!r}; allowed: 'train', 'test', 'eval'")

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


class ClassList:
    """What building a model needs of a dataset when only predicting: the class names (no images, no loaders)."""

    def __init__(self, classnames: Sequence[str]) -> None:
        self.dataset = self
        self.classnames = list(classnames)
        self.lab2cname = dict(enumerate(self.classnames))
        self.num_classes = len(self.classnames)
        self.train_x = self.train_u = self.val = self.test = None
        self.train_loader_x = self.train_loader_u = self.val_loader = self.test_loader = None
        self.num_source_domains = 0


class SimpleTrainer(EvaluationMixin, IterationLogMixin, TrainerBase):
    """Config-driven trainer with upstream's constructor order (check_cfg, device, data, model, evaluator).

    ``classnames`` given: the trainer is built for prediction (``inference_only``): no dataset is read and no
    loader exists; trainers build no training-only component (PromptKD: no teacher).
    """

    COMPILES_FORWARDS = False  # True where the trainer runs its per-step forwards through TRAIN.COMPILE

    def __init__(self, cfg, *, classnames: Sequence[str] | None = None) -> None:
        super().__init__()
        self.inference_only = classnames is not None
        self._classnames_only = classnames
        with _config_errors():
            self.check_cfg(cfg)
            check_compile_cfg(cfg)

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
            raise ConfigError(
                f"TEST.FINAL_MODEL={cfg.TEST.FINAL_MODEL!r} is not supported; use one of {list(_FINAL_MODELS)}"
            )
        with _config_errors():
            self.precision = resolve_precision(self.get_precision_name(), self.device)
        self.grad_scaler = self.precision.make_grad_scaler()
        logger.info("Device: %s; precision: %s", self.device, self.precision.description)
        apply_tf32(self.precision, bool(cfg.TRAIN.TF32))
        if cfg.TRAIN.COMPILE and not self.COMPILES_FORWARDS:
            logger.warning("TRAIN.COMPILE: %s runs eagerly (compiled forwards exist for PromptKD)", type(self).__name__)

        self.build_data_loader()  # under DDP, DataManager shards the loaders itself
        self.build_model()
        if self.distributed:
            self.model, self._grad_sync_modules = ddp.wrap_registered_models(
                getattr(self, "model", None), self._models, self.device
            )
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
        dm = ClassList(self._classnames_only) if self.inference_only else DataManager(self.cfg)
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

    # ---------------------------------------------------------------- loop hooks
    def train(self) -> None:  # noqa: D102 (upstream signature)
        super().train(self.start_epoch, self.max_epoch)

    def check_training_data(self) -> None:
        """Raise before anything is written when the data this trainer trains (or selects) on is missing."""
        cfg = self.cfg
        where = f"DATASET.NAME={cfg.DATASET.NAME}, DATASET.ROOT={cfg.DATASET.ROOT}"
        if self.train_loader_x is None:
            hint = getattr(self.dm.dataset, "missing_labeled_train", "give the dataset labeled training images")
            raise InputFileError(
                f"{cfg.TRAINER.NAME} trains on labeled images but the dataset has none",
                where,
                f"{hint}, or distil from unlabeled images with --trainer PromptKD",
            )
        selects = cfg.TEST.FINAL_MODEL == "best_val" and not cfg.TEST.NO_TEST
        if selects and self.val_loader is None and self.test_loader is None:
            raise ConfigError(
                "TEST.FINAL_MODEL best_val needs validation or test images and the dataset has neither",
                where,
                "use TEST.FINAL_MODEL last_step, or add val/ or test/ images",
            )

    def before_train(self) -> None:
        self.check_training_data()
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
        if not self.cfg.TEST.NO_TEST and self.test_loader is None:
            logger.warning(
                "The dataset has no test images: nothing can be evaluated; the trained model is saved in %s",
                self.output_dir,
            )
        elif not self.cfg.TEST.NO_TEST:
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

    # ---------------------------------------------------------------- the training step
    def run_batches(self, batches: Iterable[tuple]) -> None:
        """One epoch's training steps: ``forward_backward(*batch)`` for each batch, timed, checked, logged.

        The one body of TrainerX and TrainerXU (which only differ in the batches they feed); ``self.num_batches``
        must be set before.
        """
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        end = time.time()
        for self.batch_idx, batch in enumerate(batches):  # noqa: B020 (upstream attribute loop)
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(*batch)
            batch_time.update(time.time() - end)
            self.check_loss_summary(loss_summary)
            losses.update(loss_summary)
            self._log_iteration(batch_time, data_time, losses)
            end = time.time()


class TrainerX(SimpleTrainer):
    """Trainer over labelled data only (``train_loader_x``); every CLIP prompt-learning trainer uses it."""

    def run_epoch(self) -> None:
        self.num_batches = len(self.train_loader_x)
        bar = tqdm(
            self.train_loader_x,
            desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
            leave=False,
            disable=progress_disabled(),
        )
        self.run_batches((batch,) for batch in bar)

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)


class TrainerXU(SimpleTrainer):
    """Trainer over a labelled and an unlabelled loader (semi-supervised / domain adaptation style)."""

    def run_epoch(self) -> None:
        count_iter = self.cfg.TRAIN.COUNT_ITER
        lengths = {"train_x": len(self.train_loader_x), "train_u": len(self.train_loader_u)}
        lengths["smaller_one"] = min(lengths.values())
        if count_iter not in _COUNT_ITER_CHOICES:
            raise ValueError(
                f"TRAIN.COUNT_ITER={count_iter!r} is not supported; use 'train_x', 'train_u' or 'smaller_one'"
            )
        self.num_batches = lengths[count_iter]
        self.run_batches(self._paired_batches())

    def _paired_batches(self) -> Iterator[tuple[Any, Any]]:
        """``num_batches`` pairs ``(batch_x, batch_u)``; a loader that runs out starts again."""
        iter_x = iter(self.train_loader_x)
        iter_u = iter(self.train_loader_u)
        for _ in range(self.num_batches):
            try:
                batch_x = next(iter_x)
            except StopIteration:
                iter_x = iter(self.train_loader_x)
                batch_x = next(iter_x)
            try:
                batch_u = next(iter_u)
            except StopIteration:
                iter_u = iter(self.train_loader_u)
                batch_u = next(iter_u)
            yield batch_x, batch_u

    def parse_batch_train(self, batch_x, batch_u):
        input_x = batch_x["img"].to(self.device)
        label_x = batch_x["label"].to(self.device)
        input_u = batch_u["img"].to(self.device)
        return input_x, label_x, input_u
