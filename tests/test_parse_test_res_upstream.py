"""parse_test_res.py in upstream mode: upstream's printed lines and numbers, weaknesses fixed."""

from __future__ import annotations

import os

import pytest

from reporting.cli import main
from reporting.logparse import parse_log_text, upstream_metric_regex
from tests.helpers.result_trees import eval_log, upstream_log, write


def _seed_tree(root, finals, val_accs=(99.9, 98.8), name="exp") -> str:
    directory = os.path.join(str(root), name)
    for seed, final in enumerate(finals, 1):
        write(
            os.path.join(directory, f"seed{seed}", "log.txt"),
            upstream_log("OxfordPets", seed, "CoOp", final, val_accs=list(val_accs)),
        )
    return directory


def _run(capsys, argv) -> tuple[int, list[str], str]:
    """Exit code, stdout lines, and stderr (warnings)."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_single_experiment_prints_upstream_lines_with_population_std(tmp_path, capsys):
    directory = _seed_tree(tmp_path, [90.0, 92.0, 94.0])
    code, lines, _ = _run(capsys, [directory])
    assert code == 0
    # per-epoch val results (99.9, 98.8) come before "Finish training" and are ignored
    assert lines == [
        "===",
        f"Parsing files in {directory}",
        f"file: {directory}/seed1/log.txt. accuracy: 90.0%. ",
        f"file: {directory}/seed2/log.txt. accuracy: 92.0%. ",
        f"file: {directory}/seed3/log.txt. accuracy: 94.0%. ",
        "* average accuracy: 92.0% +- 1.6%",  # population std sqrt(8/3) = 1.63, not the sample std 2.0
        "===",
    ]


def test_ci95_and_keyword(tmp_path, capsys):
    directory = _seed_tree(tmp_path, [90.0, 92.0, 94.0])
    _, lines, _ = _run(capsys, [directory, "--ci95"])
    assert lines[-2] == "* average accuracy: 92.0% +- 1.8%"  # 1.96 * 1.633 / sqrt(3) = 1.848
    _, lines, _ = _run(capsys, [directory, "--keyword", "macro_f1"])
    assert lines[2] == f"file: {directory}/seed1/log.txt. macro_f1: 89.5%. "
    assert lines[-2] == "* average macro_f1: 91.5% +- 1.6%"
    _, lines, _ = _run(capsys, [directory, "--keyword", "error"])
    assert lines[-2] == "* average error: 8.0% +- 1.6%"


def test_multi_exp(tmp_path, capsys):
    _seed_tree(tmp_path, [90.0, 92.0], name="exp_a")
    _seed_tree(tmp_path, [70.0, 75.0], name="exp_b")
    root = str(tmp_path)
    code, lines, _ = _run(capsys, [root, "--multi-exp"])
    assert code == 0
    assert lines == [
        "===",
        f"Parsing files in {root}/exp_a",
        f"file: {root}/exp_a/seed1/log.txt. accuracy: 90.0%. ",
        f"file: {root}/exp_a/seed2/log.txt. accuracy: 92.0%. ",
        "* average accuracy: 91.0% +- 1.0%",
        "===",
        "===",
        f"Parsing files in {root}/exp_b",
        f"file: {root}/exp_b/seed1/log.txt. accuracy: 70.0%. ",
        f"file: {root}/exp_b/seed2/log.txt. accuracy: 75.0%. ",
        "* average accuracy: 72.5% +- 2.5%",
        "===",
        "Average performance",
        "* accuracy: 81.8%",  # mean of 91.0 and 72.5 = 81.75
    ]


def test_test_log_reads_eval_only_runs(tmp_path, capsys):
    directory = str(tmp_path / "test_new")
    for seed, acc in enumerate([80.0, 85.0], 1):
        write(os.path.join(directory, f"seed{seed}", "log.txt"), eval_log("DescribableTextures", seed, "CoOp", acc))
    code, lines, _ = _run(capsys, [directory, "--test-log"])
    assert code == 0
    assert lines[2:] == [
        f"file: {directory}/seed1/log.txt. accuracy: 80.0%. ",
        f"file: {directory}/seed2/log.txt. accuracy: 85.0%. ",
        "* average accuracy: 82.5% +- 2.5%",
        "===",
    ]
    # Without --test-log an eval-only log has no "Finish training": nothing found, non-zero exit.
    code, _, err = _run(capsys, [directory, "--table", "upstream"])
    assert code == 1 and "Nothing found" in err


def test_stray_entries_are_skipped_with_warning_and_strict_fails(tmp_path, capsys):
    directory = _seed_tree(tmp_path, [90.0, 92.0])
    write(os.path.join(directory, "notes.txt"), "not a run\n")
    os.makedirs(os.path.join(directory, "seed9_crashed"))
    code, lines, err = _run(capsys, [directory])
    assert code == 0
    assert lines[-2] == "* average accuracy: 91.0% +- 1.0%"
    assert "notes.txt" in err and "seed9_crashed" in err
    code, _, _ = _run(capsys, [directory, "--strict"])
    assert code == 1


def test_rerun_appended_to_log_is_read_per_invocation(tmp_path, capsys):
    directory = str(tmp_path / "exp")
    # seed1: a finished run, then a re-run appended to the same log that was interrupted after an epoch whose
    # val result (50.0) comes after the first run's "Finish training": upstream would report 50.0.
    log1 = os.path.join(directory, "seed1", "log.txt")
    write(log1, upstream_log("OxfordPets", 1, "CoOp", 90.0))
    write(log1, upstream_log("OxfordPets", 1, "CoOp", None, val_accs=[50.0, 51.0]), append=True)
    # seed2: an interrupted run, then a resumed run appended that finished with 94.0
    log2 = os.path.join(directory, "seed2", "log.txt")
    write(log2, upstream_log("OxfordPets", 2, "CoOp", None, val_accs=[60.0, 61.0]))
    write(log2, upstream_log("OxfordPets", 2, "CoOp", 94.0, val_accs=[70.0, 71.0]), append=True)
    assert len(parse_log_text(open(log1).read())) == 2
    _, lines, _ = _run(capsys, [directory])
    assert lines[2:4] == [f"file: {log1}. accuracy: 90.0%. ", f"file: {log2}. accuracy: 94.0%. "]
    assert lines[4] == "* average accuracy: 92.0% +- 2.0%"


def test_legacy_timestamped_logs_are_read(tmp_path, capsys):
    directory = str(tmp_path / "exp")
    write(os.path.join(directory, "seed1", "log.txt"), upstream_log("OxfordPets", 1, "CoOp", None))
    newer = write(
        os.path.join(directory, "seed1", "log.txt-2024-03-01-12-00-00"), upstream_log("OxfordPets", 1, "CoOp", 93.0)
    )
    write(os.path.join(directory, "seed2", "log.txt"), upstream_log("OxfordPets", 2, "CoOp", 91.0))
    _, lines, _ = _run(capsys, [directory])
    assert lines[2] == f"file: {newer}. accuracy: 93.0%. "
    assert lines[4] == "* average accuracy: 92.0% +- 1.0%"


def test_keyword_is_regex_escaped():
    regex = upstream_metric_regex("macro.f1")
    assert regex.search("* macro.f1: 12.5%").group(1) == "12.5"
    assert regex.search("* macro_f1: 12.5%") is None  # upstream's unescaped '.' would match this
    assert upstream_metric_regex("accuracy").search("* accuracy: 1.5e+01%").group(1) == "1.5e+01"


def test_output_file_is_written(tmp_path, capsys):
    directory = _seed_tree(tmp_path, [90.0, 92.0])
    out = tmp_path / "res" / "upstream.txt"
    assert main([directory, "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text().splitlines()[-2] == "* average accuracy: 91.0% +- 1.0%"
    assert not [p for p in os.listdir(out.parent) if p.startswith(".tmp")]


def test_missing_directory_is_an_error(tmp_path, capsys):
    code, _, err = _run(capsys, [str(tmp_path / "nope")])
    assert code == 1 and "not a folder" in err


@pytest.mark.parametrize("signal", ["Finish training", "=> result"])
def test_invocation_values_follow_upstream_rule(signal):
    text = upstream_log("OxfordPets", 1, "CoOp", 77.0, val_accs=[60.0, 65.0])
    (inv,) = parse_log_text(text)
    value = inv.upstream_value(upstream_metric_regex("accuracy"), (signal,))
    assert value == 77.0  # the last match after the signal
    assert inv.config["DATASET.NAME"] == "OxfordPets" and inv.config["DATALOADER.TEST.BATCH_SIZE"] == "100"
    assert inv.args["seed"] == "1" and not inv.eval_only and inv.finished
    assert [b.split for b in inv.blocks] == ["val", "val", "test"]
    assert inv.final_block().metrics == {
        "total": 1000.0,
        "correct": 770.0,
        "accuracy": 77.0,
        "error": 23.0,
        "macro_f1": 76.5,
    }


def test_old_dassl_finished_training_signal(tmp_path, capsys):
    directory = str(tmp_path / "exp")
    text = upstream_log("OxfordPets", 1, "CoOp", 88.0, val_accs=[10.0, 20.0]).replace(
        "Finish training", "Finished training"
    )
    write(os.path.join(directory, "seed1", "log.txt"), text)
    code, lines, _ = _run(capsys, [directory])
    assert code == 0 and lines[2] == f"file: {directory}/seed1/log.txt. accuracy: 88.0%. "
    (inv,) = parse_log_text(text)
    assert inv.finished and inv.final_block().metrics["accuracy"] == 88.0
