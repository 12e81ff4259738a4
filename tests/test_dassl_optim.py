"""dassl.optim: optimiser construction and upstream's exact lr sequences, also across a resume."""

import math
import warnings

import pytest
import torch
from torch import nn

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.optim.lr_scheduler import AVAI_SCHEDS, ConstantWarmupScheduler, LinearWarmupScheduler
from dassl.optim.optimizer import AVAI_OPTIMS
from dassl.optim.radam import AdamW, PlainRAdam, RAdam
from dassl.utils import load_checkpoint, save_checkpoint
from dassl.utils._safe_unpickle import PickledObject


def _cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "sgd"
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _lrs(cfg, epochs=None, model=None):
    """lr used in each 0-based epoch when the scheduler is stepped once per epoch (as the trainers do)."""
    model = model or nn.Linear(2, 2)
    optim = build_optimizer(model, cfg)
    sched = build_lr_scheduler(optim, cfg)
    out = []
    for _ in range(epochs or cfg.MAX_EPOCH):
        out.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return out


def _sig6(values):
    return [float(f"{v:.6g}") for v in values]


# Upstream's lr per epoch (cosine with constant warm-up, linear warm-up, warm-up without recount), 6 significant digits.
PROMPTKD = [1e-05, 0.005, 0.00496922, 0.00487764, 0.00472752, 0.00452254, 0.00426777, 0.00396946, 0.00363498,
            0.00327254, 0.00289109, 0.0025, 0.00210891, 0.00172746, 0.00136502, 0.00103054, 0.000732233,
            0.000477458, 0.000272484, 0.000122359]  # fmt: skip
LINEAR_W3 = [1e-05, 0.00166667, 0.00333333, 0.005, 0.00487764, 0.00452254, 0.00396946, 0.00327254, 0.0025,
             0.00172746]  # fmt: skip
NO_RECOUNT_W2 = [1e-05, 1e-05, 0.005, 0.00438853, 0.00361803, 0.00276393, 0.00190983, 0.00113933, 0.000527864,
                 0.000135276]  # fmt: skip


def test_promptkd_cosine_constant_warmup_sequence():
    cfg = _cfg(LR=0.005, MAX_EPOCH=20, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant",
               WARMUP_CONS_LR=1e-5)  # fmt: skip
    assert _sig6(_lrs(cfg)) == PROMPTKD


def test_linear_warmup_sequence():
    cfg = _cfg(LR=0.005, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=3, WARMUP_TYPE="linear",
               WARMUP_MIN_LR=1e-5)  # fmt: skip
    assert _sig6(_lrs(cfg)) == LINEAR_W3


def test_no_recount_cosine_sequence():
    cfg = _cfg(LR=0.005, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2, WARMUP_TYPE="constant",
               WARMUP_RECOUNT=False)  # fmt: skip
    assert _sig6(_lrs(cfg)) == NO_RECOUNT_W2


