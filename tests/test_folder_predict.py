"""Your own images end to end: the ``Folder`` dataset, distillation on ``unlabeled/``, ``predict.py`` and export.

Synthetic images in the Folder layout (colour encodes the class) and the tiny CLIPs of the trainer harness.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from dassl.data.datasets import build_dataset
from dassl.errors import InputFileError
from dassl.utils import git_commit, read_image
from tests.helpers.dataset_fixtures import make_dataset_cfg, write_image
from tests.helpers.trainer_runs import ROOT, last_accuracy, read_results, run_train

CLASSES = ["red fox", "blue jay", "green frog", "grey seal", "gold fish"]


def make_folder(
    root: Path,
    classes: list[str] = CLASSES,
    splits: dict[str, int] | None = None,
    unlabeled: int = 10,
    classnames_file: bool = True,
    size: int = 32,
) -> Path:
    """The Folder layout: ``classnames.txt``, ``unlabeled/`` (nested), ``<split>/<class folder>/`` images (class
    folders use ``_`` for spaces, extensions in mixed case), plus stray files that must be skipped."""
    splits = {"train": 4, "test": 3} if splits is None else splits
    if classnames_file:
        root.mkdir(parents=True, exist_ok=True)
        (root / "classnames.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    for split, per_class in splits.items():
        for label, name in enumerate(classes):
            for i in range(per_class):
                ext = ("jpg", "JPG", "jpeg")[i % 3]
                write_image(root / split / name.replace(" ", "_") / f"{i:03d}.{ext}", label, len(classes), size, i)
        if per_class:
            (root / split / "notes.txt").write_text("not an image")
    for i in range(unlabeled):
        write_image(
            root / "unlabeled" / f"batch{i % 2}" / "deep" / f"u{i:03d}.Jpeg", i % len(classes), len(classes), size, i
        )
    if unlabeled:
        (root / "unlabeled" / "README.md").write_text("stray")
        (root / "unlabeled" / ".DS_Store").write_bytes(b"\0")
    return root


def folder_cfg(root: Path, tmp_path: Path, **kw):
    return make_dataset_cfg(root, "Folder", tmp_path / "cache", **kw)


def tree_snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------------- dataset
def test_folder_lists_splits_classes_and_skips_stray_files(tmp_path, caplog):
    root = make_folder(tmp_path / "data")
    before = tree_snapshot(root)
    with caplog.at_level(logging.INFO, logger="datasets.folder"):
        dataset = build_dataset(folder_cfg(root, tmp_path, num_shots=2))
    assert dataset.classnames == CLASSES  # classnames.txt order, not sorted folder order
    assert dataset.num_classes == 5
    assert len(dataset.train_x) == 5 * 2  # few-shot sampled
    assert {d.label for d in dataset.train_x} == set(range(5))
    assert len(dataset.test) == 5 * 3 and dataset.val == dataset.test  # VAL_SOURCE test: upstream's rule
    for d in dataset.test:
        assert Path(d.impath).parent.name.replace("_", " ") == CLASSES[d.label] == d.classname
    # train_u: every unlabeled image (any nesting, any case of the extension) + every train/ image, no labels
    assert len(dataset.train_u) == 10 + 5 * 4 and {d.label for d in dataset.train_u} == {-1}
    assert [d.impath for d in dataset.train_u[:10]] == sorted(d.impath for d in dataset.train_u[:10])
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 4 file(s)" in skipped[0]  # 2 notes.txt, README.md, .DS_Store
    assert tree_snapshot(root) == before  # nothing written into DATASET.ROOT


def test_folder_class_names_from_sorted_folders_and_optional_splits(tmp_path):
    root = make_folder(tmp_path / "data", splits={"val": 2}, unlabeled=3, classnames_file=False)
    dataset = build_dataset(folder_cfg(root, tmp_path, val_source="val"))
    assert dataset.classnames == sorted(c for c in CLASSES)  # sorted folder names, '_' read as a space
    assert dataset.train_x == [] and dataset.test is None and len(dataset.val) == 10
    assert len(dataset.train_u) == 3


def test_folder_base_subsample_relabels_by_class_list(tmp_path):
    root = make_folder(tmp_path / "data")
    dataset = build_dataset(folder_cfg(root, tmp_path, subsample="base"))
    assert dataset.classnames == CLASSES[:3]
    assert {d.label for d in dataset.test} == {0, 1, 2} and len(dataset.test) == 9


def _no_root(root: Path) -> None:
    pass


def _no_images(root: Path) -> None:
    (root / "unlabeled").mkdir(parents=True)
    (root / "unlabeled" / "a.txt").write_text("x")
    (root / "classnames.txt").write_text("cat\n")


def _unknown_folder(root: Path) -> None:
    make_folder(root, splits={"train": 1}, unlabeled=0)
    write_image(root / "train" / "zebra" / "0.png")


def _duplicate(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2)
    (root / "classnames.txt").write_text("red fox\nblue jay\nred_fox\n")


def _empty(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2)
    (root / "classnames.txt").write_text("red fox\n\nblue jay\n")


def _no_classes(root: Path) -> None:
    make_folder(root, splits={}, unlabeled=2, classnames_file=False)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_no_root, "dataset folder not found"),
        (_no_images, "no images found"),
        (_unknown_folder, "class folder 'zebra' is not a class name"),
        (_duplicate, "duplicate class name 'red_fox' (same as line 1)"),
        (_empty, "empty class name"),
        (_no_classes, "no class names"),
    ],
)
def test_folder_errors_are_one_line_user_errors(tmp_path, build, message):
    root = tmp_path / "data"
    build(root)
    with pytest.raises(InputFileError) as info:
        build_dataset(folder_cfg(root, tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------- runs
def folder_argv(env: dict, root: Path, trainer: str, config: str, out: Path, *opts: str, flags: tuple = ()) -> list:
    """``train.py`` arguments on a Folder dataset with the real YAMLs (size, epochs, paths, workers overridden)."""
    return [
        "--root", str(root), "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", str(ROOT / "configs/datasets/folder.yaml"),
        "--config-file", str(ROOT / f"configs/trainers/{trainer}/{config}.yaml"), "--output-dir", str(out), *flags,
        "MODEL.BACKBONE.NAME", env["student"], "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "2",
        "DATALOADER.NUM_WORKERS", "0", "DATASET.CACHE_DIR", env["cache"], *opts,
    ]  # fmt: skip


def kd_opts(env: dict, teacher: str) -> tuple[str, ...]:
    return ("DATASET.NUM_SHOTS", "0", "TRAINER.MODAL", "cross", "TRAINER.PROMPTKD.TEACHER_CLIP", env["teacher"],
            "TRAINER.PROMPTKD.TEACHER_CKPT", teacher)  # fmt: skip


@pytest.fixture(scope="module")
def folder_world(trainer_env, tmp_path_factory):
    """A Folder dataset, a PromptSRC teacher trained on its train/ (4 shots) and a PromptKD student distilled on
    unlabeled/ + train/ from it: the README's commands."""
    base = tmp_path_factory.mktemp("folder_world")
    root = make_folder(base / "data", unlabeled=15)
    teacher = base / "teacher"
    teacher_opts = ("MODEL.BACKBONE.NAME", trainer_env["teacher"], "DATASET.NUM_SHOTS", "4")
    run_train(folder_argv(trainer_env, root, "PromptSRC", "vit_l14_c2_ep20_batch8_4+4ctx", teacher, *teacher_opts))
    student = base / "student"
    trainer = run_train(
        folder_argv(trainer_env, root, "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx", student,
                    *kd_opts(trainer_env, str(teacher)))
    )  # fmt: skip
    return {"root": root, "teacher": teacher, "student": student, "base": base, "trainer": trainer}


