"""dassl.utils: registry errors, small helpers, meters and the stdout/logging tee."""

import json
import logging
import os
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.utils import (
    AverageMeter,
    Logger,
    MetricMeter,
    Registry,
    check_availability,
    check_isfile,
    collect_env_info,
    download_url,
    get_most_similar_str_to_a_from_b,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    setup_logger,
    tolist_if_not,
    write_json,
)
from dassl.utils import logger as logger_module


# ----------------------------------------------------------------------------------------------- registry
def test_registry_decorator_direct_and_duplicates():
    reg = Registry("TOY")

    @reg.register()
    class CoOp:
        pass

    def build_thing():
        return 1

    assert reg.register(build_thing) is None
    assert reg.get("CoOp") is CoOp and reg.get("build_thing") is build_thing
    assert reg.registered_names() == ["CoOp", "build_thing"]
    with pytest.raises(KeyError, match='An object named "CoOp" was already registered in "TOY" registry'):
        reg.register(CoOp)

    class Replacement:
        pass

    Replacement.__name__ = "CoOp"
    reg.register(Replacement, force=True)
    assert reg.get("CoOp") is Replacement


def test_registry_unknown_name_lists_known_and_closest():
    reg = Registry("TRAINER")
    for name in ("CoOp", "CoCoOp", "PromptKD"):
        reg.register(type(name, (), {}))
    with pytest.raises(KeyError) as info:
        reg.get("PromptKd")
    message = str(info.value)
    assert 'Object name "PromptKd" does not exist in "TRAINER" registry' in message
    assert '"PromptKD"' in message and "['CoOp', 'CoCoOp', 'PromptKD']" in message


def test_check_availability_message_and_similarity_ties():
    with pytest.raises(ValueError) as info:
        check_availability("cosin", ["single_step", "multi_step", "cosine"])
    assert str(info.value) == (
        "The requested one is expected to belong to ['single_step', 'multi_step', 'cosine'], "
        "but got [cosin] (do you mean [cosine]?)"
    )
    check_availability("cosine", ["cosine"])
    # "ab" vs "ax" and "ay": equal ratios -> the later candidate wins (upstream rule)
    assert get_most_similar_str_to_a_from_b("ab", ["ax", "ay"]) == "ay"


# ----------------------------------------------------------------------------------------------- tools
def test_write_json_bare_name_atomic_and_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_json({"b": [1, 2]}, "split.json")  # upstream failed on makedirs("")
    assert read_json("split.json") == {"b": [1, 2]}
    assert (tmp_path / "split.json").read_text() == json.dumps({"b": [1, 2]}, indent=4, separators=(",", ": "))
    write_json({"a": 1}, tmp_path / "deep" / "x.json")
    assert read_json(tmp_path / "deep" / "x.json") == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["deep", "split.json"]  # no temp files left


def test_write_json_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "keep.json"
    write_json({"ok": True}, path)
    with pytest.raises(TypeError):
        write_json({"bad": object()}, path)
    assert read_json(path) == {"ok": True}
    assert os.listdir(tmp_path) == ["keep.json"]


def test_listdir_nohidden_and_small_helpers(tmp_path):
    for name in ("b", "a", ".hidden", "c"):
        (tmp_path / name).write_text("x")
    assert sorted(listdir_nohidden(tmp_path)) == ["a", "b", "c"]
    assert listdir_nohidden(tmp_path, sort=True) == ["a", "b", "c"]
    mkdir_if_missing(tmp_path / "d" / "e")
    mkdir_if_missing(tmp_path / "d" / "e")
    assert (tmp_path / "d" / "e").is_dir()
    assert tolist_if_not(3) == [3] and tolist_if_not([3]) == [3]
    assert check_isfile(tmp_path / "a")
    with pytest.warns(UserWarning, match="No file found at"):
        assert not check_isfile(tmp_path / "missing")


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_set_random_seed_zero_is_valid_and_reproducible():
    set_random_seed(0)
    first = _draws()
    set_random_seed(0)
    assert _draws() == first
    set_random_seed(1)
    assert _draws() != first
    with pytest.raises(ValueError, match="negative SEED"):
        set_random_seed(-1)


def test_set_random_seed_deterministic_mode(monkeypatch):
    calls = []
    # the real switch costs seconds on first use (imports); record the call instead
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: calls.append((mode, kw)))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    set_random_seed(3)
    assert calls == [] and torch.backends.cudnn.benchmark
    set_random_seed(3, deterministic=True)
    assert calls == [(True, {"warn_only": True})]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_read_image_rgb_and_error_names_file(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (4, 3), color=7).save(path)
    img = read_image(path)
    assert img.mode == "RGB" and img.size == (4, 3) and img.getpixel((0, 0)) == (7, 7, 7)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")


