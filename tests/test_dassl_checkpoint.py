"""Checkpoint files: upstream layout, atomic writes, safe loading of upstream/malicious pickles.

Upstream's files pickle scheduler objects and load only with ``weights_only=False``; here they load through the
restricted unpickler, a separate pointer keeps the latest epoch (upstream's pointer follows the best one), and
``count_num_param`` accepts parameter groups."""

import os
import pickle
import sys

import pytest
import torch
from torch import nn

from dassl.config import get_cfg_default
from dassl.errors import UnsafePickleError
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
)
from dassl.utils._safe_unpickle import PickledObject


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def _perturb(model, seed=123):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.add_(torch.randn(tensor.shape, generator=gen))


def _optim_cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER = "sgd", 0.005, 10, "cosine"
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_CONS_LR = 1, "constant", 1e-5
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _train_steps(model, optim, sched, epochs, seed=7):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        x = torch.randn(6, 8, generator=gen)
        loss = model(x).pow(2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()


# --------------------------------------------------------------------------------------------- layout
def test_save_layout_pointer_and_best_copy(tmp_path, capsys):
    model = _tiny_model()
    state = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}
    path = save_checkpoint(state, str(tmp_path), is_best=True)
    assert path == str(tmp_path / "model.pth.tar-3")
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]
    loaded = load_checkpoint(path)
    assert list(loaded["state_dict"]) == list(model.state_dict())  # leading "module." stripped
    out = capsys.readouterr().out
    assert f"Checkpoint saved to {path}\n" in out
    assert f'Best checkpoint saved to "{tmp_path / "model-best.pth.tar"}"\n' in out


def test_best_model_saved_by_name_does_not_move_the_resume_pointer(tmp_path):
    """Upstream pointed `checkpoint` at model-best.pth.tar, so resume restarted from the best epoch."""
    model = _tiny_model()
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 4}, str(tmp_path))
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 2}, str(tmp_path), model_name="model-best.pth.tar")
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-4\n"
    assert load_checkpoint(tmp_path / "model-best.pth.tar")["epoch"] == 2


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    model = _tiny_model()
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path), model_name="model.pth.tar-1")
    before = (tmp_path / "model.pth.tar-1").read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as fh:  # leave a truncated file behind, like a crash mid-write
            fh.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    _perturb(model)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, str(tmp_path), model_name="model.pth.tar-1")
    assert (tmp_path / "model.pth.tar-1").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.pth.tar-1"]


# --------------------------------------------------------------------------------------------- round trip
def test_perturbed_weights_round_trip_through_resume(tmp_path, capsys):
    model = _tiny_model(seed=0)
    _perturb(model)
    optim = build_optimizer(model, _optim_cfg())
    sched = build_lr_scheduler(optim, _optim_cfg())
    _train_steps(model, optim, sched, 3)
    state = {
        "state_dict": model.state_dict(),
        "epoch": 3,
        "optimizer": optim.state_dict(),
        "scheduler": sched.state_dict(),
        "val_result": None,
    }
    save_checkpoint(state, str(tmp_path))
    torch.load(tmp_path / "model.pth.tar-3", weights_only=True)  # our files are plain data

    fresh = _tiny_model(seed=1)
    fresh_optim = build_optimizer(fresh, _optim_cfg())
    fresh_sched = build_lr_scheduler(fresh_optim, _optim_cfg())
    assert not torch.equal(fresh[0].weight, model[0].weight)
    assert resume_from_checkpoint(str(tmp_path), fresh, fresh_optim, fresh_sched) == 3
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_sched.get_last_lr() == sched.get_last_lr()
    momentum = optim.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(fresh_optim.state_dict()["state"][0]["momentum_buffer"], momentum)
    out = capsys.readouterr().out
    assert f'Loading checkpoint from "{tmp_path / "model.pth.tar-3"}"' in out
    for line in ("Loaded model weights", "Loaded optimizer", "Loaded scheduler", "Previous epoch: 3"):
        assert line + "\n" in out


def test_resume_without_pointer_uses_latest_epoch_file(tmp_path):
    model = _tiny_model()
    for epoch in (2, 10):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": epoch}, str(tmp_path))
    os.remove(tmp_path / "checkpoint")
    assert resume_from_checkpoint(str(tmp_path), _tiny_model(seed=5)) == 10


def test_resume_from_checkpoint_follows_the_engine_rule_not_an_official_best_pointer(tmp_path):
    """An official folder whose pointer names the best copy (epoch 2) still resumes from the last epoch (5)."""
    model = _tiny_model()
    for epoch in (2, 5):
        save_checkpoint({"state_dict": model.state_dict(), "epoch": epoch}, str(tmp_path))
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 2}, str(tmp_path), model_name="model-best.pth.tar")
    (tmp_path / "checkpoint").write_text("model-best.pth.tar\n")
    assert resume_from_checkpoint(str(tmp_path), _tiny_model(seed=5)) == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        resume_from_checkpoint(str(tmp_path / "empty"), _tiny_model())


