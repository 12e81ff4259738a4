"""The bad-input battery: every command a user runs ends a mistake with one clear line and changes nothing.

Each case runs the real command line (``train.py``, ``predict.py``, ``parse_test_res.py``, ``python -m demo``,
``scripts/demo.sh``) in its own process against a COPY of a finished PromptKD run (teacher from PromptSRC, tiny
CLIPs, Caltech101 layout), then checks: the exit status; that the last line is ``error: ...`` and names the
offending file, key or value; that no traceback was printed; and that every file that existed before the
command is byte-identical afterwards (``log.txt`` may only grow at its end).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import train
from tests.helpers.cli_runner import REPO, CommandRunner, Completed
from tests.helpers.dataset_fixtures import make_caltech101, make_fgvc_aircraft, make_oxford_pets, write_image
from tests.helpers.tiny_clip import save_tiny_clip

STUDENT_CLIP = {"seed": 0}
TEACHER_CLIP = {"seed": 1, "embed_dim": 48, "transformer_width": 48, "transformer_heads": 3}
KD_CONFIG = REPO / "configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml"
SRC_CONFIG = REPO / "configs/trainers/PromptSRC/vit_l14_c2_ep20_batch8_4+4ctx.yaml"
DATASET_CONFIG = REPO / "configs/datasets/caltech101.yaml"
FOLDER_CONFIG = REPO / "configs/datasets/folder.yaml"
MODEL_NAME = "VLPromptLearner"


# ------------------------------------------------------------------------------------------------ the world
@dataclass
class World:
    """The finished run and everything it was built from."""

    root: Path
    data: Path
    cache: Path
    student: Path
    teacher_clip: Path
    teacher_dir: Path
    run: Path

    def train_argv(self, output: Path, *opts: str, flags: tuple[str, ...] = (), data: Path | None = None) -> list[str]:
        """The finished run's own command line, into ``output``, with ``flags`` and extra ``opts`` appended."""
        return [
            str(REPO / "train.py"), "--root", str(data or self.data), "--seed", "1", "--trainer", "PromptKD",
            "--dataset-config-file", str(DATASET_CONFIG), "--config-file", str(KD_CONFIG),
            "--output-dir", str(output), *flags, *self.kd_opts(), *opts,
        ]  # fmt: skip

    def kd_opts(self) -> list[str]:
        return [
            "MODEL.BACKBONE.NAME", str(self.student), "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.CACHE_DIR", str(self.cache), "DATASET.NUM_SHOTS", "0",
            "TRAINER.PROMPTKD.TEACHER_CLIP", str(self.teacher_clip),
            "TRAINER.PROMPTKD.TEACHER_CKPT", str(self.teacher_dir),
        ]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """Tiny CLIPs, a 5-class dataset, a PromptSRC teacher (1 epoch) and a finished 1-epoch PromptKD run."""
    root = tmp_path_factory.mktemp("battery")
    make_caltech101(root / "data", num_classes=5, per_class=6, size=32)
    save_tiny_clip(root / "student.pt", **STUDENT_CLIP)
    save_tiny_clip(root / "teacher.pt", **TEACHER_CLIP, vision_layers=2, transformer_layers=2)
    w = World(
        root, root / "data", root / "cache", root / "student.pt", root / "teacher.pt", root / "teacher", root / "run"
    )
    teacher_argv = [
        "--root", str(w.data), "--seed", "1", "--trainer", "PromptSRC", "--dataset-config-file", str(DATASET_CONFIG),
        "--config-file", str(SRC_CONFIG), "--output-dir", str(w.teacher_dir),
        "MODEL.BACKBONE.NAME", str(w.teacher_clip),
        "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0",
        "DATASET.CACHE_DIR", str(w.cache), "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base",
    ]  # fmt: skip
    train.main(teacher_argv)
    train.main(w.train_argv(w.run)[1:])
    assert (w.run / MODEL_NAME / "model.pth.tar-1").is_file() and (w.run / "results.jsonl").is_file()
    return w


@pytest.fixture(scope="module")
def runner():
    cli = CommandRunner()
    yield cli
    cli.close()


# ------------------------------------------------------------------------------------------------ checks
def snapshot(*folders: Path) -> dict[Path, bytes]:
    """SHA-256 of every file under ``folders``."""
    digests = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digests[path] = hashlib.sha256(path.read_bytes()).digest()
    return digests


