"""dassl.config: upstream's default tree (fresh copies; unknown keys raise), yacs merge rules, extension hooks."""

import pytest
from yacs.config import CfgNode as CN

import dassl.config as dassl_config
from dassl.config import (
    UnknownConfigKeyError,
    apply_cfg_defaults,
    clean_cfg,
    get_cfg_default,
    register_cfg_defaults,
    registered_cfg_defaults,
)

# Upstream Dassl's default tree (every key and default) plus the engine keys of docs/design.md.
EXPECTED_DEFAULTS = {
    "VERSION": 1,
    "OUTPUT_DIR": "./output",
    "RESUME": "",
    "SEED": -1,
    "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT.SIZE": (224, 224),
    "INPUT.INTERPOLATION": "bilinear",
    "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False,
    "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225],
    "INPUT.CROP_PADDING": 4,
    "INPUT.RRCROP_SCALE": (0.08, 1.0),
    "INPUT.CUTOUT_N": 1,
    "INPUT.CUTOUT_LEN": 16,
    "INPUT.GN_MEAN": 0.0,
    "INPUT.GN_STD": 0.15,
    "INPUT.RANDAUGMENT_N": 2,
    "INPUT.RANDAUGMENT_M": 10,
    "INPUT.COLORJITTER_B": 0.4,
    "INPUT.COLORJITTER_C": 0.4,
    "INPUT.COLORJITTER_S": 0.4,
    "INPUT.COLORJITTER_H": 0.1,
    "INPUT.RGS_P": 0.2,
    "INPUT.GB_P": 0.5,
    "INPUT.GB_K": 21,
    "DATASET.ROOT": "",
    "DATASET.NAME": "",
    "DATASET.SOURCE_DOMAINS": (),
    "DATASET.TARGET_DOMAINS": (),
    "DATASET.NUM_LABELED": -1,
    "DATASET.NUM_SHOTS": -1,
    "DATASET.VAL_PERCENT": 0.1,
    "DATASET.STL10_FOLD": -1,
    "DATASET.CIFAR_C_TYPE": "",
    "DATASET.CIFAR_C_LEVEL": 1,
    "DATASET.ALL_AS_UNLABELED": False,
    "DATASET.CACHE_DIR": "",
    "DATALOADER.NUM_WORKERS": 4,
    "DATALOADER.K_TRANSFORMS": 1,
    "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0,
    "DATALOADER.TRAIN_X.N_INS": 16,
    "DATALOADER.TRAIN_U.SAME_AS_X": True,
    "DATALOADER.TRAIN_U.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_U.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_U.N_DOMAIN": 0,
    "DATALOADER.TRAIN_U.N_INS": 16,
    "DATALOADER.TEST.SAMPLER": "SequentialSampler",
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "",
    "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.HEAD.NAME": "",
    "MODEL.HEAD.HIDDEN_LAYERS": (),
    "MODEL.HEAD.ACTIVATION": "relu",
    "MODEL.HEAD.BN": True,
    "MODEL.HEAD.DROPOUT": 0.0,
    "MODEL.WEIGHTS_DIR": "",
    "MODEL.TRUST_TORCHSCRIPT": False,
    "OPTIM.NAME": "adam",
    "OPTIM.LR": 0.0003,
    "OPTIM.WEIGHT_DECAY": 5e-4,
    "OPTIM.MOMENTUM": 0.9,
    "OPTIM.SGD_DAMPNING": 0,
    "OPTIM.SGD_NESTEROV": False,
    "OPTIM.RMSPROP_ALPHA": 0.99,
    "OPTIM.ADAM_BETA1": 0.9,
    "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.STAGED_LR": False,
    "OPTIM.NEW_LAYERS": (),
    "OPTIM.BASE_LR_MULT": 0.1,
    "OPTIM.LR_SCHEDULER": "single_step",
    "OPTIM.STEPSIZE": (-1,),
    "OPTIM.GAMMA": 0.1,
    "OPTIM.MAX_EPOCH": 10,
    "OPTIM.WARMUP_EPOCH": -1,
    "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5,
    "OPTIM.WARMUP_MIN_LR": 1e-5,
    "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0,
    "TRAIN.PRINT_FREQ": 10,
    "TRAIN.COUNT_ITER": "train_x",
    "TRAIN.DETERMINISTIC": False,
    "TEST.EVALUATOR": "Classification",
    "TEST.PER_CLASS_RESULT": False,
    "TEST.COMPUTE_CMAT": False,
    "TEST.NO_TEST": False,
    "TEST.SPLIT": "test",
    "TEST.FINAL_MODEL": "last_step",
    "TRAINER.NAME": "",
}


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registered defaults are global; tests use an empty private list."""
    monkeypatch.setattr(dassl_config, "_REGISTERED_DEFAULTS", [])


def test_every_default_key_and_value_with_its_type():
    cfg = get_cfg_default()
    assert isinstance(cfg, CN)
    for key, expected in EXPECTED_DEFAULTS.items():
        value = _get(cfg, key)
        assert value == expected, key
        assert type(value) is type(expected), f"{key}: {type(value).__name__} != {type(expected).__name__}"


def test_fresh_copy_each_call():
    a, b = get_cfg_default(), get_cfg_default()
    a.OPTIM.LR = 1.0
    a.INPUT.PIXEL_MEAN[0] = 9.0
    assert b.OPTIM.LR == 0.0003 and get_cfg_default().INPUT.PIXEL_MEAN[0] == 0.485


def test_yaml_merge_decodes_literals_and_keeps_types(tmp_path):
    cfg = get_cfg_default()
    path = tmp_path / "m.yaml"
    path.write_text("OPTIM:\n  LR: 1e-5\n  MAX_EPOCH: 3\n  STEPSIZE: [5, 8]\nINPUT:\n  SIZE: (32, 32)\n")
    cfg.merge_from_file(str(path))
    assert cfg.OPTIM.LR == 1e-5 and isinstance(cfg.OPTIM.LR, float)
    assert cfg.OPTIM.MAX_EPOCH == 3
    assert cfg.INPUT.SIZE == (32, 32)
    assert list(cfg.OPTIM.STEPSIZE) == [5, 8]


def test_unknown_yaml_key_raises_naming_key_file_and_suggestion(tmp_path):
    cfg = get_cfg_default()
    path = tmp_path / "typo.yaml"
    path.write_text("OPTIM:\n  MAX_EPOH: 3\n")
    with pytest.raises(KeyError) as info:
        cfg.merge_from_file(str(path))
    message = str(info.value)
    assert "OPTIM.MAX_EPOH" in message and str(path) in message and "'OPTIM.MAX_EPOCH'" in message


def test_unknown_opts_key_raises_with_suggestion_and_stays_assertion_compatible():
    cfg = get_cfg_default()
    with pytest.raises(AssertionError) as info:  # yacs raised AssertionError here; still catchable as such
        cfg.merge_from_list(["TEST.FINAL_MODLE", "best_val"])
    assert isinstance(info.value, UnknownConfigKeyError) and isinstance(info.value, KeyError)
    assert "TEST.FINAL_MODLE" in str(info.value) and "'TEST.FINAL_MODEL'" in str(info.value)


def test_opts_merge_and_type_rules():
    cfg = get_cfg_default()
    cfg.merge_from_list(["SEED", "0", "OPTIM.WARMUP_CONS_LR", "1e-4", "DATASET.NAME", "Caltech101"])
    assert cfg.SEED == 0 and cfg.OPTIM.WARMUP_CONS_LR == 1e-4 and cfg.DATASET.NAME == "Caltech101"
    with pytest.raises(ValueError):  # int <-> float is not allowed by yacs
        cfg.merge_from_list(["OPTIM.MAX_EPOCH", "2.5"])


def test_plain_yacs_subnodes_added_by_methods_merge():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.merge_from_other_cfg(CN({"TRAINER": {"COOP": {"N_CTX": 4}}}))
    cfg.merge_from_list(["TRAINER.COOP.N_CTX", "8"])
    assert cfg.TRAINER.COOP.N_CTX == 8


def test_freeze_makes_immutable():
    cfg = get_cfg_default()
    cfg.freeze()
    with pytest.raises(AttributeError):
        cfg.SEED = 3


def test_print_is_sorted_yaml_dump():
    text = str(get_cfg_default())
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ")]
    assert top == sorted(top)
    assert "WARMUP_CONS_LR: 1e-05" in text


def test_clean_cfg_keeps_name_and_trainer_block():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN({"N_CTX": 16})
    cfg.TRAINER.PROMPTKD = CN({"TEMPERATURE": 1.0})
    clean_cfg(cfg, "PromptKD")
    assert sorted(cfg.TRAINER.keys()) == ["NAME", "PROMPTKD"]


def test_register_and_apply_defaults_in_order(isolated_registry):
    calls = []

    @register_cfg_defaults
    def add_a(cfg):
        calls.append("a")
        cfg.TRAINER.A = CN()
        cfg.TRAINER.A.X = 1

    @register_cfg_defaults
    def add_b(cfg):
        calls.append("b")
        cfg.TRAINER.A.X = 2  # a later assignment wins, like upstream's extend_cfg

    assert register_cfg_defaults(add_a) is add_a  # same function again: ignored
    assert registered_cfg_defaults() == [add_a, add_b]
    cfg = apply_cfg_defaults(get_cfg_default())
    assert calls == ["a", "b"] and cfg.TRAINER.A.X == 2
    assert "A" not in get_cfg_default().TRAINER  # the default tree itself is untouched
    cfg.merge_from_list(["TRAINER.A.X", "5"])
    assert cfg.TRAINER.A.X == 5


def test_apply_defaults_rejects_frozen_and_register_rejects_non_callable(isolated_registry):
    cfg = get_cfg_default()
    cfg.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        apply_cfg_defaults(cfg)
    with pytest.raises(TypeError, match="register_cfg_defaults"):
        register_cfg_defaults(42)