def predict(*argv: str):
    import predict as predict_cli

    return predict_cli.main([str(a) for a in argv])


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def csv_accuracy(rows: list[dict[str, str]]) -> float:
    correct = [Path(r["path"]).parent.name.replace("_", " ") == r["label"] for r in rows]
    return 100.0 * sum(correct) / len(correct)


def test_distillation_on_unlabeled_images_and_predict_matches_the_evaluator(folder_world, tmp_path):
    student = folder_world["student"]
    trainer = folder_world["trainer"]
    assert len(trainer.train_loader_x.dataset) == 15 + 5 * 4  # unlabeled/ + train/, labels never read
    assert (student / "classnames.txt").read_text().splitlines() == CLASSES
    reported = last_accuracy(student, "final")
    out = tmp_path / "labels.csv"
    predict("--model-dir", student, folder_world["root"] / "test", "--output", out, "--topk", "3",
            "--batch-size", "4")  # fmt: skip
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2", "label_3", "probability_3"]
    assert len(rows) == 15 and all(r["path"].lower().endswith((".jpg", ".jpeg")) for r in rows)
    assert csv_accuracy(rows) == pytest.approx(reported)
    for r in rows:
        probabilities = [float(r[k]) for k in ("probability", "probability_2", "probability_3")]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-5
        assert len({r["label"], r["label_2"], r["label_3"]}) == 3


