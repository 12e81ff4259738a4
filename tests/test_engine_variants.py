"""TrainerXU iteration counting and SimpleTrainer's default SimpleNet model."""

from __future__ import annotations

import pytest
import torch

import train
from dassl.engine import SimpleNet
from dassl.engine.iteration_log import progress_disabled
from tests.helpers.toy_engine import make_toy_dataset, toy_argv


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> str:
    # train_x: 3 x 4 = 12 images (3 batches of 4); train_u = test: 3 x 2 = 6 images (1 batch of 4, drop_last)
    return make_toy_dataset(str(tmp_path_factory.mktemp("toyu")), per_split={"train": 4, "test": 2})


@pytest.mark.parametrize(("count_iter", "num_batches"), [("train_x", 3), ("train_u", 1), ("smaller_one", 1)])
def test_trainer_xu_count_iter(toy_root, tmp_path, count_iter, num_batches):
    opts = {"DATASET.NAME": "ToyColorsU", "TRAIN.COUNT_ITER": count_iter, "OPTIM.MAX_EPOCH": 1, "TRAIN.PRINT_FREQ": 1}
    argv = toy_argv(toy_root, str(tmp_path / count_iter), opts=opts)
    argv[argv.index("ToyNet")] = "ToyXU"
    t = train.main(argv)
    assert t.num_batches == num_batches and t.batch_sizes == [(4, 4)] * num_batches  # u loader restarts
    log = (tmp_path / count_iter / "log.txt").read_text()
    assert f"epoch [1/1] batch [{num_batches}/{num_batches}]" in log and "loss_x " in log and "loss_u " in log


def test_trainer_xu_rejects_unknown_count_iter(toy_root, tmp_path):
    argv = toy_argv(toy_root, str(tmp_path / "bad"), opts={"DATASET.NAME": "ToyColorsU", "TRAIN.COUNT_ITER": "both"})
    argv[argv.index("ToyNet")] = "ToyXU"
    with pytest.raises(ValueError, match=r"TRAIN.COUNT_ITER='both'.*smaller_one"):
        train.main(argv)


def test_default_build_model_uses_simplenet(toy_root, tmp_path):
    opts = {"MODEL.BACKBONE.PRETRAINED": "False", "OPTIM.MAX_EPOCH": 1}
    argv = toy_argv(toy_root, str(tmp_path / "sn"), "--backbone", "mobilenet_v3_small", "--no-train", opts=opts)
    argv[argv.index("ToyNet")] = "ToySimpleNet"
    t = train.main(argv)
    assert isinstance(t.model, SimpleNet) and t.get_model_names() == ["model"]
    assert isinstance(t._optims["model"], torch.optim.SGD) and t._scheds["model"] is not None
    assert t.model.fdim == 576 and t.model.classifier.out_features == 3
    t.set_model_mode("eval")
    logits, feats = t.model(torch.zeros(2, 3, 16, 16), return_feature=True)
    assert logits.shape == (2, 3) and feats.shape == (2, 576)
    assert "# params: " in (tmp_path / "sn" / "log.txt").read_text()

    argv = toy_argv(toy_root, str(tmp_path / "sn2"), "--backbone", "resnet_9000", "--no-train", opts=opts)
    argv[argv.index("ToyNet")] = "ToySimpleNet"
    with pytest.raises(NotImplementedError, match="override build_model"):
        train.main(argv)


def test_progress_bars_quiet_without_tty(capsys):
    assert progress_disabled()  # pytest captures stderr: not a terminal
