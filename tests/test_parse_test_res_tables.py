"""parse_test_res.py tables from results.jsonl and log trees: pairing, HM, spreads, formats, compare, gaps."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys

import pytest

from reporting.cli import main
from reporting.runs import collect_runs
from reporting.tables import build_tables
from tests.helpers.result_trees import (
    eval_log,
    jsonl_record,
    promptkd_b2n_run,
    upstream_log,
    write,
    write_jsonl,
)

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "configs", "reference", "promptkd_cvpr2024.json")
PETS = {1: (90.0, 80.0), 2: (92.0, 82.0), 3: (94.0, 84.0)}
DTD = {1: (70.0, 50.0), 2: (71.0, 53.0), 3: (75.0, 53.0)}


def _hm(b, n):
    return 2 * b * n / (b + n)


def _mean(xs):
    return sum(xs) / len(xs)


def _sample_std(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _promptkd_tree(root, drop=()):
    for folder, dataset, values in (("oxford_pets", "OxfordPets", PETS), ("dtd", "DescribableTextures", DTD)):
        for seed, (base, novel) in values.items():
            if (dataset, seed) in drop:
                promptkd_b2n_run(str(root), folder, dataset, seed, None, None)  # started, never finished
            else:
                promptkd_b2n_run(str(root), folder, dataset, seed, base, novel)
    return str(root)


def _json_tables(capsys, argv):
    """Exit code, the JSON tables from stdout, stderr."""
    capsys.readouterr()
    code = main(argv + ["--format", "json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)["tables"], captured.err


def test_promptkd_base2novel_pairs_and_averages(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    code, tables, _ = _json_tables(capsys, [root])
    assert code == 0
    (table,) = tables
    assert table["kind"] == "base2novel" and table["trainer"] == "PromptKD" and table["shots"] == 0
    assert table["experiment"] == "base2new/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx"
    rows = {r["key"]: r for r in table["rows"]}
    assert list(rows) == ["OxfordPets", "DescribableTextures"]  # paper order
    pets = rows["OxfordPets"]["cells"]
    assert pets["base"]["mean"] == pytest.approx(92.0) and pets["base"]["spread"] == pytest.approx(2.0)
    assert pets["novel"]["values"] == [80.0, 82.0, 84.0]
    hms = [_hm(b, n) for b, n in PETS.values()]
    assert pets["hm"]["mean"] == pytest.approx(_mean(hms), rel=1e-12)  # per seed, then averaged ...
    assert pets["hm"]["mean"] != pytest.approx(_hm(92.0, 82.0), rel=1e-9)  # ... not the HM of the means
    assert pets["hm"]["spread"] == pytest.approx(_sample_std(hms))
    dtd = rows["DescribableTextures"]["cells"]
    assert dtd["base"]["mean"] == pytest.approx(72.0) and dtd["base"]["spread"] == pytest.approx(
        _sample_std([70, 71, 75])
    )
    avg = table["average"]
    assert avg["label"] == "Average (2)"
    assert avg["cells"]["base"]["mean"] == pytest.approx((92.0 + 72.0) / 2)
    assert avg["cells"]["novel"]["mean"] == pytest.approx((82.0 + 52.0) / 2)
    assert avg["cells"]["hm"]["mean"] == pytest.approx(_hm(82.0, 67.0))  # paper's Average-row convention
    per_seed_base = [(PETS[s][0] + DTD[s][0]) / 2 for s in (1, 2, 3)]
    assert avg["cells"]["base"]["spread"] == pytest.approx(_sample_std(per_seed_base))
    assert table["problems"] == []


def test_ci95_uses_sample_std(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    _, tables, _ = _json_tables(capsys, [root, "--ci95"])
    pets = tables[0]["rows"][0]["cells"]
    assert tables[0]["spread"] == "ci95"
    assert pets["base"]["spread"] == pytest.approx(1.96 * 2.0 / math.sqrt(3))


def test_text_table(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    assert main([root]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Base-to-novel: base2new/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx (shots 0)"
    assert lines[1].split() == ["Dataset", "Base", "Novel", "HM", "Seeds"]
    pets_hm = _mean([_hm(b, n) for b, n in PETS.values()])
    assert lines[3].startswith("OxfordPets ") and "92.00 ± 2.00" in lines[3] and "82.00 ± 2.00" in lines[3]
    assert f"{pets_hm:.2f} ± " in lines[3] and lines[3].endswith("3")
    assert lines[4].startswith("DTD ")
    assert lines[6].startswith("Average (2)") and f"{_hm(82.0, 67.0):.2f}" in lines[6]
    assert "accuracy (%), mean ± sample std (ddof=1) over seeds." in lines


def test_markdown_csv_and_output_file(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    out = tmp_path / "tables" / "b2n.md"
    assert main([root, "--format", "markdown", "--output", str(out), "--decimals", "1"]) == 0
    md = out.read_text().splitlines()
    assert md[0] == "### Base-to-novel: base2new/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx (shots 0)"
    assert "| Dataset | Base | Novel | HM | Seeds |" in md
    assert "| OxfordPets | 92.0 ± 2.0 | 82.0 ± 2.0 | 86.7 ± 2.0 | 3 |" in md
    assert any(line.startswith("| **Average (2)** | **82.0 ± ") for line in md)

    assert main([root, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3 * 3  # 2 datasets + Average, 3 columns each
    pets_base = next(r for r in rows if r["row"] == "OxfordPets" and r["column"] == "base")
    assert float(pets_base["mean"]) == 92.0 and float(pets_base["spread"]) == 2.0 and pets_base["n"] == "3"
    assert pets_base["spread_kind"] == "std" and pets_base["table"] == "base2novel"


def test_missing_and_unfinished_seeds_are_listed_and_marked(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output", drop={("DescribableTextures", 3)})
    os.remove(
        os.path.join(
            root,
            "base2new",
            "train_base",
            "oxford_pets",
            "shots_0",
            "PromptKD",
            "vit_b16_c2_ep20_batch8_4+4ctx",
            "seed_2",
            "results.jsonl",
        )
    )
    code, tables, log = _json_tables(capsys, [root])
    assert code == 0
    table = tables[0]
    rows = {r["key"]: r for r in table["rows"]}
    assert rows["DescribableTextures"]["n"] == 2 and rows["DescribableTextures"]["partial"]
    assert rows["DescribableTextures"]["cells"]["base"]["mean"] == pytest.approx(70.5)  # seeds 1, 2 only
    assert rows["OxfordPets"]["cells"]["base"]["values"] == [90.0, 94.0]
    assert rows["OxfordPets"]["seeds"] == [1, 3] and rows["DescribableTextures"]["seeds"] == [1, 2]
    described = [p["description"] for p in table["problems"]]
    assert len(described) == 2
    assert described[0] == "OxfordPets, seed 2: base and novel results: no run found"
    assert described[1].startswith("DTD, seed 3: base and novel results: no final result (run unfinished?) in ")
    assert described[1].endswith(os.path.join("dtd", "shots_0", "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx", "seed_3"))
    assert table["average"]["partial"]
    assert "left out: DTD, seed 3" in log

    assert main([root]) == 0
    text = capsys.readouterr().out
    assert "2/3*" in text and "Missing or unfinished runs (excluded from the means):" in text
    assert main([root, "--strict"]) == 1
    capsys.readouterr()


def test_expected_seeds_flag(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    code, tables, _ = _json_tables(capsys, [root, "--seeds", "1", "2", "3", "4", "--strict"])
    assert code == 1
    assert tables[0]["rows"][0]["expected"] == 4
    assert [p["description"] for p in tables[0]["problems"]] == [
        "OxfordPets, seed 4: base and novel results: no run found",
        "DTD, seed 4: base and novel results: no run found",
    ]


def test_summary_record_alone_gives_base_and_novel(tmp_path):
    run_dir = tmp_path / "out" / "seed_1"
    write_jsonl(
        str(run_dir / "results.jsonl"),
        [
            {
                "event": "summary",
                "base": 81.0,
                "novel": 71.0,
                "hm": _hm(81.0, 71.0),
                "dataset": "EuroSAT",
                "trainer": "PromptKD",
                "seed": 1,
                "num_shots": 0,
                "modal": "base2novel",
            }
        ],
    )
    (table,) = build_tables(collect_runs(str(tmp_path / "out")))
    assert table.kind == "base2novel"
    assert table.rows[0].cells["hm"].mean == pytest.approx(_hm(81.0, 71.0))


def _two_run_tree(root, use_logs: bool) -> str:
    """PromptSRC-style: train_base/<ds>/shots_16/PromptSRC/<cfg>/seed<S> + test_new/... (eval-only)."""
    common = os.path.join("{split}", "eurosat", "shots_16", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", "seed{s}")
    for seed, (base, novel) in {1: (90.0, 70.0), 2: (88.0, 74.0)}.items():
        train_dir = os.path.join(root, common.format(split="train_base", s=seed))
        test_dir = os.path.join(root, common.format(split="test_new", s=seed))
        if use_logs:
            write(
                os.path.join(train_dir, "log.txt"),
                upstream_log("EuroSAT", seed, "PromptSRC", base, val_accs=[10.0, 20.0], subsample="base"),
            )
            write(os.path.join(test_dir, "log.txt"), eval_log("EuroSAT", seed, "PromptSRC", novel))
        else:
            write_jsonl(
                os.path.join(train_dir, "results.jsonl"),
                [
                    jsonl_record("EuroSAT", seed, "PromptSRC", 11.0, "base", phase="epoch", split="val", shots=16),
                    jsonl_record("EuroSAT", seed, "PromptSRC", base, "base", shots=16, subsample="base"),
                ],
            )
            write_jsonl(
                os.path.join(test_dir, "results.jsonl"),
                [
                    jsonl_record(
                        "EuroSAT", seed, "PromptSRC", novel, "new", phase="eval_only", shots=16, subsample="new"
                    )
                ],
            )
    return root


@pytest.mark.parametrize("use_logs", [False, True], ids=["jsonl", "logs"])
def test_two_run_method_pairs_train_base_with_test_new(tmp_path, use_logs):
    root = _two_run_tree(str(tmp_path / "output" / "base2new"), use_logs)
    (table,) = build_tables(collect_runs(root))
    assert table.kind == "base2novel" and table.trainer == "PromptSRC" and table.shots == 16
    (row,) = table.rows
    assert row.label == "EuroSAT" and row.n == 2
    assert row.cells["base"].values == (90.0, 88.0) and row.cells["novel"].values == (70.0, 74.0)
    assert row.cells["hm"].mean == pytest.approx((_hm(90, 70) + _hm(88, 74)) / 2)
    assert table.problems == []


def test_upstream_promptkd_log_base_is_best_val(tmp_path):
    # Upstream PromptKD: val = base-class test images, best-val checkpoint deployed; the final test is novel.
    run_dir = tmp_path / "out" / "seed_1"
    write(
        str(run_dir / "log.txt"),
        upstream_log("Caltech101", 1, "PromptKD", 91.0, val_accs=[95.0, 97.0, 96.0], epochs=3, shots=0),
    )
    (run,) = collect_runs(str(tmp_path / "out"))
    assert run.results["base"]["accuracy"] == 97.0 and run.results["new"]["accuracy"] == 91.0


def test_rerun_appended_to_jsonl_replaces_final(tmp_path):
    run_dir = tmp_path / "out" / "caltech101" / "seed1"
    write_jsonl(str(run_dir / "results.jsonl"), [jsonl_record("Caltech101", 1, "CoOp", 80.0, "all")])
    write_jsonl(
        str(run_dir / "results.jsonl"),
        [
            jsonl_record("Caltech101", 1, "CoOp", 60.0, "all", phase="epoch"),
            jsonl_record("Caltech101", 1, "CoOp", 85.0, "all"),
        ],
        append=True,
    )
    with open(run_dir / "results.jsonl", "a") as f:
        f.write('{"event": "eval", "trunc')  # a line cut by a crash is skipped
    (run,) = collect_runs(str(tmp_path / "out"))
    assert run.results["all"]["accuracy"] == 85.0


def _cross_tree(root) -> str:
    values = {"caltech101": [93.0, 94.0], "imagenet_r": [76.0, 78.0], "dtd": [45.0, 46.0], "imagenet": [70.0, 72.0]}
    for folder, accs in values.items():
        for seed, acc in enumerate(accs, 1):
            run_dir = os.path.join(root, "evaluation", "PromptSRC", "cfg_16shots", folder, f"seed{seed}")
            dataset = {
                "caltech101": "Caltech101",
                "imagenet_r": "ImageNetR",
                "dtd": "DescribableTextures",
                "imagenet": "ImageNet",
            }[folder]
            write_jsonl(
                os.path.join(run_dir, "results.jsonl"),
                [jsonl_record(dataset, seed, "PromptSRC", acc, "all", phase="eval_only", shots=16, modal="cross")],
            )
    return root


def test_cross_dataset_table_with_source_and_compare(tmp_path, capsys):
    root = _cross_tree(str(tmp_path / "output"))
    code, tables, _ = _json_tables(capsys, [root, "--source", "imagenet", "--compare", REFERENCE])
    assert code == 0
    (table,) = tables
    assert table["kind"] == "cross" and table["experiment"] == "evaluation/PromptSRC/cfg_Kshots"
    assert [r["label"] for r in table["rows"]] == ["ImageNet (source)", "Caltech101", "DTD", "ImageNet-R"]
    avg = table["average"]
    assert avg["label"] == "Average (3)"
    assert avg["cells"]["accuracy"]["mean"] == pytest.approx((93.5 + 45.5 + 77.0) / 3)
    rows = {r["key"]: r for r in table["rows"]}
    assert rows["Caltech101"]["reference"] == {"accuracy": 93.60}  # paper Table 2, PromptSRC
    assert rows["Caltech101"]["diff"]["accuracy"] == pytest.approx(93.5 - 93.60)
    assert rows["ImageNetR"]["reference"] == {"accuracy": 77.80}  # DG table
    # The paper's Average covers 10 other targets: the reference mean over the same 3 datasets is used instead.
    assert avg["reference"]["accuracy"] == pytest.approx((93.60 + 46.87 + 77.80) / 3)


def test_fewshot_table(tmp_path, capsys):
    root = str(tmp_path / "output")
    accs = {
        ("caltech101", 1): [80.0, 82.0],
        ("caltech101", 16): [95.0, 96.0],
        ("eurosat", 1): [50.0, 60.0],
        ("eurosat", 16): [85.0],
    }  # eurosat 16 shots seed 2 missing
    for (folder, shots), values in accs.items():
        for seed, acc in enumerate(values, 1):
            run_dir = os.path.join(root, folder, "CoOp", f"rn50_{shots}shots", "nctx16_cscFalse_ctpend", f"seed{seed}")
            write(
                os.path.join(run_dir, "log.txt"),
                upstream_log(
                    {"caltech101": "Caltech101", "eurosat": "EuroSAT"}[folder], seed, "CoOp", acc, shots=shots
                ),
            )
    code, tables, _ = _json_tables(capsys, [root])
    assert code == 0
    (table,) = tables
    assert table["kind"] == "fewshot"
    assert table["experiment"] == "CoOp/rn50_Kshots/nctx16_cscFalse_ctpend"
    assert [c["label"] for c in table["columns"]] == ["Caltech101", "EuroSAT", "Average"]
    one, sixteen = table["rows"]
    assert one["label"] == "1 shot" and one["cells"]["EuroSAT"]["mean"] == 55.0
    assert one["cells"]["average"]["mean"] == pytest.approx((81.0 + 55.0) / 2)
    assert sixteen["cells"]["EuroSAT"]["n"] == 1 and sixteen["cells"]["EuroSAT"]["partial"]
    assert sixteen["cells"]["average"]["partial"]
    assert [p["description"] for p in table["problems"]] == ["EuroSAT, 16 shots, seed 2: result: no run found"]


def test_compare_with_paper_numbers(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    code, tables, _ = _json_tables(capsys, [root, "--compare", REFERENCE])
    assert code == 0
    rows = {r["key"]: r for r in tables[0]["rows"]}
    assert rows["OxfordPets"]["reference"] == {"base": 96.30, "novel": 98.01, "hm": 97.15}
    assert rows["OxfordPets"]["diff"]["base"] == pytest.approx(92.0 - 96.30)
    assert rows["DescribableTextures"]["reference"]["hm"] == 77.94
    ref_avg = tables[0]["average"]["reference"]  # same two datasets, not the paper's 11-dataset Average
    assert ref_avg["base"] == pytest.approx((96.30 + 85.84) / 2) and ref_avg["novel"] == pytest.approx(84.69)
    assert ref_avg["hm"] == pytest.approx(_hm((96.30 + 85.84) / 2, 84.69))
    assert main([root, "--compare", REFERENCE]) == 0
    text = capsys.readouterr().out
    assert "Ref Base" in text and "Δ HM" in text and "-4.30" in text
    # A method missing from the reference: a warning listing what is available, no reference columns.
    _, tables, log = _json_tables(capsys, [root, "--compare", REFERENCE, "--ref-method", "PromptKDx"])
    assert tables[0]["reference"] is None and "did you mean 'PromptKD'" in log


def test_compare_full_benchmark_uses_published_average(tmp_path, capsys):
    with open(REFERENCE) as f:
        paper = json.load(f)["base2novel"]["PromptKD"]
    for dataset, ref in ((k, v) for k, v in paper.items() if k != "Average"):
        # our numbers: the paper's minus 1 point on base, one seed each
        promptkd_b2n_run(str(tmp_path / "out"), dataset.lower(), dataset, 1, ref["base"] - 1.0, ref["novel"])
    code, tables, _ = _json_tables(capsys, [str(tmp_path / "out"), "--compare", REFERENCE])
    avg = tables[0]["average"]
    assert code == 0 and avg["label"] == "Average (11)"
    assert avg["reference"] == {"base": 86.96, "novel": 80.73, "hm": 83.73}
    assert avg["diff"]["base"] == pytest.approx(-1.0, abs=0.006)
    assert avg["cells"]["base"]["spread"] is None  # one seed: no spread


def test_bad_reference_file(tmp_path, capsys):
    root = _promptkd_tree(tmp_path / "output")
    bad = tmp_path / "ref.json"
    bad.write_text('{"something": {}}')
    assert main([root, "--compare", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # checked before any table is printed
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("error: --compare file has none of the sections") and str(bad) in line
    bad.write_text('{"base2novel": {,}}')
    assert main([root, "--compare", str(bad)]) == 1
    assert f"({bad}, line 1, column 17)" in capsys.readouterr().err


def test_plot_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    root = _promptkd_tree(tmp_path / "output")
    png = tmp_path / "fig" / "b2n.png"
    assert main([root, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not [p for p in os.listdir(png.parent) if p.startswith(".tmp")]


def test_reference_file_is_consistent():
    with open(REFERENCE) as f:
        ref = json.load(f)
    t1 = ref["base2novel"]
    assert set(t1) >= {"CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC", "PromptKD"}
    for method in ("CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC", "PromptKD"):
        rows = {k: v for k, v in t1[method].items() if k != "Average"}
        assert len(rows) == 11
        for key in ("base", "novel"):  # the Average row is the 11-dataset mean
            assert _mean([v[key] for v in rows.values()]) == pytest.approx(t1[method]["Average"][key], abs=0.006)
    cross = ref["cross_dataset"]["PromptKD"]
    assert _mean([v for k, v in cross.items() if k != "Average"]) == pytest.approx(cross["Average"], abs=0.006)
    assert ref["domain_generalization"]["PromptKD"]["ImageNetA"] == 70.36


def test_auto_mode_on_promptkd_seed_folders_gives_the_table(tmp_path, capsys):
    # DIR/seed_1, DIR/seed_2 is upstream's layout, but these runs pair base with novel: a table, not one number.
    root = _promptkd_tree(tmp_path / "output")
    exp = os.path.join(
        root, "base2new", "train_base", "oxford_pets", "shots_0", "PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx"
    )
    assert main([exp]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Base-to-novel: vit_b16_c2_ep20_batch8_4+4ctx (shots 0)")
    assert "OxfordPets" in out and "92.00 ± 2.00" in out
    assert main([exp, "--table", "upstream"]) == 0  # upstream's number on request: results.jsonl, last final record
    assert capsys.readouterr().out.splitlines()[-2] == "* average accuracy: 82.0% +- 1.6%"


def test_log_sourced_values_are_noted(tmp_path, capsys):
    root = _two_run_tree(str(tmp_path / "output"), use_logs=True)
    assert main([root]) == 0
    assert "4 of 4 runs read from log.txt" in capsys.readouterr().out


def test_plot_without_matplotlib_fails_clearly(tmp_path, capsys, monkeypatch):
    root = _promptkd_tree(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main([root, "--plot", str(tmp_path / "b2n.png")]) == 1
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "pip install matplotlib" in err
    assert not (tmp_path / "b2n.png").exists()
