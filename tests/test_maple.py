"""MaPLe: train.py with the real YAML (depth 9 on a 9-block tiny CLIP), eval-only
reload, coupling functions, derived widths, gradients, checkpoint contents, upstream-style full checkpoints."""

from __future__ import annotations

import pytest
import torch

import clip
from dassl.utils import save_checkpoint
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.helpers.trainer_runs import (
    gradient_report,
    last_accuracy,
    load_saved_state,
    make_tiny_setup,
    run_train,
)
from trainers.common import freeze_by_name
from trainers.maple import MaPLeCLIP, MultiModalPromptLearner

CONFIG = "MaPLe/vit_b16_c2_ep5_batch4_2ctx"
LAYERS = {"vision_layers": 9, "transformer_layers": 9}  # the YAML's PROMPT_DEPTH 9 needs 9 blocks per tower


def _trained_keys(depth: int) -> set[str]:
    keys = {"prompt_learner.ctx", "prompt_learner.proj.weight", "prompt_learner.proj.bias"}
    for k in range(depth - 1):
        keys |= {
            f"prompt_learner.compound_prompts_text.{k}",
            f"prompt_learner.compound_prompt_projections.{k}.weight",
            f"prompt_learner.compound_prompt_projections.{k}.bias",
        }
    return keys


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tiny = make_tiny_setup(tmp_path_factory.mktemp("maple"), **LAYERS)
    out = tiny.tmp / "run"
    trainer = run_train(tiny.args("MaPLe", CONFIG, out, "DATASET.NUM_SHOTS", "2"))
    return tiny, out, trainer


def test_train_selects_best_and_eval_only_reproduces(trained) -> None:
    tiny, out, trainer = trained
    final = last_accuracy(out, "final")
    folder = out / "MultiModalPromptLearner"
    assert (folder / "model-best.pth.tar").is_file() and (folder / "model.pth.tar-2").is_file()
    state = load_saved_state(folder)
    assert set(state) == _trained_keys(9)  # only the trained tensors, no frozen backbone, no token buffers
    assert state["prompt_learner.proj.weight"].shape == (64, 32)  # Linear(D_text=32 -> D_vision=64)

    out_eval = tiny.tmp / "eval"
    evaluator = run_train(tiny.args("MaPLe", CONFIG, out_eval, "DATASET.NUM_SHOTS", "2", seed=2, eval_from=out))
    assert last_accuracy(out_eval, "eval_only") == pytest.approx(final)
    best = torch.load(folder / "model-best.pth.tar", weights_only=False)["state_dict"]
    loaded = evaluator._models["MultiModalPromptLearner"].state_dict()
    for key, value in best.items():
        torch.testing.assert_close(loaded[key].cpu(), value)


def test_gradients_reach_exactly_the_prompt_learner(trained) -> None:
    _, _, trainer = trained
    with_grad, frozen_grad = gradient_report(trainer.model)
    assert with_grad == _trained_keys(9)
    assert frozen_grad == set()


def test_upstream_full_checkpoint_loads(trained, tmp_path) -> None:
    """An upstream-style file (frozen backbone + token buffers saved too) loads; a missing prompt key fails."""
    _, _, trainer = trained
    model = trainer.model
    full = {name: p.detach().clone() + 0.5 for name, p in model.named_parameters()}
    full["prompt_learner.token_prefix"] = model.prompt_learner.token_prefix.clone()
    full["prompt_learner.token_suffix"] = model.prompt_learner.token_suffix.clone()
    folder = tmp_path / "MultiModalPromptLearner"
    save_checkpoint({"state_dict": full, "epoch": 5}, str(folder), model_name="model.pth.tar-5")
    frozen_before = model.image_encoder.conv1.weight.detach().clone()
    trainer.load_model(str(tmp_path), epoch=5)
    torch.testing.assert_close(model.prompt_learner.ctx.detach(), full["prompt_learner.ctx"])
    torch.testing.assert_close(model.image_encoder.conv1.weight.detach(), frozen_before)  # frozen keys ignored

    del full["prompt_learner.compound_prompts_text.3"]
    save_checkpoint({"state_dict": full, "epoch": 6}, str(folder), model_name="model.pth.tar-6")
    with pytest.raises(KeyError, match=r"missing keys \['prompt_learner.compound_prompts_text.3'\]"):
        trainer.load_model(str(tmp_path), epoch=6)


def test_prompt_learner_shapes_coupling_and_depth_checks() -> None:
    clip_model = clip.build_model(tiny_clip_state_dict(**LAYERS), clip.PromptDesign(variant="maple", maple_length=2))
    learner = MultiModalPromptLearner(["cat", "sea_lion"], clip_model, n_ctx=2, ctx_init="a photo of a", prompt_depth=3)
    prompts, shared_ctx, deep_text, deep_vision = learner()
    assert prompts.shape == (2, 77, 32) and shared_ctx.shape == (2, 64)
    assert [t.shape for t in deep_text] == [(2, 32)] * 2 and [v.shape for v in deep_vision] == [(2, 64)] * 2
    # the coupling functions start as copies of one initialisation
    p0, p1 = learner.compound_prompt_projections
    torch.testing.assert_close(p0.weight, p1.weight)
    # CTX_INIT with N_CTX=2: learnable "a photo", fixed "of a"
    with torch.no_grad():
        expected = clip_model.token_embedding(clip.tokenize(["a photo of a cat.", "a photo of a sea lion."]))
    torch.testing.assert_close(prompts, expected)

    model = MaPLeCLIP(clip_model, learner)
    logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()

    with pytest.raises(ValueError, match="PROMPT_DEPTH=10 exceeds the 9 transformer blocks"):
        MultiModalPromptLearner(["cat"], clip_model, 2, "a photo of a", prompt_depth=10)
    resnet = clip.build_model(tiny_clip_state_dict(vision="resnet", vision_layers=1))
    with pytest.raises(ValueError, match="MaPLe needs a ViT image encoder"):
        MultiModalPromptLearner(["cat"], resnet, 2, "a photo of a", prompt_depth=1)


def test_trainable_count_at_real_vit_b16_size() -> None:
    """ViT-B/16 (D_t 512, D_v 768), N_CTX 2, depth 9: ctx 1,024 + proj 393,984 + 8 x (1,024 + 393,984) = 3,555,072
    (the 3.55M of the MaPLe paper). Built on the meta device: shapes only, no memory, no time."""
    with torch.device("meta"):
        real = clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12, design=clip.PromptDesign(variant="maple"))
        model = MaPLeCLIP(real, MultiModalPromptLearner(["a", "b"], real, 2, "a photo of a", 9))
    freeze_by_name(model)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 3_555_072
