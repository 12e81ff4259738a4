"""Tiny CLIP checkpoints in OpenAI's exact file formats, for tests.

The state dicts are generated key by key from OpenAI's layout, independently of our
`clip.model`, so a test that loads them proves that our key names and shape inference match OpenAI's files.
Values are random but realistic (LayerNorm/BatchNorm weights near 1, non-zero biases, positive running
variances), so a parity test also exercises the affine parts that a default initialisation leaves at 0/1.

Head counts are not stored in a CLIP state dict; `clip.build_model` infers them from the width (64 per head,
as OpenAI; widths below 64 -- test models only -- use 16 per head). The `transformer_heads` argument is
checked against that rule so a caller cannot believe a different head count is in use.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from clip.model import heads_for_width

# Entries that OpenAI's TorchScript archives carry in their state_dict() besides the weights.
TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


def _block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    d = width
    return {
        f"{prefix}attn.in_proj_weight": (3 * d, d),
        f"{prefix}attn.in_proj_bias": (3 * d,),
        f"{prefix}attn.out_proj.weight": (d, d),
        f"{prefix}attn.out_proj.bias": (d,),
        f"{prefix}ln_1.weight": (d,),
        f"{prefix}ln_1.bias": (d,),
        f"{prefix}mlp.c_fc.weight": (4 * d, d),
        f"{prefix}mlp.c_fc.bias": (4 * d,),
        f"{prefix}mlp.c_proj.weight": (d, 4 * d),
        f"{prefix}mlp.c_proj.bias": (d,),
        f"{prefix}ln_2.weight": (d,),
        f"{prefix}ln_2.bias": (d,),
    }


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def _vit_shapes(width: int, layers: int, patch: int, resolution: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    if resolution % patch:
        raise ValueError(f"image_resolution={resolution} must be a multiple of vision_patch_size={patch}")
    grid = resolution // patch
    shapes: dict[str, tuple[int, ...]] = {
        "visual.class_embedding": (width,),
        "visual.positional_embedding": (grid * grid + 1, width),
        "visual.proj": (width, embed_dim),
        "visual.conv1.weight": (width, 3, patch, patch),
        "visual.ln_pre.weight": (width,),
        "visual.ln_pre.bias": (width,),
    }
    for i in range(layers):
        shapes.update(_block_shapes(f"visual.transformer.resblocks.{i}.", width))
    shapes.update({"visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,)})
    return shapes


def _resnet_shapes(width: int, layers: Sequence[int], resolution: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    if resolution % 32:
        raise ValueError(f"image_resolution={resolution} must be a multiple of 32 for a ResNet tower")
    half = width // 2
    shapes: dict[str, tuple[int, ...]] = {"visual.conv1.weight": (half, 3, 3, 3)}
    shapes.update(_bn_shapes("visual.bn1", half))
    shapes["visual.conv2.weight"] = (half, half, 3, 3)
    shapes.update(_bn_shapes("visual.bn2", half))
    shapes["visual.conv3.weight"] = (width, half, 3, 3)
    shapes.update(_bn_shapes("visual.bn3", width))
    inplanes = width
    for stage, blocks in enumerate(layers):
        planes = width * 2**stage
        stride = 1 if stage == 0 else 2
        for j in range(blocks):
            p = f"visual.layer{stage + 1}.{j}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes.update(_bn_shapes(f"{p}.bn1", planes))
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(_bn_shapes(f"{p}.bn2", planes))
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes.update(_bn_shapes(f"{p}.bn3", planes * 4))
            if (stride if j == 0 else 1) > 1 or inplanes != planes * 4:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes.update(_bn_shapes(f"{p}.downsample.1", planes * 4))
            inplanes = planes * 4
    pool_dim = width * 32
    spatial = resolution // 32
    shapes["visual.attnpool.positional_embedding"] = (spatial * spatial + 1, pool_dim)
    for name in ("k_proj", "q_proj", "v_proj"):
        shapes[f"visual.attnpool.{name}.weight"] = (pool_dim, pool_dim)
        shapes[f"visual.attnpool.{name}.bias"] = (pool_dim,)
    shapes["visual.attnpool.c_proj.weight"] = (embed_dim, pool_dim)
    shapes["visual.attnpool.c_proj.bias"] = (embed_dim,)
    return shapes


def _text_shapes(width: int, layers: int, context_length: int, vocab_size: int, embed_dim: int):
    shapes: dict[str, tuple[int, ...]] = {
        "positional_embedding": (context_length, width),
        "text_projection": (width, embed_dim),
        "logit_scale": (),
        "token_embedding.weight": (vocab_size, width),
    }
    for i in range(layers):
        shapes.update(_block_shapes(f"transformer.resblocks.{i}.", width))
    shapes.update({"ln_final.weight": (width,), "ln_final.bias": (width,)})
    return shapes


def _is_fp16_in_openai_files(key: str) -> bool:
    """OpenAI's `convert_weights` set: conv/linear weights and biases, attention projections,
    `proj` and `text_projection`; norms, embeddings, BatchNorm and `logit_scale` stay fp32."""
    leaf = key.rsplit(".", 1)[-1]
    if key in ("visual.proj", "text_projection"):
        return True
    if "attn.in_proj_" in key or "attn.out_proj." in key or ".mlp.c_" in key:
        return True
    if ".attnpool." in key and "_proj." in key:
        return True
    parts = key.split(".")
    module = parts[-2] if len(parts) >= 2 else ""
    return leaf == "weight" and (module.startswith("conv") or (module == "0" and "downsample" in key))


def _random_value(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    module = key.split(".")[-2] if "." in key else ""
    is_norm = module.startswith(("ln_", "bn")) or module == "1" and "downsample" in key

    def randn(std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std

    if key == "logit_scale":
        return torch.tensor(math.log(100.0))
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.long)
    if leaf == "running_var":
        return 1.0 + 0.5 * torch.rand(shape, generator=gen)
    if leaf == "running_mean":
        return randn(0.1)
    if is_norm:
        return 1.0 + randn(0.1) if leaf == "weight" else randn(0.05)
    if key == "token_embedding.weight":
        return randn(0.02)
    if key == "positional_embedding":
        return randn(0.01)
    if leaf in ("class_embedding", "positional_embedding"):  # ViT / attnpool: scale = width^-0.5
        return randn(shape[-1] ** -0.5)
    if leaf in ("proj", "text_projection"):
        return randn(shape[0] ** -0.5)
    if leaf.endswith("bias"):
        return randn(0.02)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return randn(fan_in**-0.5)


def tiny_clip_state_dict(
    vision: str = "vit",
    embed_dim: int = 32,
    image_resolution: int = 32,
    vision_width: int | None = None,
    vision_layers: int | Sequence[int] = 2,
    vision_patch_size: int = 8,
    transformer_width: int = 32,
    transformer_heads: int | None = None,
    transformer_layers: int = 2,
    context_length: int = 77,
    vocab_size: int = 49408,
    seed: int = 0,
    half: bool = False,
) -> dict[str, torch.Tensor]:
    """Random CLIP weights in OpenAI's state-dict layout (key names, shapes, key order).

    `vision="vit"` builds a ViT tower (`vision_width` default 64); `vision="resnet"` a ModifiedResNet
    (`vision_width` default 16; `vision_layers` an int n means n blocks in each of the 4 stages, or pass a
    4-tuple). `half=True` stores the tensors OpenAI stores in fp16 in fp16, as in the
    released files. `transformer_heads` (default: inferred, 2 for width 32) is only checked, since heads are
    not part of a state dict. Same arguments and seed give the same tensors.
    """
    if transformer_heads is not None and transformer_heads != heads_for_width(transformer_width):
        raise ValueError(
            f"transformer_heads={transformer_heads} cannot be represented: clip.build_model infers "
            f"{heads_for_width(transformer_width)} heads for transformer_width={transformer_width}"
        )
    if vision == "vit":
        width = 64 if vision_width is None else vision_width
        if not isinstance(vision_layers, int):
            raise ValueError(f"vision_layers must be an int for a ViT tower, got {vision_layers!r}")
        shapes = _vit_shapes(width, vision_layers, vision_patch_size, image_resolution, embed_dim)
    elif vision == "resnet":
        width = 16 if vision_width is None else vision_width
        layers = (vision_layers,) * 4 if isinstance(vision_layers, int) else tuple(vision_layers)
        if len(layers) != 4:
            raise ValueError(f"vision_layers for a ResNet tower needs 4 stages, got {vision_layers!r}")
        shapes = _resnet_shapes(width, layers, image_resolution, embed_dim)
    else:
        raise ValueError(f"vision must be 'vit' or 'resnet', got {vision!r}")
    shapes.update(_text_shapes(transformer_width, transformer_layers, context_length, vocab_size, embed_dim))

    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        value = _random_value(key, shape, gen)
        if half and _is_fp16_in_openai_files(key):
            value = value.half()
        state[key] = value
    return state


class _ArchiveNode(nn.Module):
    """A node of the module tree that carries the weights inside the TorchScript archive."""


class _ArchiveRoot(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _scripted_archive(state: dict[str, torch.Tensor], extras: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """A scripted module whose `state_dict()` is `state` plus `extras`, like OpenAI's archives."""
    root = _ArchiveRoot()
    for key, value in state.items():
        *path, leaf = key.split(".")
        node: nn.Module = root
        for part in path:
            child = node._modules.get(part)
            if child is None:
                child = _ArchiveNode()
                node.add_module(part, child)
            node = child
        if value.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, value.clone())
    for key, value in extras.items():
        root.register_buffer(key, value)
    with warnings.catch_warnings():  # torch.jit is deprecated, but OpenAI's files are TorchScript archives
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(root)


