"""CLIP model: parity with open_clip on the same OpenAI-layout weights, strict loading, dtype handling."""

from __future__ import annotations

import pytest
import torch
from open_clip.model import CLIP as OpenClipCLIP
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

import clip
from clip.model import TextEncoder, heads_for_width
from tests.helpers.tiny_clip import tiny_clip_state_dict

TEXTS = ["a photo of a dog.", "an aerial view of Sea or Lake, a type of land.", "x"]


def open_clip_reference(state: dict[str, torch.Tensor]) -> OpenClipCLIP:
    """open_clip's CLIP (QuickGELU, fp32) with the same OpenAI-layout weights.

    Built from explicit configs rather than `build_model_from_openai_state_dict` because that function
    fixes 64 channels per head, which tiny test widths cannot have; heads follow `heads_for_width`.
    """
    arch = clip.infer_architecture(state)
    resnet = arch["vision_patch_size"] is None
    width = arch["vision_width"]
    vision = CLIPVisionCfg(
        layers=arch["vision_layers"],
        width=width,
        patch_size=arch["vision_patch_size"] or 16,
        image_size=arch["image_resolution"],
        head_width=64 if resnet else width // heads_for_width(width),
    )
    text = CLIPTextCfg(
        context_length=arch["context_length"],
        vocab_size=arch["vocab_size"],
        width=arch["transformer_width"],
        heads=arch["transformer_heads"],
        layers=arch["transformer_layers"],
    )
    model = OpenClipCLIP(arch["embed_dim"], vision, text, quick_gelu=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def parity_errors(ours: clip.model.CLIP, ref: OpenClipCLIP, images: torch.Tensor, texts: torch.Tensor) -> dict:
    """Max abs differences of the features, of the logits and of the logits / s (cosine similarities).

    Logits are ~100 x cosine, where one fp32 ulp is 7.6e-6, so the 1e-5 bound is checked on the cosines.
    """
    with torch.no_grad():
        img_a, img_b = ours.encode_image(images), ref.encode_image(images)
        txt_a, txt_b = ours.encode_text(texts), ref.encode_text(texts)
        logits_a, _ = ours(images, texts)
        fi, ft, scale = ref(images, texts)
        logits_b = scale * fi @ ft.t()
    return {
        "image": (img_a - img_b).abs().max().item(),
        "text": (txt_a - txt_b).abs().max().item(),
        "logits": (logits_a - logits_b).abs().max().item(),
        "cosine": ((logits_a - logits_b) / scale).abs().max().item(),
        "scale": img_a.abs().max().item(),
        "logit_scale": scale.item(),
    }


@pytest.mark.parametrize("vision", ["vit", "resnet"])
@pytest.mark.parametrize("half", [False, True])
def test_parity_with_open_clip_tiny(vision: str, half: bool) -> None:
    state = tiny_clip_state_dict(vision, seed=3, half=half)
    ours, ref = clip.build_model(state), open_clip_reference(state)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    errors = parity_errors(ours, ref, images, clip.tokenize(TEXTS[:2]))
    assert errors["scale"] > 0.1  # features are not trivially small
    assert max(errors["image"], errors["text"], errors["cosine"]) <= 1e-5, errors


def test_state_dict_keys_and_dtypes_match_openai_layout() -> None:
    state = tiny_clip_state_dict(half=True)
    model = clip.build_model(state)
    ours = model.state_dict()
    assert set(ours) == set(state)
    assert not any("attn_mask" in k for k in ours)  # the causal mask is never saved
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, value in state.items():  # fp16 weights upcast exactly
        torch.testing.assert_close(ours[key], value.to(ours[key].dtype), rtol=0, atol=0)
    assert not model.training


def test_architecture_inference() -> None:
    vit = clip.infer_architecture(tiny_clip_state_dict(vision_layers=3, transformer_layers=1, image_resolution=48))
    assert vit == {
        "vision_width": 64,
        "vision_layers": 3,
        "vision_patch_size": 8,
        "image_resolution": 48,
        "embed_dim": 32,
        "context_length": 77,
        "vocab_size": 49408,
        "transformer_width": 32,
        "transformer_heads": 2,
        "transformer_layers": 1,
    }
    rn = clip.infer_architecture(tiny_clip_state_dict("resnet", vision_layers=(1, 2, 1, 1), image_resolution=64))
    assert rn["vision_layers"] == (1, 2, 1, 1) and rn["image_resolution"] == 64 and rn["vision_patch_size"] is None
    assert [heads_for_width(w) for w in (32, 48, 512, 768, 1024)] == [2, 3, 8, 12, 16]


# OpenAI's architectures (OpenAI's published table; RN50x64 from open_clip's config): CLIP(...) arguments
OPENAI_ARCHITECTURES = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}


