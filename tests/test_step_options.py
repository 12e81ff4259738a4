"""Step-speed options against the plain run: ``TRAIN.COMPILE`` (a CPU-capable backend, within a stated tolerance;
a failing compiler falls back to the eager run exactly), ``TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS`` (the same
losses bit for bit) and ``TRAIN.TF32`` (CUDA fp32 only)."""

from __future__ import annotations

import logging

import pytest
import torch

from dassl.engine.compilation import CompiledForward
from dassl.engine.precision import Precision, apply_tf32
from dassl.errors import ConfigError
from tests.helpers.trainer_runs import distil_zero_shot
from trainers.common import store_matmul_weights_in

FP32 = ("TRAINER.PROMPTKD.PREC", "fp32")
# aot_eager traces forward and backward into graphs and runs them with ATen: the same kernels, maybe reordered.
COMPILE_RTOL, COMPILE_ATOL = 1e-5, 1e-6


@pytest.fixture
def fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled_parts(trainer) -> list[CompiledForward]:
    return [trainer.student_forward, *(t.image_forward for t in trainer.teachers)]


def test_compiled_steps_match_eager_within_tolerance(trainer_env, tmp_path, kd_step_losses, fresh_dynamo):
    eager, eager_acc, _ = distil_zero_shot(trainer_env, tmp_path / "eager", kd_step_losses, *FP32)
    opts = (*FP32, "TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", "aot_eager")
    compiled, compiled_acc, trainer = distil_zero_shot(trainer_env, tmp_path / "compiled", kd_step_losses, *opts)
    assert [part.state for part in compiled_parts(trainer)] == ["compiled", "compiled"]
    assert len(compiled) == len(eager) > 2
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=COMPILE_RTOL, atol=COMPILE_ATOL)
    assert compiled_acc == eager_acc


def test_failing_compiler_falls_back_to_the_eager_run(trainer_env, tmp_path, kd_step_losses, fresh_dynamo, caplog):
    from torch._dynamo import register_backend

    @register_backend(name="broken_for_test")
    def broken(graph_module, example_inputs):
        raise RuntimeError("this compiler cannot build anything")

    eager, eager_acc, _ = distil_zero_shot(trainer_env, tmp_path / "eager", kd_step_losses, *FP32)
    opts = (*FP32, "TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", "broken_for_test")
    with caplog.at_level(logging.WARNING, logger="dassl.engine.compilation"):
        fallback, fallback_acc, trainer = distil_zero_shot(trainer_env, tmp_path / "broken", kd_step_losses, *opts)
    assert [part.state for part in compiled_parts(trainer)] == ["eager", "eager"]
    assert fallback == eager and fallback_acc == eager_acc  # buffers restored: exactly the eager run
    warnings = [r.getMessage() for r in caplog.records if "TRAIN.COMPILE" in r.getMessage()]
    assert len(warnings) == 2 and all("running it eagerly" in w and "cannot build" in w for w in warnings)


@pytest.mark.parametrize(
    "opts, message",
    [
        (("TRAIN.COMPILE", "fastest"), "TRAIN.COMPILE is 'fastest'"),
        (("TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", "no-such-compiler"), "COMPILE_BACKEND"),
    ],
)
def test_unknown_compile_settings_are_config_errors(trainer_env, tmp_path, kd_step_losses, opts, message):
    with pytest.raises(ConfigError, match=message):
        distil_zero_shot(trainer_env, tmp_path / "out", kd_step_losses, *opts)


def test_teacher_weights_in_the_autocast_dtype_give_the_same_losses(trainer_env, tmp_path, kd_step_losses):
    plain, plain_acc, _ = distil_zero_shot(trainer_env, tmp_path / "fp32", kd_step_losses)
    opts = ("TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS", "True")
    stored, stored_acc, trainer = distil_zero_shot(trainer_env, tmp_path / "bf16", kd_step_losses, *opts)
    tower = trainer.teachers.first.image_encoder
    block = tower.transformer.resblocks[0]
    assert tower.conv1.weight.dtype == block.attn.in_proj_weight.dtype == block.mlp.c_fc.weight.dtype == torch.bfloat16
    assert tower.ln_post.weight.dtype == tower.positional_embedding.dtype == torch.float32
    assert stored == plain and stored_acc == plain_acc  # autocast rounded these weights the same way every step


def test_trained_weights_are_never_stored_in_low_precision():
    layer = torch.nn.Linear(4, 4)
    with pytest.raises(ValueError, match="frozen towers"):
        store_matmul_weights_in(layer, torch.bfloat16)
    assert store_matmul_weights_in(layer.requires_grad_(False), torch.bfloat16) == 20
    assert layer.weight.dtype == layer.bias.dtype == torch.bfloat16


@pytest.fixture
def tf32_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize(
    "autocast, device, enabled, expected",
    [
        (None, "cuda", True, True),
        (None, "cuda", False, False),
        (None, "cpu", True, False),  # CPUs have no TF32
        (torch.bfloat16, "cuda", True, False),  # autocast matmuls are bf16 already
        (torch.float16, "cuda", True, False),
    ],
)
def test_tf32_only_for_fp32_math_on_cuda(tf32_flags, autocast, device, enabled, expected):
    precision = Precision("test", device, autocast, False, "test precision")
    assert apply_tf32(precision, enabled) is expected
    assert torch.backends.cuda.matmul.allow_tf32 is expected and torch.backends.cudnn.allow_tf32 is expected