def save_tiny_clip(path: str | os.PathLike, fmt: str = "state_dict", **kw) -> dict[str, torch.Tensor]:
    """Write a tiny CLIP checkpoint file and return the state dict that was written.

    `fmt="state_dict"`: `torch.save` of the plain dict (fp32 unless `half=True`).
    `fmt="torchscript"`: a `torch.jit` archive whose `state_dict()` has OpenAI's key names plus the three
    extra entries `input_resolution`, `context_length`, `vocab_size`, with fp16 weights (as OpenAI's files)
    unless `half=False` is passed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "state_dict":
        state = tiny_clip_state_dict(**kw)
        torch.save(state, path)
        return state
    if fmt == "torchscript":
        kw.setdefault("half", True)
        state = tiny_clip_state_dict(**kw)
        if "visual.proj" in state:
            resolution = state["visual.conv1.weight"].shape[-1] * round(
                (state["visual.positional_embedding"].shape[0] - 1) ** 0.5
            )
        else:
            resolution = 32 * round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        extras = {
            "input_resolution": torch.tensor(resolution),
            "context_length": torch.tensor(state["positional_embedding"].shape[0]),
            "vocab_size": torch.tensor(state["token_embedding.weight"].shape[0]),
        }
        archive = _scripted_archive(state, extras)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            archive.save(str(path))
        return state
    raise ValueError(f"fmt must be 'state_dict' or 'torchscript', got {fmt!r}")