def assert_unchanged(before: dict[Path, bytes], logs: dict[Path, bytes]) -> None:
    """Every file of ``before`` is byte-identical; a ``log.txt`` may have grown at its end only."""
    changed = []
    for path, digest in before.items():
        if not path.is_file():
            changed.append(f"{path} (deleted)")
        elif path in logs:
            if not path.read_bytes().startswith(logs[path]):
                changed.append(f"{path} (rewritten, not appended)")
        elif hashlib.sha256(path.read_bytes()).digest() != digest:
            changed.append(str(path))
    assert not changed, f"pre-existing files changed: {changed}"


def assert_one_clear_line(done: Completed, rc: int, expected: tuple[str, ...]) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == rc, f"exit {done.returncode} (expected {rc}); stderr:\n{done.stderr[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    last = done.last_line
    assert "error: " in last, f"last line: {last!r}"
    for text in expected:
        assert text in last, f"{text!r} not in the last line {last!r}"


# ------------------------------------------------------------------------------------------------ cases
@dataclass
class Ctx:
    """What a case may use: the world, a fresh copy of the finished run, a scratch folder."""

    world: World
    run: Path
    tmp: Path
    protected: list[Path] = field(default_factory=list)  # more folders whose files must not change
    env: dict[str, str | None] = field(default_factory=dict)
    hub: str = ""  # URL of a hub endpoint that answers every request with 401
    marker: Path | None = None  # must not exist afterwards (pickled code would create it)
    cwd: Path | None = None  # working directory of the command (default: the scratch folder)

    def data_copy(self) -> Path:
        data = self.tmp / "data"
        shutil.copytree(self.world.data, data)
        self.protected.append(data)
        return data

    def split_file(self, data: Path) -> Path:
        return data / "caltech-101" / "split_zhou_Caltech101.json"

    def test_image(self, data: Path) -> Path:
        split = json.loads(self.split_file(data).read_text())
        return data / "caltech-101" / "101_ObjectCategories" / split["test"][0][0]


