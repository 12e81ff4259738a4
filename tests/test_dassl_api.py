"""Every import the PromptKD repository makes from Dassl works against our package."""

import importlib

import pytest

UPSTREAM_IMPORTS = [
    ("dassl.config", "get_cfg_default"),
    ("dassl.engine", "build_trainer"),
    ("dassl.engine", "TRAINER_REGISTRY"),
    ("dassl.engine", "TrainerX"),
    ("dassl.utils", "setup_logger"),
    ("dassl.utils", "set_random_seed"),
    ("dassl.utils", "collect_env_info"),
    ("dassl.utils", "load_pretrained_weights"),
    ("dassl.utils", "load_checkpoint"),
    ("dassl.utils", "mkdir_if_missing"),
    ("dassl.utils", "listdir_nohidden"),
    ("dassl.utils", "read_json"),
    ("dassl.utils", "write_json"),
    ("dassl.utils", "check_isfile"),
    ("dassl.optim", "build_optimizer"),
    ("dassl.optim", "build_lr_scheduler"),
    ("dassl.metrics", "compute_accuracy"),
    ("dassl.data.datasets", "DATASET_REGISTRY"),
    ("dassl.data.datasets", "Datum"),
    ("dassl.data.datasets", "DatasetBase"),
    ("dassl.data.transforms", "build_transform"),
    ("dassl.data", "DatasetWrapper"),
    # upstream's module map beyond the hard minimum
    ("dassl.engine", "TrainerBase"),
    ("dassl.engine", "SimpleTrainer"),
    ("dassl.engine", "TrainerXU"),
    ("dassl.engine", "SimpleNet"),
    ("dassl.engine.build", "TRAINER_REGISTRY"),
    ("dassl.engine.build", "build_trainer"),
    ("dassl.engine.trainer", "TrainerX"),
    ("dassl.data", "DataManager"),
    ("dassl.data.data_manager", "build_data_loader"),
    ("dassl.data.datasets", "build_dataset"),
    ("dassl.data.datasets.base_dataset", "Datum"),
    ("dassl.data.datasets.base_dataset", "DatasetBase"),
    ("dassl.data.datasets.build", "DATASET_REGISTRY"),
    ("dassl.data.samplers", "build_sampler"),
    ("dassl.data.samplers", "RandomDomainSampler"),
    ("dassl.data.samplers", "SeqDomainSampler"),
    ("dassl.data.samplers", "RandomClassSampler"),
    ("dassl.data.transforms", "INTERPOLATION_MODES"),
]


@pytest.mark.parametrize(("module", "name"), UPSTREAM_IMPORTS, ids=[f"{m}.{n}" for m, n in UPSTREAM_IMPORTS])
def test_upstream_import_resolves(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"from {module} import {name} fails"


def test_trainer_attributes_upstream_trainers_rely_on() -> None:
    """The methods and attributes PromptKD's trainers call on their base classes."""
    from dassl.engine import SimpleTrainer, TrainerBase, TrainerX

    for name in [
        "register_model",
        "get_model_names",
        "set_model_mode",
        "update_lr",
        "model_backward_and_update",
        "parse_batch_test",
        "write_scalar",
        "test",
        "train",
        "load_model",
        "check_cfg",
        "build_model",
        "forward_backward",
        "parse_batch_train",
        "model_inference",
    ]:
        assert hasattr(TrainerX, name), name
    assert issubclass(TrainerX, SimpleTrainer) and issubclass(SimpleTrainer, TrainerBase)
