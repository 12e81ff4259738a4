"""Evaluation of a trainer: ``test()`` over val or test, upstream's result lines, and ``results.jsonl``.

Every evaluation prints the evaluator's human-readable block (what ``parse_test_res.py`` reads from ``log.txt``)
and appends one JSON record to ``OUTPUT_DIR/results.jsonl`` (:mod:`dassl.engine.results_log`), tagged with the
phase it belongs to (``epoch`` during training, ``final`` after it, ``eval_only`` otherwise).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from tqdm import tqdm

from dassl.errors import InputFileError
from dassl.evaluation import Classification

from . import distributed as ddp
from .iteration_log import progress_disabled
from .results_log import RESULTS_FILE, append_result_line, build_result_record

__all__ = ["EvaluationMixin", "no_test_images"]


def no_test_images(cfg: Any) -> InputFileError:
    """The error of an evaluation asked of a dataset without test images."""
    return InputFileError(
        "nothing can be evaluated: the dataset has no test images",
        f"DATASET.NAME={cfg.DATASET.NAME}, DATASET.ROOT={cfg.DATASET.ROOT}",
        "add labeled test images (Folder: DATASET.ROOT/test/<class>/), or label new images with predict.py",
    )


class EvaluationMixin:
    """``test``, ``model_inference``, ``parse_batch_test``, ``eval_phase`` and ``record_results``."""

    _eval_phase = "eval_only"

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
        append_result_line(os.path.join(self.output_dir, RESULTS_FILE), record)

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
        if data_loader is None:
            raise no_test_images(self.cfg)
        print(f"Evaluate on the *{split}* set")

        for batch in tqdm(data_loader, desc=f"eval {split}", leave=False, disable=progress_disabled()):
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