class _Payload:
    """Unpickling this in an unrestricted loader runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tamper(path: Path, ctx: Ctx, key: str = "scheduler") -> Path:
    """Rewrite checkpoint ``path`` with pickled code in ``key`` (the tensors stay genuine)."""
    ctx.marker = ctx.tmp / "pwned"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[key] = _Payload(ctx.marker)
    torch.save(checkpoint, path)
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


Setup = Callable[[Ctx], tuple[list[str], tuple[str, ...]]]
CASES: dict[str, tuple[int, Setup]] = {}


def case(name: str, rc: int = 1):
    def register(fn: Setup) -> Setup:
        CASES[name] = (rc, fn)
        return fn

    return register


def _argv_with(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


# --- config
@case("config-file-missing")
def _(c: Ctx):
    missing = str(c.tmp / "nope.yaml")
    return _argv_with(c.world.train_argv(c.run), "--config-file", missing), (missing,)


@case("yaml-syntax-error")
def _(c: Ctx):
    bad = write(c.tmp / "bad.yaml", "OPTIM:\n  LR: [0.1\n  MAX_EPOCH: 2\n")
    return _argv_with(c.world.train_argv(c.run), "--config-file", str(bad)), (str(bad), "line")


@case("unknown-key-in-yaml")
def _(c: Ctx):
    bad = write(c.tmp / "typo.yaml", "OPTIM:\n  LRR: 0.1\n")
    return _argv_with(c.world.train_argv(c.run), "--config-file", str(bad)), ("OPTIM.LRR", str(bad), "OPTIM.LR")


@case("unknown-key-in-opts")
def _(c: Ctx):
    return c.world.train_argv(c.run, "OPTIM.MAX_EPOCHS", "3"), ("OPTIM.MAX_EPOCHS", "OPTIM.MAX_EPOCH")


@case("wrong-value-type")
def _(c: Ctx):
    return c.world.train_argv(c.run, "DATALOADER.TRAIN_X.BATCH_SIZE", "eight"), (
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        "eight",
    )


@case("opts-without-value")
def _(c: Ctx):
    return c.world.train_argv(c.run, "OPTIM.LR"), ("OPTIM.LR",)


@case("unknown-trainer")
def _(c: Ctx):
    return _argv_with(c.world.train_argv(c.run), "--trainer", "PromptKd"), ("PromptKd", "PromptKD")


@case("unknown-dataset")
def _(c: Ctx):
    return c.world.train_argv(c.run, "DATASET.NAME", "Caltech102"), ("Caltech102", "Caltech101")


@case("batch-size-zero")
def _(c: Ctx):
    return c.world.train_argv(c.run, "DATALOADER.TRAIN_X.BATCH_SIZE", "0"), ("DATALOADER.TRAIN_X.BATCH_SIZE=0",)


@case("unknown-precision")
def _(c: Ctx):
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.PREC", "half"), ("TRAINER.PROMPTKD.PREC", "half")


@case("temperature-zero")
def _(c: Ctx):
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEMPERATURE", "0.0"), ("TRAINER.PROMPTKD.TEMPERATURE",)


@case("bad-seed-flag", rc=2)
def _(c: Ctx):
    return _argv_with(c.world.train_argv(c.run), "--seed", "one"), ("--seed", "'one'")


@case("bad-load-epoch-flag", rc=2)
def _(c: Ctx):
    return c.world.train_argv(c.run, flags=("--eval-only", "--model-dir", str(c.run), "--load-epoch", "last")), (
        "--load-epoch",
        "'last'",
    )


# --- data
@case("dataset-root-missing")
def _(c: Ctx):
    missing = c.tmp / "no-data"
    return c.world.train_argv(c.run, data=missing), (str(missing),)


@case("split-file-malformed")
def _(c: Ctx):
    data = c.data_copy()
    split = c.split_file(data)
    split.write_text(split.read_text()[:-40])
    return c.world.train_argv(c.run, data=data), (str(split),)


@case("image-listed-but-missing")
def _(c: Ctx):
    data = c.data_copy()
    image = c.test_image(data)
    image.unlink()
    return c.world.train_argv(c.run, data=data), (str(image),)


@case("corrupt-jpeg")
def _(c: Ctx):
    data = c.data_copy()
    image = c.test_image(data)
    image.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" + os.urandom(64))
    return c.world.train_argv(c.run, data=data), (str(image),)


@case("annotation-line-malformed")
def _(c: Ctx):
    pets = make_oxford_pets(c.tmp / "pets")
    c.protected.append(pets.root)
    annotations = pets.dataset_dir / "annotations" / "trainval.txt"
    lines = annotations.read_text().splitlines()
    lines[2] = "Bengal_1 three 1 1"
    annotations.write_text("\n".join(lines) + "\n")
    argv = c.world.train_argv(c.run, data=pets.root)
    argv = _argv_with(argv, "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"))
    return argv, (f"{annotations}:3", "Bengal_1 three 1 1")


@case("annotation-class-not-listed")
def _(c: Ctx):
    aircraft = make_fgvc_aircraft(c.tmp / "aircraft")
    c.protected.append(aircraft.root)
    listing = aircraft.dataset_dir / "images_variant_val.txt"
    lines = listing.read_text().splitlines()
    lines[1] = lines[1].split(" ")[0] + " Concorde"
    listing.write_text("\n".join(lines) + "\n")
    argv = c.world.train_argv(c.run, data=aircraft.root)
    argv = _argv_with(argv, "--dataset-config-file", str(REPO / "configs/datasets/fgvc_aircraft.yaml"))
    return argv, (f"{listing}:2", "'Concorde'", "variants.txt")


# --- CLIP weights
@case("clip-weights-missing-offline")
def _(c: Ctx):
    home = c.tmp / "home"
    home.mkdir()
    c.env.update(HOME=str(home), PROMPTKD_CLIP_DIR=None, https_proxy="http://127.0.0.1:9", HTTPS_PROXY=None)
    c.env.update(no_proxy=None, NO_PROXY=None)
    expected = ("ViT-B-16.pt", str(home / ".cache" / "clip" / "ViT-B-16.pt"), "https://openaipublic")
    return c.world.train_argv(c.run, "MODEL.BACKBONE.NAME", "ViT-B/16"), expected


@case("clip-weights-random-bytes")
def _(c: Ctx):
    junk = write(c.tmp / "ViT-B-16.pt", os.urandom(4096))
    return c.world.train_argv(c.run, "MODEL.BACKBONE.NAME", str(junk)), (str(junk),)


@case("clip-weights-not-a-clip-state-dict")
def _(c: Ctx):
    other = c.tmp / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(4)}, other)
    return c.world.train_argv(c.run, "MODEL.BACKBONE.NAME", str(other)), (str(other),)


# --- teacher
@case("teacher-checkpoint-missing")
def _(c: Ctx):
    missing = c.tmp / "teacher" / "model-best.pth.tar"
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_CKPT", str(missing)), (str(missing),)


@case("teacher-of-the-wrong-architecture")
def _(c: Ctx):
    # a ViT-L-sized teacher checkpoint loaded into a teacher CLIP of another width
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_CLIP", str(c.world.student)), (
        "teacher checkpoint",
        str(c.world.teacher_dir / MODEL_NAME),
    )


@case("teacher-is-not-a-teacher")
def _(c: Ctx):
    student_file = c.run / MODEL_NAME / "model.pth.tar-1"
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_CKPT", str(student_file)), (str(student_file),)


@case("teacher-with-pickled-code")
def _(c: Ctx):
    evil = c.tmp / "teacher.pth.tar"
    shutil.copy(c.world.teacher_dir / MODEL_NAME / "model.pth.tar-1", evil)
    tamper(evil, c)
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_CKPT", str(evil)), (str(evil), "posix.system")


def _ensemble(c: Ctx, teachers: list[str], *opts: str) -> list[str]:
    """The run's command line with a teacher ensemble instead of TEACHER_CKPT."""
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_CKPT", "", "TRAINER.PROMPTKD.TEACHERS", repr(teachers),
                              *opts)  # fmt: skip