@pytest.mark.parametrize("name", list(OPENAI_ARCHITECTURES))
def test_architecture_of_every_openai_model_round_trips_through_its_keys(name: str) -> None:
    embed, res, layers, width, patch, text_width, text_layers = OPENAI_ARCHITECTURES[name]
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = clip.model.CLIP(embed, res, layers, width, patch, 77, 49408, text_width, text_width // 64, text_layers)
    state = model.state_dict()
    assert clip.infer_architecture(state) == {
        "embed_dim": embed, "image_resolution": res, "vision_layers": layers, "vision_width": width,
        "vision_patch_size": patch, "context_length": 77, "vocab_size": 49408, "transformer_width": text_width,
        "transformer_heads": text_width // 64, "transformer_layers": text_layers,
    }  # fmt: skip
    if patch is not None:
        assert state["visual.positional_embedding"].shape[0] == (res // patch) ** 2 + 1
        assert model.visual.transformer.resblocks[0].attn.heads == width // 64
    else:
        assert model.visual.attnpool.num_heads == width * 32 // 64


def test_loaded_model_does_not_alias_the_state_dict() -> None:
    state = tiny_clip_state_dict()
    before = state["ln_final.weight"].clone()
    model = clip.build_model(state)
    with torch.no_grad():
        model.ln_final.weight.add_(1.0)
    assert torch.equal(state["ln_final.weight"], before)


def test_text_truncated_after_last_eot_equals_full_length() -> None:
    """Cutting the sequence after the batch's last EOT (causal attention) gives the full-length result."""
    model = clip.build_model(tiny_clip_state_dict(seed=2))
    tokens = clip.tokenize(TEXTS)
    long_row = tokens[:1].clone()
    long_row[0, -1] = 49408  # an id above EOT at position 76: this row makes the batch keep all 77 tokens
    with torch.no_grad():
        cut = model.encode_text(tokens)
        x = model.token_embedding(torch.cat([tokens, tokens[:1]]))
        args = (model.transformer, model.positional_embedding, model.ln_final, model.text_projection)
        whole = clip.model.encode_text_embeddings(x, torch.cat([tokens, long_row]), *args)
    assert int(tokens.argmax(dim=-1).max()) < 20
    torch.testing.assert_close(cut, whole[:3], rtol=0, atol=1e-5)


def test_text_encoder_equals_encode_text_exactly() -> None:
    model = clip.build_model(tiny_clip_state_dict())
    tokens = clip.tokenize(TEXTS)
    encoder = TextEncoder(model)
    with torch.no_grad():
        assert torch.equal(encoder(model.token_embedding(tokens), tokens), model.encode_text(tokens))
    assert set(encoder.state_dict()) >= {"positional_embedding", "text_projection", "ln_final.weight"}
    assert encoder.transformer is model.transformer


@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_build_visual_equals_full_model_visual(vision: str) -> None:
    state = tiny_clip_state_dict(vision)
    full, visual = clip.build_model(state), clip.build_visual(state)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(visual(images), full.encode_image(images))
    assert visual.output_dim == 32 and visual.input_resolution == 32
    assert set(visual.state_dict()) == {k.removeprefix("visual.") for k in state if k.startswith("visual.")}


def test_strict_loading_names_missing_and_unexpected_keys() -> None:
    state = tiny_clip_state_dict()
    broken = dict(state)
    del broken["visual.ln_post.bias"]
    with pytest.raises(clip.StateDictMismatchError, match=r"visual\.ln_post\.bias"):
        clip.build_model(broken)
    extra = dict(state, **{"visual.extra_head.weight": torch.zeros(2)})
    with pytest.raises(clip.StateDictMismatchError, match=r"visual\.extra_head\.weight"):
        clip.build_model(extra)
    wrong_shape = dict(state, **{"ln_final.bias": torch.zeros(5)})
    with pytest.raises(clip.StateDictMismatchError, match="ln_final.bias"):
        clip.build_model(wrong_shape)
    with pytest.raises(clip.NotACheckpointError, match="token_embedding.weight"):
        clip.build_model({k: v for k, v in state.items() if k != "token_embedding.weight"})


def test_torchscript_extra_entries_are_ignored() -> None:
    state = tiny_clip_state_dict()
    extras = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(77), "vocab_size": torch.tensor(9)}
    model = clip.build_model({**state, **extras})
    assert "input_resolution" not in model.state_dict()


@pytest.mark.parametrize("vision", ["vit", "resnet"])
def test_autocast_bf16_keeps_fp32_parameters_and_tracks_fp32(vision: str) -> None:
    design = clip.PromptDesign("ivlp", vision_depth=2, text_depth=2, vision_ctx=2, text_ctx=2)
    model = clip.build_model(tiny_clip_state_dict(vision), design if vision == "vit" else None)
    images, tokens = torch.randn(2, 3, 32, 32), clip.tokenize(TEXTS[:2])
    with torch.no_grad():
        ref_img, ref_txt = model.encode_image(images), model.encode_text(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img, txt = model.encode_image(images), model.encode_text(tokens)
    assert img.dtype == torch.bfloat16 and txt.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for low, ref in ((img, ref_img), (txt, ref_txt)):
        cos = torch.nn.functional.cosine_similarity(low.float(), ref, dim=-1)
        assert cos.min() > 0.99, cos


def test_logit_scale_and_forward_logits() -> None:
    model = clip.build_model(tiny_clip_state_dict())
    images, tokens = torch.randn(3, 3, 32, 32), clip.tokenize(TEXTS[:2])
    with torch.no_grad():
        per_image, per_text = model(images, tokens)
        img = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    assert per_image.shape == (3, 2) and torch.equal(per_text, per_image.t())
    torch.testing.assert_close(per_image, 100.0 * img @ txt.t(), rtol=1e-5, atol=1e-4)


def test_random_init_constructor_matches_openai_signature() -> None:
    torch.manual_seed(0)
    model = clip.model.CLIP(32, 32, 2, 64, 8, 77, 1000, 32, 2, 2)
    keys = set(model.state_dict())
    assert "visual.conv1.weight" in keys and "transformer.resblocks.1.attn.in_proj_weight" in keys
    torch.testing.assert_close(model.logit_scale.exp(), torch.tensor(1 / 0.07))
    assert 0.015 < model.token_embedding.weight.std().item() < 0.025