def test_download_url_writes_complete_file_only(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(bytes(range(256)) * 300)
    dst = tmp_path / "out" / "weights.bin"
    download_url(source.as_uri(), dst)
    assert dst.read_bytes() == source.read_bytes()
    assert os.listdir(tmp_path / "out") == ["weights.bin"]
    with pytest.raises(OSError):
        download_url((tmp_path / "missing.bin").as_uri(), tmp_path / "out" / "never.bin")
    assert os.listdir(tmp_path / "out") == ["weights.bin"]  # no partial or temp file left


def test_collect_env_info_ends_with_pillow_line():
    import PIL

    assert collect_env_info().endswith(f"\n        Pillow ({PIL.__version__})")


# ----------------------------------------------------------------------------------------------- meters
def test_meters():
    meter = AverageMeter()
    meter.update(torch.tensor(2.0))
    meter.update(4.0, n=3)
    assert (meter.val, meter.sum, meter.count, meter.avg) == (4.0, 14.0, 4, 3.5)
    ema = AverageMeter(ema=True)
    ema.update(1.0)
    ema.update(1.0)
    assert ema.avg == pytest.approx(0.19)
    metrics = MetricMeter()
    metrics.update({"loss": torch.tensor(1.5), "acc": 50.0})
    metrics.update({"loss": 0.5, "acc": 100.0})
    metrics.update(None)
    assert str(metrics) == "loss 0.5000 (1.0000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError, match="must be a dictionary"):
        metrics.update([1.0])


# ----------------------------------------------------------------------------------------------- logger
@pytest.fixture
def restore_stdout():
    saved = sys.stdout
    yield
    if isinstance(sys.stdout, Logger):
        sys.stdout.close()
    sys.stdout = saved
    logger_module._uninstall_logging_handler()


def test_logger_appends_across_reruns_and_never_makes_timestamped_copies(tmp_path, capsys, restore_stdout):
    setup_logger(str(tmp_path))
    print("first run")
    setup_logger(str(tmp_path))  # a re-run in the same OUTPUT_DIR
    print("second run")
    sys.stdout.flush()
    assert (tmp_path / "log.txt").read_text() == "first run\nsecond run\n"
    assert os.listdir(tmp_path) == ["log.txt"]
    assert capsys.readouterr().out == "first run\nsecond run\n"


def test_logging_records_reach_console_and_file_exactly_once(tmp_path, capsys, restore_stdout):
    setup_logger(str(tmp_path / "out"))
    setup_logger(str(tmp_path / "out"))  # a second setup must not add a second handler
    logging.getLogger("dassl.engine.trainer").info("hello from dassl")
    logging.getLogger("trainers.promptkd").warning("careful")
    print("=> result")
    sys.stdout.flush()
    text = (tmp_path / "out" / "log.txt").read_text()
    assert text == "hello from dassl\nWARNING [trainers.promptkd]: careful\n=> result\n"
    assert capsys.readouterr().out == text


def test_logger_switches_files_and_custom_file_name(tmp_path, restore_stdout):
    setup_logger(str(tmp_path / "a"))
    print("to a")
    setup_logger(str(tmp_path / "b" / "train.log"))
    print("to b")
    sys.stdout.flush()
    assert (tmp_path / "a" / "log.txt").read_text() == "to a\n"
    assert (tmp_path / "b" / "train.log").read_text() == "to b\n"


def test_closing_the_tee_detaches_logging_from_stdout(tmp_path, capsys, restore_stdout):
    tee = setup_logger(str(tmp_path))
    logging.getLogger("dassl.x").info("while open")
    tee.close()
    sys.stdout = tee.console
    assert not any(isinstance(h, logger_module._CurrentStdoutHandler) for h in logging.getLogger().handlers)
    assert logging.getLogger("dassl").level == logging.NOTSET
    logging.getLogger("dassl.x").warning("after close")
    captured = capsys.readouterr()
    assert captured.out == "while open\n"  # a program's own stdout (e.g. JSON output) stays clean
    assert (tmp_path / "log.txt").read_text() == "while open\n"


def test_only_rank_zero_writes_the_file(tmp_path, monkeypatch, capsys, restore_stdout):
    monkeypatch.setenv("RANK", "1")
    assert setup_logger(str(tmp_path / "r1")) is None
    print("rank one")
    logging.getLogger("trainers.x").info("rank one record")
    assert not (tmp_path / "r1" / "log.txt").exists()
    captured = capsys.readouterr()
    assert captured.out == "rank one\n" and captured.err == "rank one record\n"
    assert setup_logger(str(tmp_path / "r0"), rank=0) is not None
    print("rank zero")
    sys.stdout.flush()
    assert (tmp_path / "r0" / "log.txt").read_text() == "rank zero\n"
    assert setup_logger(None) is None


def test_tee_delegates_stream_protocol_and_never_closes_console(tmp_path):
    console = open(tmp_path / "console.txt", "w", encoding="utf-8")  # noqa: SIM115
    try:
        tee = Logger(str(tmp_path / "log.txt"), console=console)
        assert tee.fileno() == console.fileno()
        assert tee.isatty() is False
        assert tee.encoding == console.encoding
        tee.write("x\n")
        tee.close()
        del tee
        assert not console.closed
        console.write("still open\n")
    finally:
        console.close()
    assert (tmp_path / "console.txt").read_text() == "x\nstill open\n"


# ----------------------------------------------------------------------------------------------- module map
@pytest.mark.parametrize(
    "module, names",
    [
        ("dassl", ["__version__", "__author__", "__homepage__"]),
        ("dassl.config", ["get_cfg_default", "clean_cfg", "register_cfg_defaults", "apply_cfg_defaults"]),
        ("dassl.config.defaults", ["_C"]),
        ("dassl.optim", ["build_optimizer", "build_lr_scheduler"]),
        ("dassl.optim.optimizer", ["AVAI_OPTIMS", "build_optimizer"]),
        ("dassl.optim.lr_scheduler", ["AVAI_SCHEDS", "ConstantWarmupScheduler", "LinearWarmupScheduler"]),
        ("dassl.optim.radam", ["RAdam", "PlainRAdam", "AdamW"]),
        ("dassl.evaluation", ["build_evaluator", "EVALUATOR_REGISTRY", "EvaluatorBase", "Classification"]),
        (
            "dassl.metrics",
            ["compute_accuracy", "compute_distance_matrix", "cosine_distance", "euclidean_squared_distance"],
        ),  # fmt: skip
        (
            "dassl.utils",
            [
                "mkdir_if_missing",
                "check_isfile",
                "read_json",
                "write_json",
                "set_random_seed",
                "download_url",
                "read_image",
                "collect_env_info",
                "listdir_nohidden",
                "get_most_similar_str_to_a_from_b",
                "check_availability",
                "tolist_if_not",
                "Logger",
                "setup_logger",
                "AverageMeter",
                "MetricMeter",
                "Registry",
                "save_checkpoint",
                "load_checkpoint",
                "resume_from_checkpoint",
                "open_all_layers",
                "open_specified_layers",
                "count_num_param",
                "load_pretrained_weights",
                "init_network_weights",
            ],
        ),  # fmt: skip
        ("dassl.utils.torchtools", ["adjust_learning_rate", "set_bn_to_eval"]),
    ],
)
def test_public_names_live_at_upstream_module_paths(module, names):
    """Upstream code imports these names from exactly these modules."""
    import importlib

    mod = importlib.import_module(module)
    missing = [name for name in names if not hasattr(mod, name)]
    assert not missing
    if module == "dassl":
        assert mod.__version__ == "0.6.3"


def test_layer_helpers():
    from torch import nn

    from dassl.utils import init_network_weights, open_all_layers, open_specified_layers
    from dassl.utils.torchtools import set_bn_to_eval

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    model.add_module("head", nn.Linear(4, 2))
    open_specified_layers(model, "head")
    assert [p.requires_grad for p in model.parameters()] == [False, False, False, False, True, True]
    assert model.head.training and not model.body.training
    with pytest.raises(AttributeError, match="neck"):
        open_specified_layers(model, ["neck"])
    open_all_layers(model)
    assert all(p.requires_grad for p in model.parameters()) and model.body.training
    model.apply(set_bn_to_eval)
    assert not model.body[1].training and model.body[0].training
    init_network_weights(model, init_type="normal", gain=0.02)
    assert torch.all(model.body[0].bias == 0) and torch.all(model.body[1].weight == 1)
    assert model.head.weight.std().item() < 0.1
    with pytest.raises(ValueError, match="init_type"):
        init_network_weights(model, init_type="uniform")
