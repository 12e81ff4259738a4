"""The bash scripts under scripts/: syntax, argument/DATA checks, and the exact `train.py`
command lines they produce, recorded by a stub `python` placed first on PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD_DIRS = ("promptkd", "promptsrc", "independent-vlp", "maple", "cocoop", "coop", "zsclip", "proda")
SCRIPTS = sorted(path for folder in METHOD_DIRS for path in (ROOT / "scripts" / folder).glob("*.sh"))
# scripts whose arguments are all optional (dataset list)
OPTIONAL_ARGS = {"reproduce_base2new.sh", "reproduce_xd.sh"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    """Environment with DATA set, a `python` stub first on PATH that appends its argv and cwd as one JSON line,
    and OUTPUT_ROOT inside tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['STUB_LOG'], 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'cuda': os.environ.get('CUDA_VISIBLE_DEVICES')}) + '\\n')\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    data = tmp_path / "data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATA", "OUTPUT_ROOT", "PYTHON", "SEEDS"}}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        DATA=str(data),
        STUB_LOG=str(tmp_path / "calls.jsonl"),
        OUTPUT_ROOT=str(tmp_path / "output"),
    )
    return env


def _run(script: str, *args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args],
        env=env,
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _calls(env: dict[str, str]) -> list[dict]:
    log = Path(env["STUB_LOG"])
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _opts(argv: list[str]) -> dict[str, str]:
    """The trailing KEY VALUE opts after the last --flag (and its value, if any)."""
    flags_with_value = {
        "--root",
        "--seed",
        "--trainer",
        "--dataset-config-file",
        "--config-file",
        "--output-dir",
        "--model-dir",
        "--load-epoch",
    }
    i = 1  # argv[0] is train.py
    while i < len(argv) and argv[i].startswith("--"):
        i += 2 if argv[i] in flags_with_value else 1
    rest = argv[i:]
    assert len(rest) % 2 == 0, rest
    return dict(zip(rest[::2], rest[1::2], strict=True))


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_script_parses_with_bash_n() -> None:
    assert len(SCRIPTS) >= 25
    for script in [*SCRIPTS, ROOT / "scripts" / "common.sh"]:
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{_rel(script)}: {proc.stderr}"


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS), str(ROOT / "scripts" / "common.sh")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_reference_existing_configs() -> None:
    """Every CFG a script names exists under its trainer's config folder (upstream IVLP / PromptSRC-xd did not)."""
    for script in SCRIPTS:
        text = script.read_text()
        cfgs = [c for c in re.findall(r"^CFG=(\S+)$", text, flags=re.M) if not c.startswith("$")]
        trainer = re.search(r"^TRAINER=(\S+)$", text, flags=re.M)
        if not cfgs:
            continue
        folder = "CoOp" if trainer.group(1) == "ZeroshotCLIP" else trainer.group(1)
        for cfg in cfgs:
            path = ROOT / "configs" / "trainers" / folder / f"{cfg}.yaml"
            assert path.is_file(), f"{_rel(script)} names {path.relative_to(ROOT)}, which does not exist"


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.name not in OPTIONAL_ARGS], ids=_rel)
def test_wrong_argument_count_prints_usage(script: Path, stub_env: dict[str, str]) -> None:
    proc = _run(str(script.relative_to(ROOT / "scripts")), env=stub_env)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "argument(s), got 0" in proc.stderr
    assert _calls(stub_env) == []