def test_closed_forms_without_warmup():
    base, T = 0.01, 12
    cosine = _lrs(_cfg(LR=base, MAX_EPOCH=T, LR_SCHEDULER="cosine"))
    assert cosine == pytest.approx([base * (1 + math.cos(math.pi * e / T)) / 2 for e in range(T)], rel=1e-9)
    single = _lrs(_cfg(LR=base, MAX_EPOCH=T, LR_SCHEDULER="single_step", STEPSIZE=(5,), GAMMA=0.5))
    assert single == pytest.approx([base * 0.5 ** (e // 5) for e in range(T)], rel=1e-12)
    single_default = _lrs(_cfg(LR=base, MAX_EPOCH=T, LR_SCHEDULER="single_step"))  # STEPSIZE (-1,) -> MAX_EPOCH
    assert single_default == pytest.approx([base] * T)
    multi = _lrs(_cfg(LR=base, MAX_EPOCH=T, LR_SCHEDULER="multi_step", STEPSIZE=(3, 7), GAMMA=0.1))
    assert multi == pytest.approx([base * 0.1 ** sum(m <= e for m in (3, 7)) for e in range(T)], rel=1e-9)


def test_no_recount_step_decays_at_absolute_epochs():
    cfg = _cfg(LR=1.0, MAX_EPOCH=8, LR_SCHEDULER="single_step", STEPSIZE=4, GAMMA=0.1, WARMUP_EPOCH=2,
               WARMUP_TYPE="constant", WARMUP_CONS_LR=0.5, WARMUP_RECOUNT=False)  # fmt: skip
    assert _lrs(cfg) == pytest.approx([0.5, 0.5, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1])


def test_staged_lr_group_gets_its_own_base():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 2))
    cfg = _cfg(LR=0.01, MAX_EPOCH=4, LR_SCHEDULER="cosine", STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1)
    optim = build_optimizer(model, cfg)
    assert [g["lr"] for g in optim.param_groups] == pytest.approx([0.001, 0.01])
    assert optim.param_groups[1]["params"] == list(model.head.parameters())
    sched = build_lr_scheduler(optim, cfg)
    optim.step()
    sched.step()
    assert [g["lr"] for g in optim.param_groups] == pytest.approx(
        [0.001 * (1 + math.cos(math.pi / 4)) / 2, 0.01 * (1 + math.cos(math.pi / 4)) / 2]
    )


@pytest.mark.parametrize(
    "cfg_kwargs",
    [
        dict(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant"),
        dict(LR_SCHEDULER="cosine", WARMUP_EPOCH=3, WARMUP_TYPE="linear"),
        dict(LR_SCHEDULER="cosine", WARMUP_EPOCH=2, WARMUP_TYPE="constant", WARMUP_RECOUNT=False),
        dict(LR_SCHEDULER="multi_step", STEPSIZE=(4, 7), WARMUP_EPOCH=2, WARMUP_TYPE="linear"),
    ],
    ids=["cos-const", "cos-linear", "cos-norecount", "multistep-linear"],
)
def test_resume_continues_the_same_sequence(tmp_path, cfg_kwargs):
    """Build, step k times, save, build fresh, load, continue == uninterrupted."""
    cfg = _cfg(LR=0.005, MAX_EPOCH=10, **cfg_kwargs)
    uninterrupted = _lrs(cfg)
    for k in (0, 1, 2, 4, 7):
        model = nn.Linear(2, 2)
        optim = build_optimizer(model, cfg)
        sched = build_lr_scheduler(optim, cfg)
        seen = []
        for _ in range(k):
            seen.append(optim.param_groups[0]["lr"])
            optim.step()
            sched.step()
        state = {"state_dict": model.state_dict(), "epoch": k, "optimizer": optim.state_dict(),
                 "scheduler": sched.state_dict()}  # fmt: skip
        save_checkpoint(state, str(tmp_path / f"k{k}"))
        checkpoint = load_checkpoint(tmp_path / f"k{k}" / f"model.pth.tar-{k}")
        torch.load(tmp_path / f"k{k}" / f"model.pth.tar-{k}", weights_only=True)  # plain data, no objects

        model2 = nn.Linear(2, 2)
        optim2 = build_optimizer(model2, cfg)
        sched2 = build_lr_scheduler(optim2, cfg)
        optim2.load_state_dict(checkpoint["optimizer"])
        sched2.load_state_dict(checkpoint["scheduler"])
        for _ in range(k, cfg.MAX_EPOCH):
            seen.append(optim2.param_groups[0]["lr"])
            optim2.step()
            sched2.step()
        assert seen == uninterrupted, f"resumed after {k} epochs"


def test_warmup_state_dict_is_plain_and_references_no_objects():
    cfg = _cfg(LR=0.005, MAX_EPOCH=5, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    optim = build_optimizer(nn.Linear(2, 2), cfg)
    sched = build_lr_scheduler(optim, cfg)
    assert isinstance(sched, ConstantWarmupScheduler)
    state = sched.state_dict()
    assert "successor" not in state and "optimizer" not in state
    assert state["inner"]["T_max"] == 5.0 and state["warmup_epoch"] == 1 and state["cons_lr"] == 1e-5

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return isinstance(x, (int, float, str, bool, type(None)))

    assert plain(state)
    with pytest.raises(KeyError, match="neither 'inner'"):
        sched.load_state_dict({"last_epoch": 0})
    broken = PickledObject()  # an upstream 'successor' whose state did not survive
    with pytest.raises(ValueError, match="cannot recover the inner scheduler state"):
        sched.load_state_dict({"last_epoch": 3, "successor": broken})
    linear = build_lr_scheduler(optim, _cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=2, WARMUP_TYPE="linear"))
    assert isinstance(linear, LinearWarmupScheduler)


def test_optimizer_choices_and_hyperparameters():
    model = nn.Linear(3, 1)
    expected = {
        "adam": torch.optim.Adam,
        "amsgrad": torch.optim.Adam,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
        "radam": torch.optim.RAdam,
        "adamw": torch.optim.AdamW,
    }
    assert sorted(AVAI_OPTIMS) == sorted(expected)
    for name, cls in expected.items():
        optim = build_optimizer(model, _cfg(NAME=name, LR=0.02))
        assert type(optim) is cls
        group = optim.param_groups[0]
        assert group["lr"] == 0.02 and group["weight_decay"] == 5e-4
        if name in ("adam", "amsgrad", "radam", "adamw"):
            assert group["betas"] == (0.9, 0.999)
        assert group.get("amsgrad", False) is (name == "amsgrad")
    sgd = build_optimizer(model, _cfg(NAME="sgd")).param_groups[0]
    assert (sgd["momentum"], sgd["dampening"], sgd["nesterov"]) == (0.9, 0, False)
    assert build_optimizer(model, _cfg(NAME="rmsprop")).param_groups[0]["alpha"] == 0.99
    # an iterable of tensors and explicit param groups are accepted too
    assert build_optimizer(list(model.parameters()), _cfg()).param_groups[0]["params"][0] is model.weight
    groups = [{"params": [model.weight], "lr": 0.5}, {"params": [model.bias]}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optim = build_optimizer(model, _cfg(STAGED_LR=True, NEW_LAYERS=("x",)), param_groups=groups)
    assert [g["lr"] for g in optim.param_groups] == [0.5, 0.0003]


def test_optim_and_scheduler_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"optim must be one of .* but got sgdd"):
        build_optimizer(model, _cfg(NAME="sgdd"))
    with pytest.raises(TypeError, match="STAGED_LR"):
        build_optimizer(list(model.parameters()), _cfg(STAGED_LR=True))
    with pytest.raises(ValueError, match="not direct children"):
        build_optimizer(model, _cfg(STAGED_LR=True, NEW_LAYERS=("head",)))
    optim = build_optimizer(model, _cfg())
    with pytest.raises(ValueError, match=rf"scheduler must be one of {AVAI_SCHEDS}".replace("[", r"\[")):
        build_lr_scheduler(optim, _cfg(LR_SCHEDULER="poly"))
    with pytest.raises(TypeError, match="must be an integer"):
        build_lr_scheduler(optim, _cfg(LR_SCHEDULER="single_step", STEPSIZE=2.5))
    with pytest.raises(TypeError, match="must be a list"):
        build_lr_scheduler(optim, _cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        build_lr_scheduler(optim, _cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_radam_module_names():
    params = [nn.Parameter(torch.ones(2))]
    assert isinstance(RAdam(params, lr=0.1), torch.optim.RAdam)
    assert isinstance(PlainRAdam(params, lr=0.1), torch.optim.RAdam)
    assert isinstance(AdamW(params, lr=0.1, weight_decay=0.01), torch.optim.AdamW)
    with pytest.raises(ValueError, match="degenerated_to_sgd"):
        RAdam(params, degenerated_to_sgd=False)
    with pytest.raises(ValueError, match="warmup"):
        AdamW(params, warmup=5)
