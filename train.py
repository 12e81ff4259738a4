"""Command-line entry point: build the config, then train or evaluate one run, with upstream's flags.

Upstream flow (config defaults, dataset YAML, method YAML, flags, opts; seed; logger; trainer) and console lines, with
upstream's bugs fixed: ``--seed 0`` is honoured, ``--resume DIR`` sets ``RESUME``, ``cudnn.benchmark`` is off under
``TRAIN.DETERMINISTIC``, and the merged config is saved to ``OUTPUT_DIR/config.yaml``. Method and dataset packages
register themselves when imported.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

import torch
import yaml

from dassl.config import apply_cfg_defaults, get_cfg_default
from dassl.engine import build_trainer
from dassl.engine.distributed import env_rank
from dassl.engine.run_classnames import write_run_classnames
from dassl.error_boundary import run_with_error_boundary
from dassl.errors import CheckpointError, ConfigError, OutputDirError, UserError
from dassl.utils import (
    Logger,
    atomic_copy_file,
    atomic_write_text,
    folder_creation_problem,
    set_random_seed,
    setup_logger,
)

logger = logging.getLogger("train")

PLUGIN_PACKAGES = ("datasets", "trainers")
REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
CONFIG_FILE = "config.yaml"
CONFIG_HISTORY_DIR = "config_history"


def import_plugin_packages() -> None:
    """Import ``datasets`` and ``trainers`` for their registrations; tolerate packages not written yet."""
    for name in PLUGIN_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            logger.warning("Package %r not found: no %s registered from it", name, name)
            continue
        paths = [os.path.abspath(p) for p in getattr(module, "__path__", [])]
        if paths and not any(p.startswith(REPO_ROOT) for p in paths):
            logger.warning("Imported %r from %s, not from this repository (%s)", name, paths, REPO_ROOT)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train / evaluate a CLIP prompt-learning method")
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=None, help="only non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """Apply the CLI flags (a flag left at its default keeps the YAML value)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def _merge(source: str, merge: Callable[[], None]) -> None:
    """Run one config merge step, turning yacs/YAML failures into a ``ConfigError`` that names ``source``."""
    try:
        merge()
    except UserError:
        raise
    except FileNotFoundError as err:
        raise ConfigError("config file not found", err.filename or source, "check the path") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        raise ConfigError(f"YAML syntax error: {getattr(err, 'problem', None) or err}", where, "fix the file") from err
    except (ValueError, TypeError, AssertionError, KeyError) as err:  # yacs: type mismatch, odd opts list, ...
        message = " ".join(str(err.args[0] if err.args else err).split())
        raise ConfigError(
            f"invalid config value: {message}", source, "fix the value (types must match the defaults)"
        ) from err


def setup_cfg(args: argparse.Namespace):
    """defaults -> registered package defaults -> dataset YAML -> method YAML -> flags -> opts -> freeze."""
    cfg = get_cfg_default()
    apply_cfg_defaults(cfg)
    for flag, path in (("--dataset-config-file", args.dataset_config_file), ("--config-file", args.config_file)):
        if path:
            if not os.path.isfile(path):
                raise ConfigError("config file not found", f"{flag} {path}", "check the path")
            _merge(path, lambda path=path: cfg.merge_from_file(path))
    _merge("command-line flags", lambda: reset_cfg(cfg, args))
    opts = args.opts or []
    if len(opts) % 2:
        raise ConfigError(
            "the command-line opts must be KEY VALUE pairs", f"odd number of items: {opts}", "add the missing value"
        )
    _merge("command-line opts", lambda: cfg.merge_from_list(opts))
    cfg.freeze()
    return cfg


def check_cfg(cfg, args: argparse.Namespace) -> None:
    """The checks that need no file reading: registered names, flag combinations, sizes, OUTPUT_DIR."""
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import TRAINER_REGISTRY

    for key, registry in (("TRAINER.NAME", TRAINER_REGISTRY), ("DATASET.NAME", DATASET_REGISTRY)):
        value = cfg
        for part in key.split("."):
            value = value[part]
        if value not in registry:
            known = registry.registered_names()
            close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.4)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown {key.split('.')[0].lower()}", f"{key}={value!r}", f"{hint}known: {known}")
    for key in ("DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TEST.BATCH_SIZE", "OPTIM.MAX_EPOCH"):
        node, leaf = key.rsplit(".", 1)
        value = cfg
        for part in node.split("."):
            value = value[part]
        minimum = 0 if leaf == "MAX_EPOCH" else 1
        if value[leaf] < minimum:
            raise ConfigError(f"{key} must be at least {minimum}", f"{key}={value[leaf]}", "set a positive value")
    if args.model_dir and not os.path.isdir(args.model_dir):
        raise CheckpointError(
            "model folder not found", f"--model-dir {args.model_dir}", "pass the OUTPUT_DIR of a training run"
        )
    if (args.model_dir or args.load_epoch is not None) and not args.eval_only:
        raise ConfigError("--model-dir/--load-epoch only apply to evaluation", "--eval-only missing", "add --eval-only")
    if args.load_epoch is not None and args.load_epoch < 1:
        raise ConfigError(
            "--load-epoch must be a saved epoch (>= 1)",
            f"--load-epoch {args.load_epoch}",
            "pick an epoch file model.pth.tar-N",
        )
    if cfg.RESUME and not os.path.isdir(cfg.RESUME):
        raise CheckpointError(
            "resume folder not found", f"RESUME={cfg.RESUME}", "pass the OUTPUT_DIR of the run to resume"
        )
    if not cfg.OUTPUT_DIR:
        raise ConfigError("no output folder given", "OUTPUT_DIR is empty", "pass --output-dir DIR")
    check_output_dir(cfg.OUTPUT_DIR)