def test_exported_student_predicts_the_same_labels_and_probabilities(folder_world, tmp_path):
    student, test_dir = folder_world["student"], folder_world["root"] / "test"
    exported = tmp_path / "student.pt"
    predict("--model-dir", student, "--export", exported)
    payload = torch.load(exported, weights_only=True)
    assert payload["classnames"] == CLASSES and payload["kind"] == "fixed_classifier"
    assert payload["provenance"]["trainer"] == "PromptKD" and payload["provenance"]["dataset"] == "Folder"
    config_text = (student / "config.yaml").read_bytes()
    assert payload["provenance"]["config_sha256"] == hashlib.sha256(config_text).hexdigest()
    assert payload["provenance"]["git_commit"] == git_commit(ROOT)
    assert payload["input"]["SIZE"] == [32, 32] and payload["input"]["INTERPOLATION"] == "bicubic"
    assert not any(k.startswith(("transformer.", "token_embedding")) for k in payload["state_dict"])  # no text tower
    from_dir, from_file = tmp_path / "dir.csv", tmp_path / "file.csv"
    predict("--model-dir", student, test_dir, "--output", from_dir, "--topk", "2")
    predict("--model", exported, test_dir, "--output", from_file, "--topk", "2")
    assert read_csv(from_file) == read_csv(from_dir)

    from trainers.common.inference import load_exported_model

    loaded = load_exported_model(str(exported))
    image = read_image(sorted(test_dir.rglob("*.jpg"))[0])
    with torch.no_grad():
        probabilities = loaded.model(loaded.transform(image)[None]).softmax(-1)[0]
    first = read_csv(from_dir)[0]
    assert loaded.classnames[int(probabilities.argmax())] == first["label"]
    assert float(probabilities.max()) == pytest.approx(float(first["probability"]), abs=1e-6)


def test_predict_table_jsonl_and_stray_files(folder_world, tmp_path, capsys):
    images = tmp_path / "mixed"
    write_image(images / "a" / "one.PNG", 0, 5)
    write_image(images / "two.jpeg", 2, 5)
    (images / "notes.txt").write_text("not an image")
    rows = predict("--model-dir", folder_world["student"], images)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "label", "probability"] and len(table) == 2 + 2
    assert [len(r) for r in rows] == [1, 1]
    out = tmp_path / "labels.jsonl"
    predict("--model-dir", folder_world["student"], images, "--output", out, "--topk", "2")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["one.PNG", "two.jpeg"]  # sorted paths, notes.txt skipped
    assert all(r["label"] == r["top"][0]["label"] and len(r["top"]) == 2 for r in records)


def test_folder_without_test_trains_and_saves_the_student(folder_world, trainer_env, tmp_path, caplog):
    root = make_folder(tmp_path / "data", splits={}, unlabeled=8)
    out = tmp_path / "student"
    with caplog.at_level(logging.WARNING):
        run_train(folder_argv(trainer_env, root, "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx", out,
                              *kd_opts(trainer_env, str(folder_world["teacher"]))))  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "nothing can be evaluated" in r.getMessage()]
    assert len(said) == 1
    assert (out / "VLPromptLearner" / "model.pth.tar-2").is_file()
    assert not (out / "results.jsonl").exists() or "final" not in (out / "results.jsonl").read_text()


def test_supervised_trainer_without_train_folder_fails_before_writing(trainer_env, tmp_path):
    root = make_folder(tmp_path / "data", splits={"test": 1}, unlabeled=4)
    out = tmp_path / "coop"
    with pytest.raises(InputFileError, match="CoOp trains on labeled images but the dataset has none"):
        run_train(folder_argv(trainer_env, root, "CoOp", "vit_b16_ep50", out))
    assert not (out / "config.yaml").exists() and not (out / "classnames.txt").exists()


