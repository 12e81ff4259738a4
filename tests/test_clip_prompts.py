"""Prompt designs: parameter placement, token insertion/replacement, gradients."""

from __future__ import annotations

import pytest
import torch

import clip
from clip.model import TextEncoder
from tests.helpers.tiny_clip import tiny_clip_state_dict

LAYERS = 4
N_V, N_T = 3, 2


def _state(**kw) -> dict[str, torch.Tensor]:
    return tiny_clip_state_dict(vision_layers=LAYERS, transformer_layers=LAYERS, seed=7, **kw)


def _ivlp(depth: int, text_depth: int | None = None) -> clip.PromptDesign:
    return clip.PromptDesign("ivlp", depth, depth if text_depth is None else text_depth, N_V, N_T)


def _capture_block_io(transformer) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Record, per block, the tokens entering attention (ln_1 input, after replacement) and the block output."""
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    for i, block in enumerate(transformer.resblocks):
        block.ln_1.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0].detach()))
        block.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out.detach()))
    return inputs, outputs


def test_prompts_disabled_is_bit_identical_to_plain_clip() -> None:
    state = _state()
    plain = clip.build_model(state)
    variants = [
        clip.PromptDesign(),
        clip.PromptDesign("ivlp", 0, 0, 0, 0),
        clip.PromptDesign("ivlp", 0, 1, 0, 4),  # text depth 1: layer-0 prompt only (from the prompt learner)
        {"trainer": "CoOp", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0, "language_ctx": 0},
        clip.PromptDesign("maple", maple_length=2),
    ]
    images, tokens = torch.randn(2, 3, 32, 32), clip.tokenize(["a photo of a cat.", "a dog"])
    with torch.no_grad():
        ref_img, ref_txt = plain.encode_image(images), plain.encode_text(tokens)
        for design in variants:
            model = clip.build_model(state, design)
            assert not [n for n, _ in model.named_parameters() if "VPT" in n], design
            assert torch.equal(model.encode_image(images), ref_img), design
            assert torch.equal(model.encode_text(tokens), ref_txt), design


@pytest.mark.parametrize("depth", [1, 2, 3, 9])
def test_ivlp_parameters_exactly_in_blocks_1_to_depth_minus_1(depth: int) -> None:
    model = clip.build_model(_state(), _ivlp(depth))
    names = {n for n, _ in model.named_parameters() if "VPT" in n}
    blocks = range(1, min(depth, LAYERS))
    expected = {"visual.VPT"}
    expected |= {f"visual.transformer.resblocks.{i}.VPT_shallow" for i in blocks}
    expected |= {f"transformer.resblocks.{i}.VPT_shallow" for i in blocks}
    assert names == expected
    assert model.visual.VPT.shape == (N_V, 64)
    assert all(model.transformer.resblocks[i].VPT_shallow.shape == (N_T, 32) for i in blocks)


def test_upstream_design_details_map_to_prompt_design() -> None:
    details = {"trainer": "IVLP", "vision_depth": 9, "language_depth": 9, "vision_ctx": 4, "language_ctx": 4}
    assert clip.PromptDesign.from_upstream(details) == clip.PromptDesign("ivlp", 9, 9, 4, 4)
    assert clip.PromptDesign.from_upstream({**details, "trainer": "VPT"}).variant == "ivlp"
    assert clip.PromptDesign.from_upstream({"trainer": "MaPLe", "maple_length": 2}).maple_length == 2
    assert clip.PromptDesign.from_upstream({**details, "trainer": "CoCoOp"}) == clip.PromptDesign()
    with pytest.raises(ValueError, match="ZeroShot"):
        clip.PromptDesign.from_upstream({**details, "trainer": "ZeroShot"})
    with pytest.raises(ValueError, match="ivlp"):
        clip.PromptDesign("ivpl")
    with pytest.raises(ValueError, match="vision_ctx"):
        clip.PromptDesign("ivlp", vision_depth=2)
    model = clip.build_model(_state(), details)  # upstream call form: build_model(state_dict, design_details)
    assert model.design == clip.PromptDesign("ivlp", 9, 9, 4, 4)


def test_ivlp_vision_tokens_inserted_and_replaced_where_spec_says() -> None:
    depth = 3
    model = clip.build_model(_state(), _ivlp(depth))
    visual = model.visual
    inputs, outputs = _capture_block_io(visual.transformer)
    ln_pre_in: list[torch.Tensor] = []
    visual.ln_pre.register_forward_pre_hook(lambda m, args: ln_pre_in.append(args[0].detach()))
    with torch.no_grad():
        visual(torch.randn(2, 3, 32, 32))
    tokens = 1 + (32 // 8) ** 2
    x0 = ln_pre_in[0]
    assert x0.shape == (2, tokens + N_V, 64)  # class + patches + prompts, prompts at the end
    assert torch.equal(x0[:, tokens:], visual.VPT.expand(2, -1, -1))
    for i in range(LAYERS):
        previous = visual.ln_pre(x0) if i == 0 else outputs[i - 1]
        if 1 <= i <= depth - 1:  # last n_v tokens dropped and replaced by this block's prompts
            assert torch.equal(inputs[i][:, -N_V:], visual.transformer.resblocks[i].VPT_shallow.expand(2, -1, -1))
            assert torch.equal(inputs[i][:, :-N_V], previous[:, :-N_V])
        else:  # block 0 and blocks >= depth keep what the previous layer produced
            torch.testing.assert_close(inputs[i], previous, rtol=0, atol=0)


def test_ivlp_text_tokens_replaced_after_sot_with_length_kept() -> None:
    depth = 3
    model = clip.build_model(_state(), _ivlp(1, text_depth=depth))
    inputs, outputs = _capture_block_io(model.transformer)
    tokens = clip.tokenize(["a photo of a bird.", "plane"])
    with torch.no_grad():
        plain = model.token_embedding(tokens)
        TextEncoder(model)(plain, tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1  # causal: tokens after the last EOT are cut (exact)
    first = (plain + model.positional_embedding)[:, :length]
    for i in range(LAYERS):
        previous = first if i == 0 else outputs[i - 1]
        assert inputs[i].shape == (2, length, 32)  # the same length in every block
        if 1 <= i <= depth - 1:
            prompts = model.transformer.resblocks[i].VPT_shallow
            assert torch.equal(inputs[i][:, 1 : 1 + N_T], prompts.expand(2, -1, -1))
            assert torch.equal(inputs[i][:, :1], previous[:, :1])
            assert torch.equal(inputs[i][:, 1 + N_T :], previous[:, 1 + N_T :])
        else:
            assert torch.equal(inputs[i], previous)


def test_maple_prompts_inserted_and_replaced_in_both_towers() -> None:
    model = clip.build_model(_state(), clip.PromptDesign("maple", maple_length=2))
    n, depth = 2, 3
    gen = torch.Generator().manual_seed(1)
    shared = torch.randn(n, 64, generator=gen)
    vision_deep = [torch.randn(n, 64, generator=gen) for _ in range(depth - 1)]
    text_deep = [torch.randn(n, 32, generator=gen) for _ in range(depth - 1)]
    v_in, v_out = _capture_block_io(model.visual.transformer)
    t_in, t_out = _capture_block_io(model.transformer)
    ln_pre_in: list[torch.Tensor] = []
    model.visual.ln_pre.register_forward_pre_hook(lambda m, args: ln_pre_in.append(args[0].detach()))
    tokens = clip.tokenize(["X X dog.", "X X cat."])
    with torch.no_grad():
        model.visual(torch.randn(2, 3, 32, 32), shared, vision_deep)
        TextEncoder(model)(model.token_embedding(tokens), tokens, text_deep)
    assert torch.equal(ln_pre_in[0][:, -n:], shared.expand(2, -1, -1))
    for k in range(depth - 1):
        i = k + 1
        assert torch.equal(v_in[i][:, -n:], vision_deep[k].expand(2, -1, -1))
        assert torch.equal(v_in[i][:, :-n], v_out[i - 1][:, :-n])
        assert torch.equal(t_in[i][:, 1 : 1 + n], text_deep[k].expand(2, -1, -1))
        assert torch.equal(t_in[i][:, 1 + n :], t_out[i - 1][:, 1 + n :])
    for i in range(depth, LAYERS):
        assert torch.equal(v_in[i], v_out[i - 1]) and torch.equal(t_in[i], t_out[i - 1])
    with pytest.raises(ValueError, match="deep prompts"):
        model.visual(torch.randn(1, 3, 32, 32), shared, [shared] * LAYERS)


def test_ivlp_gradients_reach_every_prompt_and_no_frozen_weight() -> None:
    model = clip.build_model(_state(), _ivlp(3))
    for name, param in model.named_parameters():
        param.requires_grad_("VPT" in name)
    tokens = clip.tokenize(["X X a photo of a dog.", "X X a cat."])
    prompts = model.token_embedding(tokens).detach()
    ctx = torch.nn.Parameter(torch.randn(N_T, 32) * 0.02)  # layer-0 text context, as a prompt learner owns it
    prompts = torch.cat([prompts[:, :1], ctx.expand(2, -1, -1), prompts[:, 1 + N_T :]], dim=1)
    model.train()
    image_features = model.visual(torch.randn(2, 3, 32, 32))
    text_features = TextEncoder(model)(prompts, tokens)
    (image_features @ text_features.t()).square().sum().backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 + 2 + 2
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0


def test_maple_gradients_reach_every_prompt() -> None:
    model = clip.build_model(_state(), clip.PromptDesign("maple", maple_length=2))
    model.requires_grad_(False)
    shared = torch.nn.Parameter(torch.randn(2, 64) * 0.02)
    vision_deep = [torch.nn.Parameter(torch.randn(2, 64) * 0.02) for _ in range(2)]
    text_deep = [torch.nn.Parameter(torch.randn(2, 32) * 0.02) for _ in range(2)]
    tokens = clip.tokenize(["X X dog.", "X X cat."])
    img = model.visual(torch.randn(2, 3, 32, 32), shared, vision_deep)
    txt = TextEncoder(model)(model.token_embedding(tokens), tokens, text_deep)
    (img @ txt.t()).square().sum().backward()
    for p in [shared, *vision_deep, *text_deep]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_checkpoint_with_prompts_round_trips_and_depth_mismatch_fails() -> None:
    model = clip.build_model(_state(), _ivlp(3))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "VPT" in name:
                param.add_(torch.randn_like(param))  # perturbed, so equality after reload proves loading
    saved = model.state_dict()
    reloaded = clip.build_model(saved, _ivlp(3))
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(clip.StateDictMismatchError, match=r"resblocks\.2\.VPT_shallow"):
        clip.build_model(saved, _ivlp(2))
    visual = clip.build_visual(saved, _ivlp(3))
    assert torch.equal(visual.transformer.resblocks[2].VPT_shallow, saved["visual.transformer.resblocks.2.VPT_shallow"])


def test_missing_prompt_parameters_are_initialised_and_seeded() -> None:
    state = _state()
    torch.manual_seed(5)
    a = clip.build_model(state, _ivlp(3))
    torch.manual_seed(5)
    b = clip.build_model(state, _ivlp(3))
    assert torch.equal(a.visual.VPT, b.visual.VPT)
    assert 0.005 < a.visual.transformer.resblocks[1].VPT_shallow.std().item() < 0.05
