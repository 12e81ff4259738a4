"""CoCoOp: train.py with the real YAML, eval-only reload, the meta-net's per-image context
shift, gradients and checkpoint contents."""

from __future__ import annotations

import pytest
import torch

import clip
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.helpers.trainer_runs import (
    gradient_report,
    last_accuracy,
    load_saved_state,
    make_tiny_setup,
    run_train,
)
from trainers.cocoop import CoCoOpCLIP, CoCoOpPromptLearner
from trainers.coop import CoOpCLIP, CoOpPromptLearner

CONFIG = "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1"
TRAINED = {
    "ctx",
    "meta_net.linear1.weight",
    "meta_net.linear1.bias",
    "meta_net.linear2.weight",
    "meta_net.linear2.bias",
}


def test_train_eval_reload_gradients_and_checkpoint(tmp_path) -> None:
    tiny = make_tiny_setup(tmp_path)
    out = tmp_path / "run"
    trainer = run_train(tiny.args("CoCoOp", CONFIG, out, "DATASET.NUM_SHOTS", "2"))
    final = last_accuracy(out, "final")
    state = load_saved_state(out / "prompt_learner")
    assert set(state) == TRAINED
    assert state["ctx"].shape == (4, 32)  # CTX_INIT "a photo of a" -> 4 context tokens
    assert state["meta_net.linear1.weight"].shape == (2, 32) and state["meta_net.linear2.weight"].shape == (32, 2)
    with_grad, frozen_grad = gradient_report(trainer.model)
    assert with_grad == {f"prompt_learner.{k}" for k in TRAINED} and frozen_grad == set()

    out_eval = tmp_path / "eval"
    evaluator = run_train(
        tiny.args("CoCoOp", CONFIG, out_eval, "DATASET.NUM_SHOTS", "2", seed=2, eval_from=out, load_epoch=2)
    )
    assert last_accuracy(out_eval, "eval_only") == pytest.approx(final)
    loaded = evaluator._models["prompt_learner"].state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key].cpu(), value)


def test_meta_net_shifts_context_per_image() -> None:
    torch.manual_seed(0)
    clip_model = clip.build_model(tiny_clip_state_dict(seed=5))
    names = ["cat", "dog", "sea_lion"]
    learner = CoCoOpPromptLearner(names, clip_model, n_ctx=4)
    model = CoCoOpCLIP(clip_model, learner).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        batched = model(images)  # one text pass for all 3 images x 3 classes
        one_by_one = torch.cat([model(images[i : i + 1]) for i in range(3)])
        model.max_text_sequences = 6  # two images per pass, then one
        chunked = model(images)
    # each image only sees its own prompts (logits are 100 x cosine: float noise of batched matmuls ~1e-5)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chunked, one_by_one, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # CoCoOp's per-image context for image 2, written out
        f = torch.nn.functional.normalize(clip_model.visual(images[2:3]), dim=-1)  # (1, E)
        prompts = learner.build_prompts(learner.ctx + learner.meta_net(f))  # (C, L, D)
        text = torch.nn.functional.normalize(model.text_encoder(prompts, learner.tokenized_prompts), dim=-1)
        expected = clip_model.logit_scale.exp() * (f @ text.t())[0]
        torch.testing.assert_close(batched[2], expected, rtol=1e-4, atol=1e-4)

    # with a zero shift, CoCoOp is CoOp with the same context
    with torch.no_grad():
        learner.meta_net.linear2.weight.zero_()
        learner.meta_net.linear2.bias.zero_()
        coop = CoOpPromptLearner(names, clip_model, n_ctx=4)
        coop.ctx.copy_(learner.ctx)
        torch.testing.assert_close(model(images), CoOpCLIP(clip_model, coop)(images), rtol=1e-4, atol=1e-4)
        # a non-zero shift moves every context token of an image by the same vector
        learner.meta_net.linear2.bias.fill_(0.1)
        contexts = learner.shifted_contexts(torch.randn(2, 32))
    torch.testing.assert_close(contexts - learner.ctx, torch.full((2, 4, 32), 0.1))


def test_trainable_count_at_real_vit_b16_size() -> None:
    """ViT-B/16, ctxv1 (4 tokens): ctx 2,048 + meta-net (512x32 + 32) + (32x512 + 512) = 35,360 (meta device)."""
    with torch.device("meta"):
        real = clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
        learner = CoCoOpPromptLearner(["a", "b"], real, 4, "a photo of a")
    assert sum(p.numel() for p in learner.parameters()) == 35_360