@case("ensemble-with-one-clip-for-two-teachers")
def _(c: Ctx):
    one_clip = repr([str(c.world.teacher_clip)])
    argv = _ensemble(c, [str(c.world.teacher_dir), "none"], "TRAINER.PROMPTKD.TEACHER_CLIPS", one_clip)
    return argv, ("TRAINER.PROMPTKD.TEACHER_CLIPS has 1 entries", "TEACHERS has 2")


@case("ensemble-with-a-negative-weight")
def _(c: Ctx):
    argv = _ensemble(c, [str(c.world.teacher_dir), "none"], "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "[1.0, -0.5]")
    return argv, ("TRAINER.PROMPTKD.TEACHER_WEIGHTS", ">= 0", "-0.5")


@case("ensemble-with-all-weights-zero")
def _(c: Ctx):
    argv = _ensemble(c, [str(c.world.teacher_dir), "none"], "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "[0.0, 0.0]")
    return argv, ("TRAINER.PROMPTKD.TEACHER_WEIGHTS", "all zero")


@case("ensemble-with-one-weight-for-two-teachers")
def _(c: Ctx):
    argv = _ensemble(c, [str(c.world.teacher_dir), "none"], "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "[1.0]")
    return argv, ("TRAINER.PROMPTKD.TEACHER_WEIGHTS has 1 values for 2 teachers",)


@case("ensemble-and-teacher-ckpt-both-set")
def _(c: Ctx):
    argv = c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHERS", repr([str(c.world.teacher_dir), "none"]))
    return argv, ("TRAINER.PROMPTKD.TEACHER_CKPT", "TEACHERS are both set")


@case("ensemble-weights-without-teachers")
def _(c: Ctx):
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.TEACHER_WEIGHTS", "[1.0]"), ("TRAINER.PROMPTKD.TEACHERS",)


@case("ensemble-with-a-missing-teacher")
def _(c: Ctx):
    missing = str(c.tmp / "second-teacher.pth.tar")
    return _ensemble(c, [str(c.world.teacher_dir), missing]), (missing, "TRAINER.PROMPTKD.TEACHERS[1]")


@case("unknown-student-design")
def _(c: Ctx):
    return c.world.train_argv(c.run, "TRAINER.PROMPTKD.STUDENT_DESIGN", "promptsrc"), (
        "TRAINER.PROMPTKD.STUDENT_DESIGN",
        "'promptsrc'",
        "coop",
    )


@case("student-of-other-classes-than-the-teacher")
def _(c: Ctx):
    names = (c.run / "classnames.txt").read_text().splitlines()
    names[0], names[1] = names[1], names[0]  # the student was distilled with two labels swapped
    (c.run / "classnames.txt").write_text("".join(f"{name}\n" for name in names))
    out = c.tmp / "eval"
    return c.world.train_argv(out, flags=("--eval-only", "--model-dir", str(c.run))), (
        str(c.run / "classnames.txt"),
        f"label 0 is {names[0]!r} vs {names[1]!r}",
        "DATASET.NAME Caltech101",
    )


# --- checkpoints of the run
@case("resume-checkpoint-with-pickled-code")
def _(c: Ctx):
    evil = tamper(c.run / MODEL_NAME / "model.pth.tar-1", c)
    return c.world.train_argv(c.run), (str(evil), "posix.system")


@case("eval-checkpoint-with-pickled-code")
def _(c: Ctx):
    evil = tamper(c.run / MODEL_NAME / "model.pth.tar-1", c, key="optimizer")
    out = c.tmp / "eval"
    return c.world.train_argv(out, flags=("--eval-only", "--model-dir", str(c.run))), (str(evil), "posix.system")


@case("eval-with-empty-model-dir")
def _(c: Ctx):
    empty = c.tmp / "empty"
    (empty / MODEL_NAME).mkdir(parents=True)
    return c.world.train_argv(c.run, flags=("--eval-only", "--model-dir", str(empty))), (str(empty / MODEL_NAME),)


@case("eval-with-a-missing-epoch")
def _(c: Ctx):
    flags = ("--eval-only", "--model-dir", str(c.run), "--load-epoch", "7")
    return c.world.train_argv(c.run, flags=flags), ("model.pth.tar-7", "[1]")


@case("model-dir-missing")
def _(c: Ctx):
    missing = c.tmp / "no-such-run"
    return c.world.train_argv(c.run, flags=("--eval-only", "--model-dir", str(missing))), (str(missing),)


@case("resume-dir-missing")
def _(c: Ctx):
    missing = c.tmp / "no-such-run"
    return c.world.train_argv(c.run, flags=("--resume", str(missing))), (str(missing),)


# --- output folder
@case("output-dir-is-a-file")
def _(c: Ctx):
    blocker = write(c.tmp / "blocker", "a file where the output folder should be\n")
    c.protected.append(c.tmp)
    return c.world.train_argv(blocker), (str(blocker),)


@case("output-dir-under-a-file")
def _(c: Ctx):
    blocker = write(c.tmp / "blocker", "a file where a parent folder should be\n")
    c.protected.append(c.tmp)
    return c.world.train_argv(blocker / "run"), (str(blocker),)


@case("output-dir-without-permission")
def _(c: Ctx):
    if os.geteuid() == 0:  # root may write anywhere but in sysfs
        if not os.path.isdir("/sys/kernel"):
            pytest.skip("running as root without sysfs: no folder is unwritable")
        target = Path("/sys/promptkd-battery/run")
        return c.world.train_argv(target), ("/sys/promptkd-battery",)
    locked = c.tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return c.world.train_argv(locked / "run"), (str(locked),)


# --- training
@case("non-finite-loss")
def _(c: Ctx):
    # one more epoch than the finished run, with a KD weight that overflows float32
    return c.world.train_argv(c.run, "OPTIM.MAX_EPOCH", "2", "TRAINER.PROMPTKD.KD_WEIGHT", "1e39"), (
        "Loss is infinite or NaN",
        "epoch 2/2",
    )


# --- parse_test_res.py
@case("parse-empty-folder")
def _(c: Ctx):
    empty = c.tmp / "empty"
    empty.mkdir()
    return [str(REPO / "parse_test_res.py"), str(empty)], (str(empty),)


@case("parse-missing-folder")
def _(c: Ctx):
    missing = c.tmp / "missing"
    return [str(REPO / "parse_test_res.py"), str(missing)], (str(missing),)


@case("parse-unfinished-seeds")
def _(c: Ctx):
    exp = c.tmp / "exp"
    for seed in (1, 2):
        shutil.copytree(c.run, exp / f"seed{seed}")
        (exp / f"seed{seed}" / "results.jsonl").unlink()
        log = exp / f"seed{seed}" / "log.txt"
        log.write_text(log.read_text().split("Finish training")[0])
    c.protected.append(exp)
    return [str(REPO / "parse_test_res.py"), str(exp)], (str(exp),)


@case("parse-malformed-results")
def _(c: Ctx):
    exp = c.tmp / "exp"
    shutil.copytree(c.run, exp / "seed1")
    results = exp / "seed1" / "results.jsonl"
    results.write_text('{"event": "eval", "split": "te\n')
    (exp / "seed1" / "log.txt").write_text("no result block in this log\n")
    c.protected.append(exp)
    return [str(REPO / "parse_test_res.py"), str(exp)], (str(exp),)


@case("parse-compare-malformed-json")
def _(c: Ctx):
    reference = write(c.tmp / "reference.json", '{"base2novel": {"PromptKD":\n  {"Caltech101": [1, }}}\n')
    return [str(REPO / "parse_test_res.py"), str(c.run), "--compare", str(reference)], (
        f"{reference}, line 2",
        "not valid JSON",
    )


@case("parse-compare-missing-file")
def _(c: Ctx):
    missing = c.tmp / "reference.json"
    return [str(REPO / "parse_test_res.py"), str(c.run), "--compare", str(missing)], (str(missing),)


@case("parse-compare-without-sections")
def _(c: Ctx):
    reference = write(c.tmp / "reference.json", json.dumps({"PromptKD": {"Caltech101": 97.0}}))
    return [str(REPO / "parse_test_res.py"), str(c.run), "--compare", str(reference)], (str(reference), "base2novel")


# --- download commands
class _Unauthorized(http.server.BaseHTTPRequestHandler):
    """A hub that refuses every request as an invalid token would be refused."""

    def do_GET(self) -> None:
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@case("download-datasets-offline")
def _(c: Ctx):
    c.cwd = REPO
    c.env["HF_HUB_OFFLINE"] = "1"
    root = c.tmp / "datasets"
    return ["-m", "datasets.download", "dtd", "--root", str(root)], ("HF_HUB_OFFLINE=1", str(root))


@case("download-datasets-credentials-refused")
def _(c: Ctx):
    c.cwd = REPO
    c.env.update(HF_ENDPOINT=c.hub, HF_TOKEN="hf_not_a_valid_token", HF_HUB_OFFLINE=None)
    root = c.tmp / "datasets"
    return ["-m", "datasets.download", "dtd", "--root", str(root)], ("401 Unauthorized", "HF_TOKEN", str(root))


@case("download-datasets-root-under-a-file")
def _(c: Ctx):
    blocker = write(c.tmp / "blocker", "a file where the datasets folder's parent should be\n")
    c.protected.append(c.tmp)
    c.cwd = REPO
    return ["-m", "datasets.download", "imagenet", "--root", str(blocker / "data")], (str(blocker / "data"),)


@case("download-teachers-unreachable")
def _(c: Ctx):
    c.cwd = REPO
    c.env.update(https_proxy="http://127.0.0.1:9", HTTPS_PROXY=None, no_proxy=None, NO_PROXY=None)
    dest = c.tmp / "teacher_model"
    return ["-m", "trainers.download_teachers", "eurosat", "--dest", str(dest)], (
        "drive.google.com",
        "unreachable",
        str(dest),
    )


# --- demo
@case("demo-unknown-preset")
def _(c: Ctx):
    c.cwd = REPO  # python -m demo runs from the repository root
    return ["-m", "demo", "--preset", "tiniest", "--output-dir", str(c.tmp / "demo")], ("tiniest",)


@case("demo-output-dir-is-a-file")
def _(c: Ctx):
    blocker = write(c.tmp / "blocker", "a file where the demo output should go\n")
    c.protected.append(c.tmp)
    c.env["PROMPTKD_CACHE_DIR"] = str(c.tmp / "cache")
    c.cwd = REPO
    return ["-m", "demo", "--preset", "small", "--output-dir", str(blocker)], (str(blocker),)


@case("demo-preset-without-a-required-key")
def _(c: Ctx):
    text = (REPO / "configs/demo/small.yaml").read_text()
    preset = write(c.tmp / "preset.yaml", text.replace("  DATASET:\n    NUM_SHOTS: 8\n", "", 1))
    c.cwd = REPO
    return ["-m", "demo", "--preset", str(preset), "--output-dir", str(c.tmp / "demo")], (
        str(preset),
        "DATASET.NUM_SHOTS",
    )


@case("demo-script-unknown-preset")
def _(c: Ctx):
    c.env["PYTHON"] = sys.executable
    return ["bash", str(REPO / "scripts/demo.sh"), "--preset", "tiniest"], ("tiniest",)


# --- Folder dataset (your own images)
def _folder(c: Ctx, classes: str = "red fox\nblue jay\n", train: tuple[str, ...] = ("red_fox",)) -> Path:
    root = c.tmp / "own"
    write(root / "classnames.txt", classes)
    for folder in train:
        write_image(root / "train" / folder / "0.jpg")
    write_image(root / "unlabeled" / "a" / "0.PNG")
    c.protected.append(root)
    return root


def _folder_argv(c: Ctx, root: Path) -> list[str]:
    argv = _argv_with(c.world.train_argv(c.tmp / "out"), "--dataset-config-file", str(FOLDER_CONFIG))
    return _argv_with(argv, "--root", str(root))


@case("folder-class-not-in-classnames")
def _(c: Ctx):
    root = _folder(c, train=("red_fox", "zebra"))
    return _folder_argv(c, root), ("zebra", str(root / "train" / "zebra"), "classnames.txt")


@case("folder-duplicate-class-name")
def _(c: Ctx):
    root = _folder(c, classes="red fox\nred_fox\n")
    return _folder_argv(c, root), ("red_fox", "line 2")


@case("folder-no-images")
def _(c: Ctx):
    root = write(c.tmp / "own" / "classnames.txt", "red fox\n").parent
    write(root / "unlabeled" / "README.md", "no images here\n")
    c.protected.append(root)
    return _folder_argv(c, root), ("no images found", str(root))


@case("folder-supervised-trainer-without-train")
def _(c: Ctx):
    root = _folder(c, train=())
    argv = _argv_with(_argv_with(_folder_argv(c, root), "--trainer", "PromptSRC"), "--config-file", str(SRC_CONFIG))
    return argv, ("PromptSRC trains on labeled images", str(root / "train"))


# --- predict.py
def _predict(*argv: object) -> list[str]:
    return [str(REPO / "predict.py"), *(str(a) for a in argv)]


@case("predict-no-images")
def _(c: Ctx):
    empty = c.tmp / "empty"
    write(empty / "notes.txt", "not an image\n")
    return _predict("--model-dir", c.run, empty), ("no images found", str(empty))


@case("predict-path-missing")
def _(c: Ctx):
    return _predict("--model-dir", c.run, c.tmp / "nowhere"), ("no such file or folder", str(c.tmp / "nowhere"))


@case("predict-not-a-run-folder")
def _(c: Ctx):
    folder = c.tmp / "folder"
    folder.mkdir()
    return _predict("--model-dir", folder, c.test_image(c.world.data)), ("no config.yaml", str(folder))


@case("predict-run-without-classnames")
def _(c: Ctx):
    (c.run / "classnames.txt").unlink()
    return _predict("--model-dir", c.run, c.test_image(c.world.data)), ("classnames.txt", "--classnames FILE")


@case("predict-classnames-count-mismatch")
def _(c: Ctx):
    names = write(c.tmp / "names.txt", "cat\ndog\n")
    argv = _predict("--model-dir", c.run, c.test_image(c.world.data), "--classnames", names)
    return argv, ("2 class names for a model of 5 classes", str(names))


@case("predict-unknown-output-format")
def _(c: Ctx):
    out = c.tmp / "labels.txt"
    return _predict("--model-dir", c.run, c.test_image(c.world.data), "--output", out), ("--output", "*.csv")


@case("predict-topk-zero")
def _(c: Ctx):
    return _predict("--model-dir", c.run, c.test_image(c.world.data), "--topk", "0"), ("--topk 0",)


@case("predict-missing-epoch")
def _(c: Ctx):
    argv = _predict("--model-dir", c.run, c.test_image(c.world.data), "--load-epoch", "7")
    return argv, ("model.pth.tar-7", "--load-epoch 7")


@case("predict-corrupt-image")
def _(c: Ctx):
    bad = write(c.tmp / "images" / "broken.jpg", b"not a jpeg")
    return _predict("--model-dir", c.run, bad.parent), ("Cannot read image", str(bad))


@case("predict-model-is-a-checkpoint")
def _(c: Ctx):
    checkpoint = c.run / MODEL_NAME / "model.pth.tar-1"
    return _predict("--model", checkpoint, c.test_image(c.world.data)), ("not an exported model", str(checkpoint))


@case("predict-tampered-export")
def _(c: Ctx):
    c.marker = c.tmp / "pwned"
    exported = c.tmp / "student.pt"
    torch.save({"format": "promptkd-export", "version": 1, "kind": _Payload(c.marker)}, exported)
    return _predict("--model", exported, c.test_image(c.world.data)), (
        "refused to load the exported model",
        "nothing in it was run",
        str(exported),
    )


@case("predict-export-with-images")
def _(c: Ctx):
    argv = _predict("--model-dir", c.run, "--export", c.tmp / "student.pt", c.test_image(c.world.data))
    return argv, ("--export", "drop the paths")


@case("predict-unknown-device")
def _(c: Ctx):
    return _predict("--model-dir", c.run, c.test_image(c.world.data), "--device", "tpu"), ("--device", "tpu")


# ------------------------------------------------------------------------------------------------ the test
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_ends_in_one_clear_line_and_changes_nothing(name, world, runner, refusing_hub, tmp_path):
    rc, setup = CASES[name]
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    ctx = Ctx(world, run, tmp_path / "scratch", hub=refusing_hub)
    ctx.tmp.mkdir()
    argv, expected = setup(ctx)
    folders = [run, world.teacher_dir, world.data, *ctx.protected]
    before = snapshot(*folders)
    logs = {p: p.read_bytes() for p in before if p.name == "log.txt"}

    done = runner.run(argv, cwd=ctx.cwd or ctx.tmp, env=ctx.env)

    print(f"[{name}] {done.last_line}")
    assert_one_clear_line(done, rc, expected)
    assert_unchanged(before, logs)
    if ctx.marker is not None:
        assert not ctx.marker.exists(), "the pickled code was executed"
    if rc == 1 and argv[0].endswith("train.py") and Path(argv[argv.index("--output-dir") + 1]) == run:
        log = (run / "log.txt").read_text()
        assert log.endswith(done.last_line + "\n")  # the run's log gets the error (and the traceback)


def test_battery_size():
    assert len(CASES) >= 30


# ------------------------------------------------------------------------------------------------ debug, bugs, re-runs
def test_debug_shows_the_traceback_and_the_run_log_keeps_it(world, runner, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    argv = world.train_argv(run, "TRAINER.PROMPTKD.TEACHER_CKPT", str(tmp_path / "gone.pth.tar"))
    for extra_flags, env in (((), {"PROMPTKD_DEBUG": "1"}), (("--debug",), {})):
        done = runner.run(argv[:3] + list(extra_flags) + argv[3:], cwd=tmp_path, env=env)
        assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
        assert done.last_line.startswith("error: ") and "gone.pth.tar" in done.last_line
    quiet = runner.run(argv, cwd=tmp_path, env={"PROMPTKD_DEBUG": "0"})
    assert "Traceback" not in quiet.stderr
    log = (run / "log.txt").read_text()
    assert log.count("Traceback (most recent call last)") == 3 and log.endswith(quiet.last_line + "\n")


def test_a_bug_keeps_its_traceback_and_goes_to_the_run_log(tmp_path, capsys):
    from dassl.error_boundary import run_with_error_boundary

    log = tmp_path / "log.txt"
    log.write_text("earlier lines\n")

    def buggy():
        err = ZeroDivisionError("division by zero")
        err.run_log = str(log)
        raise err

    with pytest.raises(ZeroDivisionError):
        run_with_error_boundary(buggy, [])
    assert log.read_text().startswith("earlier lines\n") and "ZeroDivisionError" in log.read_text()


def test_worker_exceptions_and_library_errors_become_one_line():
    import yaml

    from dassl.error_boundary import one_line, user_message
    from dassl.errors import ConfigError

    worker = (
        "Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1\nImageReadError: Cannot read image "/d/a.jpg"'
    )
    assert one_line(worker) == 'Cannot read image "/d/a.jpg"'
    assert user_message(ConfigError("bad value", "OPTIM.LR=x", "use a float")) == "bad value (OPTIM.LR=x): use a float"
    perm = PermissionError(13, "Permission denied", "/out/run")
    assert user_message(perm) == "Permission denied (/out/run): choose another path or fix its permissions"
    try:
        yaml.safe_load("a: [1\n")
    except yaml.YAMLError as err:
        assert "line 2" in user_message(err)
    assert user_message(ZeroDivisionError("x")) is None  # a bug


def test_a_successful_rerun_with_another_config_keeps_the_old_one(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world.run, run)
    old = (run / "config.yaml").read_bytes()
    train.main(world.train_argv(run, "DATALOADER.TEST.BATCH_SIZE", "7")[1:])
    history = list((run / train.CONFIG_HISTORY_DIR).iterdir())
    assert len(history) == 1 and history[0].read_bytes() == old
    assert "BATCH_SIZE: 7" in (run / "config.yaml").read_text()
    train.main(world.train_argv(run, "DATALOADER.TEST.BATCH_SIZE", "7")[1:])  # same config: no new history entry
    assert len(list((run / train.CONFIG_HISTORY_DIR).iterdir())) == 1