SHOTS = ("DATASET.NUM_SHOTS", "2")
KD_CONFIG, DESIGN = "PromptKD/vit_b16_c2_ep20_batch8_4+4ctx", "TRAINER.PROMPTKD.STUDENT_DESIGN"
PRODA_SMALL = ("TRAINER.PRODA.N_CTX", "4", "TRAINER.PRODA.N_PROMPT", "4", "TRAINER.PRODA.PROMPT_BATCH_SIZE", "2")
RUNS = {
    "ZeroshotCLIP": ("ZeroshotCLIP", "CoOp/vit_b16", (), True),
    "CoOp": ("CoOp", "CoOp/vit_b16_ep50", (*SHOTS, "TRAINER.COOP.N_CTX", "4"), False),
    "CoCoOp": ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1", SHOTS, False),
    "IVLP": ("IVLP", "IVLP/vit_b16_c2_ep20_batch8_4+4ctx", SHOTS, False),
    "MaPLe": ("MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx", (*SHOTS, "TRAINER.MAPLE.PROMPT_DEPTH", "2"), False),
    "PromptSRC": ("PromptSRC", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx", SHOTS, False),
    "ProDA": ("ProDA", "ProDA/vit_b16_c16_ep100_batch4", (*SHOTS, *PRODA_SMALL), False),
    "PromptKD-coop": ("PromptKD", KD_CONFIG, (DESIGN, "coop"), False),
    "PromptKD-ivlp": ("PromptKD", KD_CONFIG, (DESIGN, "ivlp"), False),
    "PromptKD-maple": ("PromptKD", KD_CONFIG, (DESIGN, "maple", "TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT", "2"), False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(RUNS))
def test_predict_and_export_for_every_trainers_run_folder(case, folder_world, trainer_env, tmp_path):
    trainer, config, opts, eval_only = RUNS[case]
    method, _, config_name = config.partition("/")
    if trainer == "PromptKD":
        opts = (*kd_opts(trainer_env, str(folder_world["teacher"])), *opts)
    out = tmp_path / "run"
    argv = folder_argv(trainer_env, folder_world["root"], method, config_name, out, *opts,
                       flags=("--eval-only",) if eval_only else ())  # fmt: skip
    argv[argv.index(method)] = trainer
    run_train(argv)
    reported = last_accuracy(out, "eval_only" if eval_only else "final")
    test_dir = folder_world["root"] / "test"
    from_dir, from_file, exported = tmp_path / "dir.csv", tmp_path / "file.csv", tmp_path / "model.pt"
    predict("--model-dir", out, test_dir, "--output", from_dir, "--topk", "2", "--batch-size", "8")
    assert csv_accuracy(read_csv(from_dir)) == pytest.approx(reported)
    predict("--model-dir", out, "--export", exported)
    predict("--model", exported, test_dir, "--output", from_file, "--topk", "2", "--batch-size", "8")
    assert read_csv(from_file) == read_csv(from_dir)


@pytest.mark.parametrize("teacher", ["checkpoint-file", "none"])
def test_other_teachers_distil_on_the_folder(teacher, folder_world, trainer_env, tmp_path):
    """The README's other teacher choices: a checkpoint file (as the released teachers are), with the
    cross-dataset YAML, and a zero-shot teacher (``TEACHER_CKPT none``)."""
    if teacher == "none":
        config, ckpt = "vit_b16_c2_ep20_batch8_4+4ctx", "none"
    else:
        config = "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"
        ckpt = str(folder_world["teacher"] / "VLPromptLearner" / "model.pth.tar-2")
    out = tmp_path / "student"
    run_train(folder_argv(trainer_env, folder_world["root"], "PromptKD", config, out, *kd_opts(trainer_env, ckpt)))
    labels = tmp_path / "labels.csv"
    predict("--model-dir", out, folder_world["root"] / "test", "--output", labels)
    assert csv_accuracy(read_csv(labels)) == pytest.approx(last_accuracy(out, "final"))


def test_classnames_flag_for_a_run_without_saved_names(folder_world, tmp_path):
    """An older run: no classnames.txt (``--classnames FILE``), a config key this version does not define."""
    run = tmp_path / "old_run"
    shutil.copytree(folder_world["student"], run)
    (run / "classnames.txt").unlink()
    with open(run / "config.yaml", "a") as f:  # a key of a plugin not loaded now (or of another version)
        f.write("PLUGIN_OPTIONS:\n  SOMETHING: 1\n")
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"my {c}" for c in CLASSES) + "\n")
    with_flag, original = tmp_path / "flag.csv", tmp_path / "original.csv"
    predict("--model-dir", run, folder_world["root"] / "test", "--classnames", names, "--output", with_flag)
    predict("--model-dir", folder_world["student"], folder_world["root"] / "test", "--output", original)
    renamed = [{**r, "label": f"my {r['label']}"} for r in read_csv(original)]
    assert read_csv(with_flag) == renamed


def test_base2novel_on_a_folder_scores_base_and_novel_classes(folder_world, trainer_env, tmp_path):
    out = tmp_path / "student"
    opts = [*kd_opts(trainer_env, str(folder_world["teacher"]))]
    opts[opts.index("cross")] = "base2novel"
    run_train(folder_argv(trainer_env, folder_world["root"], "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx", out, *opts))
    final = [r for r in read_results(out) if r.get("phase") == "final"]
    assert {r.get("classes") for r in final} >= {"base", "new"}
