"""CLIP (Radford et al., 2021) with prompt-capable encoders, in OpenAI's state-dict layout.

Numerics follow OpenAI's CLIP: LayerNorm computed in fp32 and returned in the input dtype, QuickGELU,
pre-LN residual blocks, EOT pooling for text, class-token pooling for the ViT. Differences from OpenAI's code
that do not change results:

- Attention runs through `torch.nn.functional.scaled_dot_product_attention`; its parameters keep
  `nn.MultiheadAttention`'s names (`attn.in_proj_weight`, `attn.in_proj_bias`, `attn.out_proj.*`) so OpenAI
  weights load strictly. The text causal mask is `is_causal=True` (never stored in the state dict).
- Transformers are batch-first: `(N, L, D)` everywhere (OpenAI: `(L, N, D)`).
- Parameters stay fp32 (OpenAI's fp16 weights are upcast on load); lower precision comes from
  `torch.autocast`, and prompt tokens are cast to the activation dtype (no fp16 rounding).

Prompt designs are selected by `clip.design.PromptDesign`, never by a trainer name.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .design import PromptDesign


def heads_for_width(width: int) -> int:
    """Attention heads of a transformer of this width: OpenAI uses 64 channels per head.

    Head counts are not stored in a state dict; widths below 64 exist only in test models and use 16 per head.
    """
    return width // 64 if width >= 64 else max(1, width // 16)


class LayerNorm(nn.LayerNorm):
    """LayerNorm that normalises in fp32 and returns the input dtype (OpenAI's fp16-safe variant)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """`x * sigmoid(1.702 x)`, the GELU approximation the OpenAI models were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names, computed by SDPA.

    Input and output are batch-first `(N, L, D)`.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by heads={heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        n, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (N, L, 3D)
        q, k, v = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (N, H, L, hd)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block; optionally replaces prompt tokens at its input.

    `prompt_side="vision"`: the last `n` tokens are replaced (prompts sit at the end of the sequence).
    `prompt_side="text"`: positions `1..n` are replaced (after SOT), the sequence length stays the same.
    A block with `n_ctx > 0` owns `VPT_shallow [n_ctx, D]` (IVLP); otherwise prompts may be passed in (MaPLe).
    """

    def __init__(self, width: int, heads: int, causal: bool = False, prompt_side: str = "vision", n_ctx: int = 0):
        super().__init__()
        if prompt_side not in ("vision", "text"):
            raise ValueError(f"prompt_side must be 'vision' or 'text', got {prompt_side!r}")
        self.causal = causal
        self.prompt_side = prompt_side
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]
            )
        )
        self.ln_2 = LayerNorm(width)
        if n_ctx > 0:
            self.VPT_shallow = nn.Parameter(torch.empty(n_ctx, width))
            nn.init.normal_(self.VPT_shallow, std=0.02)
        else:
            self.VPT_shallow = None

    def replace_prompts(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Swap this block's prompt tokens into `x` (N, L, D); prompts `(n, D)` are cast to x's dtype."""
        n = prompts.shape[0]
        p = prompts.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        if self.prompt_side == "vision":
            return torch.cat([x[:, :-n], p], dim=1)
        return torch.cat([x[:, :1], p, x[:, 1 + n :]], dim=1)

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        if self.VPT_shallow is not None:
            if prompts is not None:
                raise ValueError("this block owns VPT_shallow (IVLP design); do not pass deep prompts as well")
            prompts = self.VPT_shallow
        if prompts is not None:
            x = self.replace_prompts(x, prompts)
        x = x + self.attn(self.ln_1(x), self.causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual blocks (batch-first). Blocks listed in `prompted_blocks` own `VPT_shallow`."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        causal: bool = False,
        prompt_side: str = "vision",
        prompted_blocks: Sequence[int] = (),
        n_ctx: int = 0,
    ) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[
                ResidualAttentionBlock(width, heads, causal, prompt_side, n_ctx if i in prompted_blocks else 0)
                for i in range(layers)
            ]
        )

    def forward(self, x: torch.Tensor, deep_prompts: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """`deep_prompts[k]` (MaPLe) replaces the prompt tokens at the input of block `k + 1`; block 0 never
        replaces, and blocks past the list keep the tokens the previous block produced."""
        if deep_prompts is not None and len(deep_prompts) > self.layers - 1:
            raise ValueError(f"{len(deep_prompts)} deep prompts given but only blocks 1..{self.layers - 1} exist")
        for i, block in enumerate(self.resblocks):
            prompts = deep_prompts[i - 1] if deep_prompts is not None and 1 <= i <= len(deep_prompts) else None
            x = block(x, prompts)
        return x


class VisionTransformer(nn.Module):
    """ViT tower. IVLP appends `VPT` after the positional embedding; MaPLe appends `shared_ctx` instead."""

    def __init__(
        self,
        input_resolution: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        design: PromptDesign | None = None,
    ) -> None:
        super().__init__()
        design = PromptDesign.coerce(design)
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(
            width,
            layers,
            heads,
            prompt_side="vision",
            prompted_blocks=design.vision_prompted_blocks(layers),
            n_ctx=design.vision_ctx,
        )
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        if design.vision_prompts:
            self.VPT = nn.Parameter(torch.empty(design.vision_ctx, width))
            nn.init.normal_(self.VPT, std=0.02)
        else:
            self.VPT = None

    def forward(
        self,
        x: torch.Tensor,
        shared_ctx: torch.Tensor | None = None,
        deep_prompts: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Images `(N, 3, H, W)` -> features `(N, output_dim)`; `shared_ctx (n, D)` and `deep_prompts` are
        MaPLe's layer-0 and deeper vision prompts."""
        n = x.shape[0]
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid², D)
        cls = self.class_embedding.to(x.dtype).expand(n, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        if self.VPT is not None and shared_ctx is not None:
            raise ValueError("this ViT owns VPT (IVLP design); shared_ctx is for the MaPLe design")
        prompts = self.VPT if self.VPT is not None else shared_ctx
        if prompts is not None:  # no positional embedding for prompt tokens
            x = torch.cat([x, prompts.to(x.dtype).unsqueeze(0).expand(n, -1, -1)], dim=1)
        x = self.ln_pre(x)
        x = self.transformer(x, deep_prompts)
        x = self.ln_post(x[:, 0])
        return x @ self.proj


class Bottleneck(nn.Module):
    """ResNet-D style bottleneck: strided convs replaced by an average pool before conv3 and the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the spatial mean token attends over all positions; its output is the feature."""

    def __init__(self, spatial_dim: int, embed_dim: int, num_heads: int, output_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        heads, hd = self.num_heads, c // self.num_heads
        q = self.q_proj(x[:, :1]).view(n, 1, heads, hd).transpose(1, 2)  # only token 0 is used
        k = self.k_proj(x).view(n, -1, heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(n, -1, heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, H, 1, hd)
        return self.c_proj(out.transpose(1, 2).reshape(n, c))


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet tower: 3-conv stem, avg-pool downsampling, attention pooling."""

    def __init__(
        self, layers: Sequence[int], output_dim: int, heads: int, input_resolution: int = 224, width: int = 64
    ):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv1.weight.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


def encode_text_embeddings(
    x: torch.Tensor,
    tokenized: torch.Tensor,
    transformer: Transformer,
    positional_embedding: torch.Tensor,
    ln_final: LayerNorm,
    text_projection: torch.Tensor,
    deep_prompts: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Token embeddings `(C, L, D)` -> text features `(C, E)`, pooled at the EOT token (largest id).

    Shared by `CLIP.encode_text` and `TextEncoder` so prompted and plain text paths are the same code.
    The attention is causal, so the tokens after the last EOT of the batch can never reach a pooled row:
    the sequence is cut there before the transformer (same result as the full 77 tokens, several times
    less work for short prompts).
    """
    eot = tokenized.argmax(dim=-1)
    length = int(eot.max()) + 1
    x = x[:, :length] + positional_embedding[:length].to(x.dtype)  # inputs may already end at the last EOT
    x = transformer(x, deep_prompts)
    x = x[torch.arange(x.shape[0], device=x.device), eot]  # (C, D); LN is per token
    return ln_final(x) @ text_projection


class CLIP(nn.Module):
    """CLIP with OpenAI's constructor signature and state-dict names, plus an optional prompt design.

    `vision_layers` is an int for a ViT tower and a 4-tuple for a ResNet tower (as OpenAI's).
    """

    def __init__(
        self,
        embed_dim: int,
        image_resolution: int,
        vision_layers: int | Sequence[int],
        vision_width: int,
        vision_patch_size: int | None,
        context_length: int,
        vocab_size: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
        design: PromptDesign | dict | None = None,
    ) -> None:
        super().__init__()
        design = PromptDesign.coerce(design)
        self.design = design
        self.context_length = context_length
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(
                vision_layers, embed_dim, vision_width * 32 // 64, image_resolution, vision_width
            )
        else:
            self.visual = VisionTransformer(
                image_resolution,
                vision_patch_size,
                vision_width,
                vision_layers,
                heads_for_width(vision_width),
                embed_dim,
                design,
            )
        self.transformer = Transformer(
            transformer_width,
            transformer_layers,
            transformer_heads,
            causal=True,
            prompt_side="text",
            prompted_blocks=design.text_prompted_blocks(transformer_layers),
            n_ctx=design.text_ctx,
        )
        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """OpenAI's initialisation; used only for weights a checkpoint does not provide."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features**-0.5
            for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(linear.weight, std=std)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for block in stage:
                    nn.init.zeros_(block.bn3.weight)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = width**-0.5 * (2 * layers) ** -0.5
        attn_std = width**-0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the image tower's first conv (upstream's `clip_model.dtype`); fp32 unless converted."""
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image.to(self.dtype))

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Token ids `(N, L)` -> features `(N, E)`."""
        x = self.token_embedding(text)
        return encode_text_embeddings(
            x, text, self.transformer, self.positional_embedding, self.ln_final, self.text_projection
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(logits_per_image, logits_per_text)` = `s · cos` with `s = exp(logit_scale)`."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


class TextEncoder(nn.Module):
    """The text tower of a CLIP model, fed with prompt embeddings instead of token ids.

    Shares the parameters of `clip_model` (attributes `transformer`, `positional_embedding`, `ln_final`,
    `text_projection`, so checkpoint keys read `text_encoder.*` as upstream).
    """

    def __init__(self, clip_model: CLIP) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def dtype(self) -> torch.dtype:
        return self.positional_embedding.dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized: torch.Tensor,
        deep_prompts: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`prompts (C, L, D)` token+context embeddings, `tokenized (C, L)` ids (for the EOT position),
        `deep_prompts` MaPLe's per-block text prompts -> features `(C, E)`."""
        return encode_text_embeddings(
            prompts,
            tokenized,
            self.transformer,
            self.positional_embedding,
            self.ln_final,
            self.text_projection,
            deep_prompts,
        )
