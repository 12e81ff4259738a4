"""Writers for hand-made result trees in the formats the tools read.

``upstream_log`` writes a log in the text format of Dassl / PromptKD ``train.py``:
argument and config banners, iteration lines, ``Evaluate on the *split* set`` + result blocks, ``Finish
training``, ``Elapsed``. ``jsonl_record`` writes one line of the results.jsonl schema in docs/design.md.
"""

from __future__ import annotations

import json
import os

CFG_B2N = "vit_b16_c2_ep20_batch8_4+4ctx"


def result_block(split: str | None, accuracy: float, total: int = 1000, macro_f1: float | None = None) -> str:
    correct = round(total * accuracy / 100)
    head = f"Evaluate on the *{split}* set\n" if split else ""
    f1 = accuracy - 0.5 if macro_f1 is None else macro_f1
    return (
        f"{head}=> result\n* total: {total:,}\n* correct: {correct:,}\n* accuracy: {accuracy:.1f}%\n"
        f"* error: {100 - accuracy:.1f}%\n* macro_f1: {f1:.1f}%\n"
    )


def header(
    dataset: str,
    seed: int,
    trainer: str,
    shots: int = 16,
    subsample: str = "all",
    modal: str = "base2novel",
    eval_only: bool = False,
) -> str:
    return (
        "***************\n** Arguments **\n***************\n"
        "backbone: \n"
        f"config_file: configs/trainers/{trainer}/cfg.yaml\n"
        f"dataset_config_file: configs/datasets/{dataset.lower()}.yaml\n"
        f"eval_only: {eval_only}\n"
        "head: \nload_epoch: None\nmodel_dir: \nno_train: False\n"
        f"opts: ['DATASET.NUM_SHOTS', '{shots}']\n"
        "output_dir: out\nresume: \nroot: data\n"
        f"seed: {seed}\nsource_domains: None\ntarget_domains: None\ntrainer: {trainer}\ntransforms: None\n"
        "************\n** Config **\n************\n"
        "DATALOADER:\n  NUM_WORKERS: 8\n  TEST:\n    BATCH_SIZE: 100\n"
        "DATASET:\n  NAME: " + dataset + "\n"
        f"  NUM_SHOTS: {shots}\n  ROOT: data\n  SUBSAMPLE_CLASSES: {subsample}\n"
        "OUTPUT_DIR: out\n"
        f"SEED: {seed}\n"
        f"TRAINER:\n  MODAL: {modal}\n  NAME: {trainer}\n  PROMPTKD:\n    KD_WEIGHT: 1000.0\n"
        "Collecting env info ...\n** System info **\nPyTorch version: 2.4.0\n"
        f"Loading trainer: {trainer}\nLoading dataset: {dataset}\n"
    )


def training(epochs: int, val_accs: list[float] | None = None) -> str:
    text = ""
    for e in range(1, epochs + 1):
        text += (
            f"epoch [{e}/{epochs}] batch [1/1] time 0.100 (0.100) data 0.010 (0.010) loss 1.2345 (1.2345) "
            "lr 5.0000e-03 eta 0:00:01\n"
        )
        if val_accs is not None:
            text += result_block("val", val_accs[e - 1])
    return text


def upstream_log(
    dataset: str,
    seed: int,
    trainer: str,
    final: float | None,
    val_accs: list[float] | None = None,
    epochs: int = 2,
    shots: int = 16,
    subsample: str = "all",
    modal: str = "base2novel",
    macro_f1: float | None = None,
) -> str:
    """A training run; ``final=None`` writes a run that stopped before ``Finish training``."""
    text = header(dataset, seed, trainer, shots, subsample, modal) + training(epochs, val_accs)
    if final is None:
        return text
    return (
        text + "Checkpoint saved to out/prompt_learner/model.pth.tar-2\nFinish training\n"
        "Deploy the last-epoch model\n" + result_block("test", final, macro_f1=macro_f1) + "Elapsed: 0:00:03\n"
    )


def eval_log(dataset: str, seed: int, trainer: str, final: float, shots: int = 16, subsample: str = "new") -> str:
    """An ``--eval-only`` run."""
    return (
        header(dataset, seed, trainer, shots, subsample, eval_only=True)
        + 'Loading weights to prompt_learner from "out/model.pth.tar-2" (epoch = 2)\n'
        + result_block("test", final)
    )


def write(path: str, text: str, append: bool = False) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        f.write(text)
    return path


def jsonl_record(
    dataset: str,
    seed: int,
    trainer: str,
    accuracy: float,
    classes: str,
    phase: str = "final",
    split: str = "test",
    shots: int = 0,
    subsample: str = "all",
    modal: str = "base2novel",
    epoch: int = 2,
) -> dict:
    total = 200
    return {
        "event": "eval",
        "split": split,
        "classes": classes,
        "phase": phase,
        "epoch": epoch,
        "dataset": dataset,
        "trainer": trainer,
        "seed": seed,
        "num_shots": shots,
        "subsample": subsample,
        "modal": modal,
        "metrics": {
            "accuracy": accuracy,
            "error": 100 - accuracy,
            "macro_f1": accuracy - 1.0,
            "total": total,
            "correct": round(total * accuracy / 100),
        },
        "output_dir": "out",
        "time": "2026-11-26T10:00:00",
    }


def write_jsonl(path: str, records: list[dict], append: bool = False) -> str:
    return write(path, "".join(json.dumps(r) + "\n" for r in records), append)


def promptkd_b2n_run(
    root: str, folder: str, dataset: str, seed: int, base: float | None, novel: float | None, summary: bool = True
) -> str:
    """PromptKD base2novel run folder (one run reports base and new): per-epoch records, finals, summary."""
    run_dir = os.path.join(root, "base2new", "train_base", folder, "shots_0", "PromptKD", CFG_B2N, f"seed_{seed}")
    records = [jsonl_record(dataset, seed, "PromptKD", 50.0, "base", phase="epoch", split="val", epoch=1)]
    if base is not None:
        records.append(jsonl_record(dataset, seed, "PromptKD", base, "base"))
    if novel is not None:
        records.append(jsonl_record(dataset, seed, "PromptKD", novel, "new"))
    if summary and base is not None and novel is not None:
        hm = 2 * base * novel / (base + novel)
        records.append(
            {
                "event": "summary",
                "base": base,
                "novel": novel,
                "hm": hm,
                "dataset": dataset,
                "trainer": "PromptKD",
                "seed": seed,
                "num_shots": 0,
                "modal": "base2novel",
            }
        )
    write_jsonl(os.path.join(run_dir, "results.jsonl"), records)
    return run_dir
