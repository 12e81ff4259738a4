"""Command-line entry point: build the config, then train or evaluate one run (methods.md section 4.12).

Upstream flow and console lines (dassl-api.md section 2.4), with upstream's bugs fixed: ``--seed 0`` is honoured,
``--resume DIR`` sets ``RESUME``, ``cudnn.benchmark`` is off under ``TRAIN.DETERMINISTIC``, and the merged config
is saved to ``OUTPUT_DIR/config.yaml``. Method and dataset packages register themselves when imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import torch

from dassl.config import apply_cfg_defaults, get_cfg_default
from dassl.engine import build_trainer
from dassl.engine.distributed import env_rank
from dassl.utils import Logger, atomic_write_text, set_random_seed, setup_logger

logger = logging.getLogger("train")

PLUGIN_PACKAGES = ("datasets", "trainers")
REPO_ROOT = os.path.dirname(os.path.abspath(__file__))


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


def setup_cfg(args: argparse.Namespace):
    """defaults -> registered package defaults -> dataset YAML -> method YAML -> flags -> opts -> freeze."""
    cfg = get_cfg_default()
    apply_cfg_defaults(cfg)
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


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
    path = os.path.join(output_dir, "config.yaml")
    atomic_write_text(cfg.dump(), path)
    return path


def main(argv: Sequence[str] | None = None):
    """Run train.py with ``argv`` (default: ``sys.argv[1:]``); returns the trainer for in-process callers."""
    args = build_arg_parser().parse_args(argv)
    import_plugin_packages()
    cfg = setup_cfg(args)
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
        if env_rank() == 0:
            save_config(cfg, cfg.OUTPUT_DIR)

        trainer = build_trainer(cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.test()
            return trainer
        if not args.no_train:
            trainer.train()
        return trainer
    finally:
        if not group_was_initialized and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # the trainer joined it; leave no group behind
        if isinstance(sys.stdout, Logger):
            sys.stdout.flush()
            sys.stdout.close()
        sys.stdout = previous_stdout.console if isinstance(previous_stdout, Logger) else previous_stdout


if __name__ == "__main__":
    main()