# --------------------------------------------------------------------------------------------- upstream files
def _upstream_warmup_state(sched):
    """What upstream's warmup wrapper returns from state_dict(): its __dict__ with the inner scheduler OBJECT."""
    return {k: v for k, v in sched.__dict__.items() if k != "optimizer"}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_upstream_checkpoint_with_pickled_scheduler_loads_and_resumes(tmp_path, zip_format):
    model = _tiny_model()
    _perturb(model)
    optim = build_optimizer(model, _optim_cfg())
    sched = build_lr_scheduler(optim, _optim_cfg())
    _train_steps(model, optim, sched, 4)
    upstream_state = {
        "state_dict": model.state_dict(),
        "epoch": 4,
        "optimizer": optim.state_dict(),
        "scheduler": _upstream_warmup_state(sched),
        "val_result": 71.5,
    }
    assert isinstance(upstream_state["scheduler"]["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    path = tmp_path / "model-best.pth.tar"
    torch.save(upstream_state, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError):  # why the fallback exists
        torch.load(path, weights_only=True)

    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 4 and checkpoint["val_result"] == 71.5
    successor = checkpoint["scheduler"]["successor"]
    assert isinstance(successor, PickledObject)
    assert successor.global_name == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert successor.state["last_epoch"] == 3

    fresh = _tiny_model(seed=9)
    fresh.load_state_dict(checkpoint["state_dict"])  # strict
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    fresh_optim = build_optimizer(fresh, _optim_cfg())
    fresh_sched = build_lr_scheduler(fresh_optim, _optim_cfg())  # built before loading, as trainers do
    fresh_optim.load_state_dict(checkpoint["optimizer"])
    fresh_sched.load_state_dict(checkpoint["scheduler"])  # old layout accepted
    expected, resumed = [], []
    for _ in range(4):
        optim.step()
        sched.step()
        expected.append(optim.param_groups[0]["lr"])
        fresh_optim.step()
        fresh_sched.step()
        resumed.append(fresh_optim.param_groups[0]["lr"])
    assert resumed == expected


class _Payload:
    """Unpickling this runs os.system(...) in an unrestricted loader."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shell command as payload")
@pytest.mark.parametrize("fmt", ["zip", "legacy", "plain_pickle"])
def test_malicious_pickle_never_executes(tmp_path, fmt):
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"w": torch.ones(2)}, "epoch": 1, "scheduler": _Payload(marker)}
    path = tmp_path / f"evil-{fmt}.pth.tar"
    if fmt == "plain_pickle":
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=fmt == "zip")
    assert not marker.exists()

    # refused, not neutralised; a plain pickle stops at its first foreign global (torch's bytes-storage loader)
    foreign = r"torch\.storage\._load_from_bytes" if fmt == "plain_pickle" else r"(posix|os|nt)\.system"
    with pytest.raises(UnsafePickleError, match=foreign + ".*evil-") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "nothing in it was run" in str(info.value)
    assert not marker.exists()


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="File path is None"):
        load_checkpoint(None)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt.*not a readable PyTorch checkpoint"):
        load_checkpoint(text)
    with pytest.raises(IsADirectoryError):
        load_checkpoint(tmp_path)


def test_plain_state_dict_file_loads_under_any_name(tmp_path):
    model = _tiny_model()
    path = tmp_path / "weights.bin"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------- weights helpers
def test_load_pretrained_weights_matches_by_name_and_shape(tmp_path, capsys):
    source = _tiny_model(seed=3)
    _perturb(source)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.3.weight"] = torch.zeros(5, 16)  # wrong shape -> discarded
    state["extra.bias"] = torch.zeros(1)  # unknown -> discarded
    path = tmp_path / "init.pth"
    torch.save({"state_dict": state}, path)
    target = _tiny_model(seed=4)
    before = target[3].weight.clone()
    load_pretrained_weights(target, str(path))
    assert torch.equal(target[0].weight, source[0].weight)
    assert torch.equal(target[3].weight, before)
    out = capsys.readouterr().out
    assert f"Successfully loaded pretrained weights from {path}" in out
    assert "Layers discarded due to unmatched keys or size: ['3.weight', 'extra.bias']" in out
    torch.save({"other": torch.zeros(3)}, path)
    with pytest.warns(UserWarning, match="Cannot load"):
        load_pretrained_weights(target, str(path))


def test_count_num_param_for_models_tensors_and_groups():
    model = _tiny_model()
    model[0].weight.requires_grad_(False)  # frozen parameters count too
    n = sum(p.numel() for p in model.parameters())
    assert count_num_param(model) == n == 8 * 16 + 16 + 16 + 16 + 16 * 4 + 4
    assert count_num_param(params=list(model.parameters())) == n
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[3].parameters()), "lr": 0.1}]
    assert count_num_param(params=groups) == 8 * 16 + 16 + 16 * 4 + 4
    with pytest.raises(ValueError):
        count_num_param()