def check_output_dir(path: str) -> None:
    """``OutputDirError`` unless ``path`` is a writable folder or can be created (checked without writing)."""
    problem = folder_creation_problem(path)
    if problem is None:
        return
    kind, where = problem
    if kind == "not a folder":
        raise OutputDirError("OUTPUT_DIR is not a folder", where, "remove the file or choose another --output-dir")
    if kind == "a file is in the way":
        raise OutputDirError(
            "OUTPUT_DIR cannot be created: a file is in the way", where, "remove it or choose another --output-dir"
        )
    what = "OUTPUT_DIR is not writable" if kind == "not writable" else "OUTPUT_DIR cannot be created (no permission)"
    raise OutputDirError(what, where, "fix its permissions or choose another --output-dir")


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def save_config(cfg, output_dir: str) -> str:
    """Write the merged config to ``output_dir/config.yaml`` atomically (temp file + os.replace)."""
    path = os.path.join(output_dir, CONFIG_FILE)
    atomic_write_text(cfg.dump(), path)
    return path


def config_state(cfg, output_dir: str) -> str:
    """``new`` (no config.yaml yet), ``same`` (identical text) or ``changed``."""
    path = os.path.join(output_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        return "new"
    with open(path, encoding="utf-8") as f:
        return "same" if f.read() == cfg.dump() else "changed"


def replace_config(cfg, output_dir: str) -> str:
    """After a successful run with a changed config: keep the old ``config.yaml`` in ``config_history/``
    (named by the time it was written) and write the new one. Returns the history file."""
    path = os.path.join(output_dir, CONFIG_FILE)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(os.path.getmtime(path)))
    history = os.path.join(output_dir, CONFIG_HISTORY_DIR)
    os.makedirs(history, exist_ok=True)
    kept = os.path.join(history, f"config-{stamp}.yaml")
    n = 1
    while os.path.exists(kept):
        n += 1
        kept = os.path.join(history, f"config-{stamp}-{n}.yaml")
    atomic_copy_file(path, kept)
    save_config(cfg, output_dir)
    return kept


def run(args: argparse.Namespace, cfg):
    """Build, validate by loading every input, then write: ``config.yaml`` first only into a folder that had
    none; a changed config replaces the old one (kept in ``config_history/``) only once the run succeeded."""
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    elif not args.no_train:
        trainer.check_training_data()
    state = config_state(cfg, cfg.OUTPUT_DIR) if env_rank() == 0 else "same"
    if state == "new":
        save_config(cfg, cfg.OUTPUT_DIR)
    elif state == "changed":
        logger.info("config differs from %s: it is replaced once this run succeeds", CONFIG_FILE)
    classnames = list(trainer.lab2cname.values())
    if env_rank() == 0:  # the class names of the model this run trains or evaluates, for predict.py
        write_run_classnames(classnames, cfg.OUTPUT_DIR, replace=False)
    if args.eval_only:
        trainer.test()
    elif not args.no_train:
        trainer.train()
    if env_rank() == 0 and not args.eval_only and write_run_classnames(classnames, cfg.OUTPUT_DIR, replace=True):
        logger.info("classnames.txt updated to the classes of this run")
    if state == "changed":
        kept = replace_config(cfg, cfg.OUTPUT_DIR)
        logger.info("%s updated; the previous config is kept as %s", CONFIG_FILE, kept)
    return trainer


def main(argv: Sequence[str] | None = None):
    """Run train.py with ``argv`` (default: ``sys.argv[1:]``); returns the trainer for in-process callers.

    Nothing is written into ``OUTPUT_DIR`` before the config is merged and checked and every input (data,
    CLIP weights, teacher, the checkpoint to evaluate) has been loaded, except appending to ``log.txt``.
    An exception leaving this function carries ``run_log``, the run's ``log.txt`` when the run folder exists,
    for the error boundary.
    """
    args = build_arg_parser().parse_args(argv)
    output_dir = args.output_dir
    try:
        import_plugin_packages()
        cfg = setup_cfg(args)
        output_dir = cfg.OUTPUT_DIR
        check_cfg(cfg, args)
        return _run_logged(args, cfg)
    except BaseException as err:
        log_file = os.path.join(output_dir, "log.txt") if output_dir else ""
        if log_file and os.path.isdir(output_dir) and getattr(err, "run_log", None) is None:
            with contextlib.suppress(AttributeError):
                err.run_log = log_file
        raise


def _run_logged(args: argparse.Namespace, cfg):
    """:func:`run` with stdout teed into ``OUTPUT_DIR/log.txt``; a CUDA out-of-memory names the batch size."""
    deterministic = bool(cfg.TRAIN.get("DETERMINISTIC", False))
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED, deterministic=deterministic)

    previous_stdout = sys.stdout
    group_was_initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    setup_logger(cfg.OUTPUT_DIR)
    try:
        if deterministic:
            torch.backends.cudnn.benchmark = False
        elif torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True
        print_args(args, cfg)
        return run(args, cfg)
    except torch.cuda.OutOfMemoryError as err:
        key = "DATALOADER.TEST.BATCH_SIZE" if args.eval_only else "DATALOADER.TRAIN_X.BATCH_SIZE"
        batch = cfg.DATALOADER.TEST.BATCH_SIZE if args.eval_only else cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        raise UserError("out of GPU memory", f"{key}={batch}", f"lower {key} (or use PREC fp16/bf16)") from err
    finally:
        if not group_was_initialized and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # the trainer joined it; leave no group behind
        if isinstance(sys.stdout, Logger):
            sys.stdout.flush()
            sys.stdout.close()
        sys.stdout = previous_stdout.console if isinstance(previous_stdout, Logger) else previous_stdout


if __name__ == "__main__":
    sys.exit(run_with_error_boundary(main))