def test_data_unset_or_missing_is_a_clear_error(stub_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(stub_env)
    del env["DATA"]
    proc = _run("coop/main.sh", "caltech101", "rn50", "end", "16", "1", "False", env=env)
    assert proc.returncode == 2
    assert "DATA environment variable is not set" in proc.stderr
    env["DATA"] = str(tmp_path / "nowhere")
    proc = _run("promptkd/reproduce_xd.sh", env=env)
    assert proc.returncode == 2
    assert f"DATA={tmp_path / 'nowhere'} is not a directory" in proc.stderr
    assert _calls(stub_env) == []


def test_bad_argument_values_are_rejected(stub_env: dict[str, str]) -> None:
    cases = [
        (("coop/main.sh", "caltech101", "rn50", "left", "16", "1", "False"), "CTP must be one of: end middle front"),
        (("coop/main.sh", "caltech101", "rn50", "end", "16", "1", "yes"), "CSC must be one of: True False"),
        (("coop/main.sh", "caltech101", "nope", "end", "16", "1", "False"), "configs/trainers/CoOp/nope.yaml"),
        (("promptkd/base2new_train.sh", "caltech101", "one"), "SEED must be an integer, got 'one'"),
        (("promptkd/base2new_train.sh", "caltech_101", "1"), "unknown dataset 'caltech_101'"),
    ]
    for args, message in cases:
        proc = _run(*args, env=stub_env)
        assert proc.returncode == 2, args
        assert message in proc.stderr, (args, proc.stderr)
    assert _calls(stub_env) == []


def test_coop_main_runs_three_seeds_with_upstream_flags(stub_env: dict[str, str], tmp_path: Path) -> None:
    stub_env["CUDA_VISIBLE_DEVICES"] = "3"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _run("coop/main.sh", "caltech101", "rn50_ep50", "middle", "8", "4", "True", env=stub_env, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(stub_env)
    assert [c["argv"][c["argv"].index("--seed") + 1] for c in calls] == ["1", "2", "3"]
    out = tmp_path / "output"
    for seed, call in enumerate(calls, start=1):
        argv = call["argv"]
        assert call["cwd"] == str(ROOT) and call["cuda"] == "3"
        assert argv[:11] == [
            "train.py",
            "--root",
            stub_env["DATA"],
            "--seed",
            str(seed),
            "--trainer",
            "CoOp",
            "--dataset-config-file",
            "configs/datasets/caltech101.yaml",
            "--config-file",
            "configs/trainers/CoOp/rn50_ep50.yaml",
        ]
        assert (
            _flag(argv, "--output-dir") == f"{out}/caltech101/CoOp/rn50_ep50_4shots/nctx8_cscTrue_ctpmiddle/seed{seed}"
        )
        assert _opts(argv) == {
            "TRAINER.COOP.N_CTX": "8",
            "TRAINER.COOP.CSC": "True",
            "TRAINER.COOP.CLASS_TOKEN_POSITION": "middle",
            "DATASET.NUM_SHOTS": "4",
        }


def test_default_output_tree_is_upstreams_relative_output(stub_env: dict[str, str]) -> None:
    del stub_env["OUTPUT_ROOT"]
    proc = _run("zsclip/zeroshot.sh", "caltech101", "vit_b16", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    (call,) = _calls(stub_env)
    assert call["argv"] == [
        "train.py",
        "--root",
        stub_env["DATA"],
        "--trainer",
        "ZeroshotCLIP",
        "--dataset-config-file",
        "configs/datasets/caltech101.yaml",
        "--config-file",
        "configs/trainers/CoOp/vit_b16.yaml",
        "--output-dir",
        "output/ZeroshotCLIP/vit_b16/caltech101",
        "--eval-only",
    ]
    assert call["cuda"] is None  # never forced to a GPU


def test_kd_weights_file_has_the_per_dataset_values() -> None:
    text = (ROOT / "configs" / "kd_weights.yaml").read_text()
    weights = dict(re.findall(r"^(\w+):\s*([0-9.]+)\s*$", text, flags=re.M))
    assert {k for k, v in weights.items() if float(v) == 200.0} == {"fgvc_aircraft", "oxford_flowers", "dtd"}
    assert len(weights) == 11 and all(float(v) in (200.0, 1000.0) and "." in v for v in weights.values())


@pytest.mark.parametrize(("dataset", "weight"), [("fgvc_aircraft", "200.0"), ("caltech101", "1000.0")])
def test_promptkd_base2new_reads_kd_weight_from_data_file(stub_env, tmp_path, dataset, weight) -> None:
    proc = _run("promptkd/base2new_train.sh", dataset, "0", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    (call,) = _calls(stub_env)
    argv = call["argv"]
    cfg = "vit_b16_c2_ep20_batch8_4+4ctx"
    assert _flag(argv, "--config-file") == f"configs/trainers/PromptKD/{cfg}.yaml"
    assert _flag(argv, "--seed") == "0"
    assert (
        _flag(argv, "--output-dir") == f"{tmp_path}/output/base2new/train_base/{dataset}/shots_0/PromptKD/{cfg}/seed_0"
    )
    assert _opts(argv) == {
        "DATASET.NUM_SHOTS": "0",
        "TRAINER.MODAL": "base2novel",
        "TRAINER.PROMPTKD.TEMPERATURE": "1.0",
        "TRAINER.PROMPTKD.KD_WEIGHT": weight,
    }


def test_base2new_test_loads_the_train_folder(stub_env: dict[str, str], tmp_path: Path) -> None:
    common = "caltech101/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed2"
    proc = _run("maple/base2new_test_maple.sh", "caltech101", "2", env=stub_env)
    assert proc.returncode == 2 and "no trained model in" in proc.stderr
    (tmp_path / "output/base2new/train_base" / common).mkdir(parents=True)
    proc = _run("maple/base2new_test_maple.sh", "caltech101", "2", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    (call,) = _calls(stub_env)
    argv = call["argv"]
    assert _flag(argv, "--model-dir") == f"{tmp_path}/output/base2new/train_base/{common}"
    assert _flag(argv, "--output-dir") == f"{tmp_path}/output/base2new/test_new/{common}"
    assert _flag(argv, "--load-epoch") == "5" and "--eval-only" in argv
    assert _opts(argv) == {"DATASET.NUM_SHOTS": "16", "DATASET.SUBSAMPLE_CLASSES": "new"}


def test_reproduce_base2new_skips_finished_runs_only(stub_env: dict[str, str], tmp_path: Path) -> None:
    base = tmp_path / "output/base2new/train_base"
    cfg = "PromptKD/vit_b16_c2_ep20_batch8_4+4ctx"
    finished_json = base / f"dtd/shots_0/{cfg}/seed_1"
    finished_json.mkdir(parents=True)
    (finished_json / "results.jsonl").write_text(
        json.dumps({"event": "eval", "phase": "epoch", "metrics": {"accuracy": 1.0}})
        + "\n"
        + json.dumps({"event": "summary", "base": 1.0, "novel": 2.0, "hm": 1.3})
        + "\n"
    )
    finished_log = base / f"dtd/shots_0/{cfg}/seed_2"
    finished_log.mkdir(parents=True)
    (finished_log / "log.txt").write_text("epoch [1/1] batch [1/1]\nFinish training\n=> result\n* accuracy: 50.0%\n")
    unfinished = base / f"caltech101/shots_0/{cfg}/seed_1"  # crashed mid-training: resumed, not skipped
    unfinished.mkdir(parents=True)
    (unfinished / "log.txt").write_text("epoch [1/20] batch [1/5]\n")
    (unfinished / "results.jsonl").write_text(json.dumps({"event": "eval", "phase": "epoch"}) + "\n")
    stub_env["SEEDS"] = "1 2"
    proc = _run("promptkd/reproduce_base2new.sh", "dtd", "caltech101", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    runs = [(Path(_flag(c["argv"], "--output-dir")).parts[-5], _flag(c["argv"], "--seed")) for c in _calls(stub_env)]
    assert runs == [("caltech101", "1"), ("caltech101", "2")]
    assert proc.stdout.count("Skipping") == 2
    weights = {_opts(c["argv"])["TRAINER.PROMPTKD.KD_WEIGHT"] for c in _calls(stub_env)}
    assert weights == {"1000.0"}


def test_proda_reproduce_runs_train_then_test_per_dataset_and_seed(stub_env: dict[str, str], tmp_path: Path) -> None:
    cfg = "ProDA/vit_b16_c16_ep100_batch4"
    base = tmp_path / "output/base2new"
    for seed in (1, 2):  # dtd trained already (skipped); its novel-class tests still run
        trained = base / f"train_base/dtd/shots_16/{cfg}/seed{seed}"
        trained.mkdir(parents=True)
        (trained / "results.jsonl").write_text(json.dumps({"event": "eval", "phase": "final"}) + "\n")
    stub_env["SEEDS"] = "1 2"
    proc = _run("proda/reproduce_base2new.sh", "dtd", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Skipping") == 2
    calls = [c["argv"] for c in _calls(stub_env)]
    assert [(_flag(a, "--seed"), _flag(a, "--model-dir"), "--eval-only" in a) for a in calls] == [
        (str(s), str(base / f"train_base/dtd/shots_16/{cfg}/seed{s}"), True) for s in (1, 2)
    ]
    assert [_flag(a, "--output-dir") for a in calls] == [
        str(base / f"test_new/dtd/shots_16/{cfg}/seed{s}") for s in (1, 2)
    ]
    stub_env["SEEDS"] = "1"
    proc = _run(
        "proda/reproduce_base2new.sh", "caltech101", env=stub_env
    )  # train, then test of a run the stub never made
    assert proc.returncode == 2 and "no trained model in" in proc.stderr
    (train_call,) = [c["argv"] for c in _calls(stub_env)][2:]
    assert _flag(train_call, "--trainer") == "ProDA" and _opts(train_call)["DATASET.SUBSAMPLE_CLASSES"] == "base"
    proc = _run("proda/reproduce_base2new.sh", "caltech_101", env=stub_env)
    assert proc.returncode == 2 and "unknown dataset 'caltech_101'" in proc.stderr


def test_reproduce_xd_default_loop_and_cross_opts(stub_env: dict[str, str]) -> None:
    stub_env["SEEDS"] = "1"
    proc = _run("promptkd/reproduce_xd.sh", env=stub_env)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(stub_env)
    datasets = [Path(_flag(c["argv"], "--dataset-config-file")).stem for c in calls]
    assert len(datasets) == 10 and "imagenet" not in datasets
    for call, dataset in zip(calls, datasets, strict=True):
        opts = _opts(call["argv"])
        assert opts["TRAINER.MODAL"] == "cross" and opts["DATASET.SUBSAMPLE_CLASSES"] == "all"
        assert opts["TRAINER.PROMPTKD.KD_WEIGHT"] == (
            "200.0" if dataset in {"dtd", "fgvc_aircraft", "oxford_flowers"} else "1000.0"
        )


def _call(trainer: str, cfg: str, dataset: str, seed: int | str, out_dir: str, rest: str = "") -> list[str]:
    """The train.py argv every method script builds: the six shared flags, then `rest`."""
    return [
        "train.py",
        "--root",
        "{DATA}",
        "--seed",
        str(seed),
        "--trainer",
        trainer,
        "--dataset-config-file",
        f"configs/datasets/{dataset}.yaml",
        "--config-file",
        f"configs/trainers/{trainer}/{cfg}.yaml",
        "--output-dir",
        out_dir,
        *rest.split(),
    ]


def _golden_cases() -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    """(script, arguments, expected argv of each train.py call) for every per-method script whose command lines are
    not pinned by a dedicated test above; {DATA}, {OUT} and {W} (WEIGHTS_PATH) are filled in by the test."""
    cases = []
    base2new = [
        ("cocoop", "", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", 10),
        ("independent-vlp", "_ivlp", "IVLP", "vit_b16_c2_ep20_batch4_4+4ctx", 20),
        ("maple", "_maple", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", 5),
        ("promptsrc", "", "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", 20),
        ("proda", "", "ProDA", "vit_b16_c16_ep100_batch4", 100),
    ]
    shots_16 = "DATASET.NUM_SHOTS 16"
    for folder, suffix, trainer, cfg, loadep in base2new:
        common = f"caltech101/shots_16/{trainer}/{cfg}/seed2"
        train_dir = f"{{OUT}}/base2new/train_base/{common}"
        cases.append(
            (
                f"{folder}/base2new_train{suffix}.sh",
                ("caltech101", "2"),
                [_call(trainer, cfg, "caltech101", 2, train_dir, f"{shots_16} DATASET.SUBSAMPLE_CLASSES base")],
            )
        )
        rest = f"--model-dir {train_dir} --load-epoch {loadep} --eval-only {shots_16} DATASET.SUBSAMPLE_CLASSES new"
        cases.append(
            (
                f"{folder}/base2new_test{suffix}.sh",
                ("caltech101", "2"),
                [_call(trainer, cfg, "caltech101", 2, f"{{OUT}}/base2new/test_new/{common}", rest)],
            )
        )
    cross = [
        ("cocoop", "", ("1",), "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", 10),
        ("maple", "_maple", ("imagenet", "1"), "MaPLe", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", 2),
        ("promptsrc", "", ("imagenet", "1"), "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", 20),
    ]
    for folder, suffix, train_args, trainer, cfg, loadep in cross:
        source = f"{{OUT}}/imagenet/{trainer}/{cfg}_16shots/seed1"
        cases.append(
            (
                f"{folder}/xd_train{suffix}.sh",
                train_args,
                [_call(trainer, cfg, "imagenet", 1, source, "DATASET.NUM_SHOTS 16")],
            )
        )
        cases.append(
            (
                f"{folder}/xd_test{suffix}.sh",
                ("dtd", "1"),
                [
                    _call(
                        trainer,
                        cfg,
                        "dtd",
                        1,
                        f"{{OUT}}/evaluation/{trainer}/{cfg}_16shots/dtd/seed1",
                        f"--model-dir {source} --load-epoch {loadep} --eval-only",
                    )
                ],
            )
        )
    kd_cfg = "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"
    kd_opts = "DATASET.NUM_SHOTS 0 DATASET.SUBSAMPLE_CLASSES all TRAINER.PROMPTKD.TEMPERATURE 1.0"
    cases.append(
        (
            "promptkd/xd_train.sh",
            ("dtd", "3"),
            [
                _call(
                    "PromptKD",
                    kd_cfg,
                    "dtd",
                    3,
                    f"{{OUT}}/dtd/PromptKD/{kd_cfg}_0shots/seed3",
                    f"{kd_opts} TRAINER.PROMPTKD.KD_WEIGHT 200.0 TRAINER.MODAL cross",
                )
            ],
        )
    )
    for script, trainer, loadep in [
        ("independent-vlp/reproduce_ivlp.sh", "IVLP", 5),
        ("promptsrc/reproduce_base2novel_setting.sh", "PromptSRC", 20),
    ]:
        cfg = "vit_b16_c2_ep20_batch4_4+4ctx"
        calls = [
            _call(
                trainer,
                cfg,
                "caltech101",
                1,
                f"{{OUT}}/base2new/test_{sub}/caltech101/shots_16/{trainer}/{cfg}/seed1",
                f"--model-dir {{W}}/base/seed1 --load-epoch {loadep} --eval-only"
                f" DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES {sub}",
            )
            for sub in ("base", "new")
        ]
        cases.append((script, ("caltech101", "1", "{W}"), calls))
    xd_cfg = "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets"
    cases.append(
        (
            "promptsrc/reproduce_xd.sh",
            ("dtd", "1", "{W}"),
            [
                _call(
                    "PromptSRC",
                    xd_cfg,
                    "dtd",
                    1,
                    f"{{OUT}}/evaluation/PromptSRC/{xd_cfg}_16shots/dtd/seed1",
                    "--model-dir {W}/seed1 --load-epoch 20 --eval-only DATASET.NUM_SHOTS 16",
                )
            ],
        )
    )
    fs_cfg = "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"
    shots_4 = "DATASET.NUM_SHOTS 4"
    cases.append(
        (
            "promptsrc/few_shot.sh",
            ("dtd", "4"),
            [
                _call("PromptSRC", fs_cfg, "dtd", s, f"{{OUT}}/dtd/PromptSRC/{fs_cfg}_4shots/seed{s}", shots_4)
                for s in (1, 2, 3)
            ],
        )
    )
    cases.append(
        (
            "promptsrc/reproduce_few_shot.sh",
            ("dtd", "4", "{W}"),
            [
                _call(
                    "PromptSRC",
                    fs_cfg,
                    "dtd",
                    s,
                    f"{{OUT}}/few_shot/dtd/PromptSRC/{fs_cfg}_4shots/seed{s}",
                    f"--model-dir {{W}}/4shot/seed{s} --load-epoch 50 --eval-only DATASET.NUM_SHOTS 4",
                )
                for s in (1, 2, 3)
            ],
        )
    )
    coop = "rn50_ep50_16shots/nctx16_cscFalse_ctpend"
    cases.append(
        (
            "coop/eval.sh",
            ("dtd", "rn50_ep50"),
            [
                _call(
                    "CoOp",
                    "rn50_ep50",
                    "dtd",
                    s,
                    f"{{OUT}}/evaluation/CoOp/{coop}/dtd/seed{s}",
                    f"--model-dir {{OUT}}/imagenet/CoOp/{coop}/seed{s} --load-epoch 50 --eval-only"
                    " TRAINER.COOP.N_CTX 16 TRAINER.COOP.CSC False TRAINER.COOP.CLASS_TOKEN_POSITION end",
                )
                for s in (1, 2, 3)
            ],
        )
    )
    return cases


GOLDEN_CASES = _golden_cases()


@pytest.mark.parametrize(("script", "args", "expected"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_script_runs_the_exact_command_and_skips_it_once_finished(
    script: str, args: tuple[str, ...], expected: list[list[str]], stub_env: dict[str, str], tmp_path: Path
) -> None:
    """The whole train.py argv of each script, in order (the shared helpers in common.sh must not change one
    flag); evaluation scripts first fail, naming the missing model folder, until it exists; a second run after
    every output folder holds a final result makes no call."""
    fill = {"{DATA}": stub_env["DATA"], "{OUT}": stub_env["OUTPUT_ROOT"], "{W}": str(tmp_path / "weights")}

    def subst(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    expected = [[subst(a) for a in argv] for argv in expected]
    args = tuple(subst(a) for a in args)
    model_dirs = list(dict.fromkeys(_flag(argv, "--model-dir") for argv in expected if "--model-dir" in argv))
    if model_dirs:
        proc = _run(script, *args, env=stub_env)
        assert proc.returncode == 2 and f"in {model_dirs[0]};" in proc.stderr, proc.stderr
        assert _calls(stub_env) == []
        for folder in model_dirs:
            Path(folder).mkdir(parents=True)
    proc = _run(script, *args, env=stub_env)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(stub_env)
    assert [c["argv"] for c in calls] == expected
    assert all(c["cwd"] == str(ROOT) for c in calls)
    for argv in expected:
        out_dir = Path(_flag(argv, "--output-dir"))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.jsonl").write_text(json.dumps({"event": "eval", "phase": "final"}) + "\n")
    proc = _run(script, *args, env=stub_env)
    assert proc.returncode == 0, proc.stderr
    assert len(_calls(stub_env)) == len(expected) and proc.stdout.count("Skipping") == len(expected)
