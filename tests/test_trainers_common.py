"""trainers.common: prompt text rules, VLPromptLearner, freezing rule, trained-state checkpoints, KL loss."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

import clip
from dassl.utils.trained_state import load_trained_state_dict, trained_state_dict
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.helpers.trainer_runs import STUDENT_CLIP
from trainers.common import (
    PromptedCLIP,
    VLPromptLearner,
    freeze_by_name,
    init_text_context,
    ivlp_design,
    kl_logit_loss,
    load_trained_state,
    prompt_template,
    prompt_texts,
    register_prompt_token_buffers,
    resolve_checkpoint_file,
    trained_state_keys,
)


def tiny_clip_model(design=None, **kw) -> nn.Module:
    return clip.build_model(tiny_clip_state_dict(**{**STUDENT_CLIP, **kw}), design)


# ---------------------------------------------------------------------------------------------- prompt text
def test_prompt_texts_replace_underscores_and_end_with_period():
    assert prompt_texts("a photo of a", ["sea_lion", "cat"]) == ["a photo of a sea lion.", "a photo of a cat."]
    assert prompt_texts("X X", ["dog"]) == ["X X dog."]
    assert prompt_texts("  ", ["sea_lion"]) == ["sea lion."]
    assert prompt_texts("a {b}", ["dog"]) == ["a {b} dog."]  # braces of the prefix stay literal
    assert prompt_template("a photo of a ") == "a photo of a {}." and prompt_template("") == "{}."


def test_context_from_phrase_is_the_phrase_token_embeddings():
    model = tiny_clip_model()
    ctx, prefix = init_text_context(model, 2, "a_photo of a")
    assert prefix == "a photo of a"
    expected = model.token_embedding(clip.tokenize("a photo of a"))[0, 1:3]
    torch.testing.assert_close(ctx, expected)


def test_context_longer_than_phrase_is_refused_and_long_context_is_random():
    model = tiny_clip_model()
    with pytest.raises(ValueError, match="has 2 tokens but N_CTX is 3"):
        init_text_context(model, 3, "a photo")
    torch.manual_seed(0)
    ctx, prefix = init_text_context(model, 6, "a photo of a")  # > 4: upstream falls back to random
    assert prefix == "X X X X X X" and ctx.shape == (6, 32) and 0.01 < ctx.std().item() < 0.03


def test_prompt_learner_builds_the_full_prompt_of_each_class():
    model = tiny_clip_model()
    learner = VLPromptLearner(["sea_lion", "cat"], model, 4, "a photo of a")
    prompts = learner()
    assert prompts.shape == (2, 77, 32)
    expected = model.token_embedding(clip.tokenize(["a photo of a sea lion.", "a photo of a cat."]))
    torch.testing.assert_close(prompts, expected)  # ctx initialised from the phrase -> the plain prompt
    assert set(learner.state_dict()) == {"ctx"}  # token buffers are fixed, never saved
    assert learner.tokenized_prompts.argmax(-1).tolist() == [8, 7]  # EOT positions


def test_register_prompt_token_buffers_splits_sot_context_and_suffix():
    model = tiny_clip_model()
    holder = nn.Module()
    tokens = register_prompt_token_buffers(holder, model, "X X X", ["sea_lion", "cat"], 3)
    expected_tokens = clip.tokenize(["X X X sea lion.", "X X X cat."])
    assert torch.equal(tokens, expected_tokens) and torch.equal(holder.tokenized_prompts, expected_tokens)
    embedding = model.token_embedding(expected_tokens).float()
    assert holder.token_prefix.shape == (2, 1, 32) and holder.token_suffix.shape == (2, 77 - 4, 32)
    assert holder.token_prefix.dtype == holder.token_suffix.dtype == torch.float32
    torch.testing.assert_close(holder.token_prefix, embedding[:, :1])  # SOT
    torch.testing.assert_close(holder.token_suffix, embedding[:, 4:])  # class tokens . EOT padding
    assert not holder.token_suffix.requires_grad and holder.state_dict() == {}  # fixed, never saved


# ---------------------------------------------------------------------------------------------- freezing
def test_freeze_by_name_and_gradients_reach_only_prompts():
    design = ivlp_design(2, 2, 2, 2)
    model = PromptedCLIP(tiny_clip_model(design), ["a", "b", "c"], 2, "a photo")
    enabled = freeze_by_name(model)
    assert set(enabled) == {
        "prompt_learner.ctx",
        "image_encoder.VPT",
        "image_encoder.transformer.resblocks.1.VPT_shallow",
        "text_encoder.transformer.resblocks.1.VPT_shallow",
    }
    logits = model(torch.randn(2, 3, 32, 32))
    logits.logsumexp(-1).sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    frozen_markers = freeze_by_name(nn.ModuleDict({"prompt_learner": nn.ModuleDict({"ZS_image_encoder": nn.Linear(1, 1),
                                                                                   "x": nn.Linear(1, 1)})}),
                                    frozen_markers=("ZS_image_encoder",))  # fmt: skip
    assert frozen_markers == ["prompt_learner.x.weight", "prompt_learner.x.bias"]


# ---------------------------------------------------------------------------------------------- checkpoints
class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, 3)
        self.VPT = nn.Parameter(torch.zeros(2, 3))
        self.bn = nn.BatchNorm1d(3)
        self.register_buffer("text_features", torch.zeros(4, 3))
        self.register_buffer("fixed", torch.ones(1), persistent=False)
        freeze_by_name(self)


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
    return model


def test_trained_state_dict_holds_only_trained_state_and_reloads_strictly():
    model = _perturbed(_Toy(), 0)
    state = trained_state_dict(model)
    assert set(state) == {
        "VPT",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "text_features",
    }  # fmt: skip  (bn.weight/bias are frozen by the name rule; its statistics are buffers and kept)
    assert trained_state_keys(model) == set(state)
    assert set(model.state_dict()) == set(state) | {"backbone.weight", "backbone.bias", "bn.weight", "bn.bias"}
    other = _perturbed(_Toy(), 1)
    backbone_before = other.backbone.weight.clone()
    load_trained_state_dict(other, state)  # strict: missing frozen keys are allowed by name
    torch.testing.assert_close(other.VPT, model.VPT)
    torch.testing.assert_close(other.text_features, model.text_features)
    torch.testing.assert_close(other.backbone.weight, backbone_before)  # frozen weights untouched
    with pytest.raises(RuntimeError, match="unexpected keys.*surprise"):
        load_trained_state_dict(other, {**state, "surprise": torch.zeros(1)})
    del state["VPT"]
    with pytest.raises(RuntimeError, match="VPT"):
        load_trained_state_dict(other, state)


def test_load_trained_state_accepts_full_upstream_files_and_names_problems():
    source = _perturbed(_Toy(), 0)
    full = {k: v.clone() for k, v in source.state_dict().items()}  # the whole model, like the official files
    full["prompt_learner.token_prefix"] = torch.zeros(4, 1, 3)
    full["module.prompt_learner.ZS_image_encoder.w"] = torch.zeros(1)
    target = _perturbed(_Toy(), 1)
    result = load_trained_state(target, full, ignore_prefixes=("prompt_learner.ZS_image_encoder.",))
    assert "backbone.weight" in result["ignored"] and "VPT" in result["loaded"]
    torch.testing.assert_close(target.VPT, source.VPT)
    assert not torch.equal(target.backbone.weight, source.backbone.weight)  # frozen keys ignored by name

    with pytest.raises(KeyError, match=r"missing keys \['VPT'\]"):
        load_trained_state(_Toy(), {k: v for k, v in full.items() if k != "VPT"},
                           ignore_prefixes=("prompt_learner.ZS_image_encoder.",))  # fmt: skip
    with pytest.raises(KeyError, match="unexpected keys.*surprise"):
        load_trained_state(_Toy(), {**full, "surprise": torch.zeros(1)},
                           ignore_prefixes=("prompt_learner.ZS_image_encoder.",))  # fmt: skip
    with pytest.raises(ValueError, match=r"'VPT' has shape \(5, 3\)"):
        load_trained_state(_Toy(), {**full, "VPT": torch.zeros(5, 3)},
                           ignore_prefixes=("prompt_learner.ZS_image_encoder.",))  # fmt: skip


def test_resolve_checkpoint_file_prefers_epoch_then_best_then_the_resume_choice(tmp_path):
    (tmp_path / "custom.pth").write_bytes(b"x")
    (tmp_path / "checkpoint").write_text("custom.pth\n")
    assert resolve_checkpoint_file(str(tmp_path)) == os.path.join(tmp_path, "custom.pth")  # pointer: no epoch file
    for name in ("model.pth.tar-2", "model.pth.tar-10"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "checkpoint").write_text("model.pth.tar-2\n")
    assert resolve_checkpoint_file(str(tmp_path)) == os.path.join(tmp_path, "model.pth.tar-10")  # latest epoch
    (tmp_path / "model-best.pth.tar").write_bytes(b"x")
    assert resolve_checkpoint_file(str(tmp_path)).endswith("model-best.pth.tar")
    assert resolve_checkpoint_file(str(tmp_path), epoch=10).endswith("model.pth.tar-10")
    with pytest.raises(FileNotFoundError, match="model.pth.tar-3"):
        resolve_checkpoint_file(str(tmp_path), epoch=3)
    with pytest.raises(FileNotFoundError, match="no model-best"):
        resolve_checkpoint_file(str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------- KL loss
def test_kl_logit_loss_matches_the_hand_computed_formula():
    student = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 4.0]])
    for temperature in (1.0, 2.0):
        total = 0.0
        for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
            zs = sum(math.exp(v / temperature) for v in s_row)
            zt = sum(math.exp(v / temperature) for v in t_row)
            for s, t in zip(s_row, t_row, strict=True):
                p_t, p_s = math.exp(t / temperature) / zt, math.exp(s / temperature) / zs
                total += p_t * (math.log(p_t) - math.log(p_s))
        expected = total * temperature**2 / 6
        got = kl_logit_loss(student, teacher, temperature)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(expected, rel=1e-6)
    assert kl_logit_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    # p_t = 0 terms contribute 0 (no NaN)
    assert torch.isfinite(kl_logit_loss(student, torch.tensor([[-1e4, 0.0, 0.0], [0.0, -1e4, 0.0]])))
    # bf16 logits: the loss is still computed in fp32 from the same formula
    torch.testing.assert_close(
        kl_logit_loss(student.bfloat16(), teacher.bfloat16()), kl_logit_loss(student.bfloat16().float(), teacher)
    )
