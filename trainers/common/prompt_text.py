"""Text prompts from class names, and the initial values of learnable text context.

Every text-prompted method builds ``"<prefix> <class name>."`` per class and learns the embeddings of the
prefix tokens. This module holds the one implementation of the naming and initialisation rules so that CoOp,
CoCoOp, IVLP, PromptSRC, MaPLe and PromptKD's teacher cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

import clip

__all__ = [
    "MAX_PHRASE_INIT_CTX",
    "clean_classname",
    "count_phrase_tokens",
    "init_text_context",
    "phrase_context",
    "prompt_template",
    "prompt_texts",
    "random_context",
    "register_prompt_token_buffers",
]

logger = logging.getLogger(__name__)

# IVLP / PromptSRC / PromptKD / MaPLe initialise from CTX_INIT only when n_ctx <= 4.
MAX_PHRASE_INIT_CTX = 4


def clean_classname(name: str) -> str:
    """Dataset class names use ``_`` for spaces (``sea_lion``); prompts use real words."""
    return name.replace("_", " ")


def prompt_template(prefix: str) -> str:
    """The ``str.format`` template ``"<prefix> {}."`` (``"{}."`` for an empty prefix; braces in it kept literal)."""
    prefix = prefix.strip().replace("{", "{{").replace("}", "}}")
    return f"{prefix} {{}}." if prefix else "{}."


def prompt_texts(prefix: str, classnames: Sequence[str]) -> list[str]:
    """``"<prefix> <class name>."`` for every class, in label order."""
    template = prompt_template(prefix)
    return [template.format(clean_classname(name)) for name in classnames]


def count_phrase_tokens(phrase: str) -> int:
    """Number of BPE tokens of ``phrase`` (without SOT/EOT)."""
    return len(clip.get_tokenizer().encode(phrase))


def phrase_context(clip_model: nn.Module, phrase: str, n_ctx: int) -> torch.Tensor:
    """Embeddings ``[n_ctx, D]`` of the first ``n_ctx`` tokens of ``phrase``.

    Upstream silently takes EOT/padding embeddings when ``n_ctx`` exceeds the phrase length (and then cuts the
    class name); that is refused here.
    """
    n_tokens = count_phrase_tokens(phrase)
    if n_ctx > n_tokens:
        raise ValueError(
            f"CTX_INIT {phrase!r} has {n_tokens} tokens but N_CTX is {n_ctx}: the context would start with "
            "end-of-text/padding embeddings. Use a phrase with at least N_CTX tokens, lower N_CTX, or set "
            "CTX_INIT '' for a random initialisation."
        )
    tokenized = clip.tokenize(phrase).to(clip_model.token_embedding.weight.device)
    with torch.no_grad():
        embedding = clip_model.token_embedding(tokenized)
    return embedding[0, 1 : 1 + n_ctx].detach().clone().float()


def random_context(*shape: int, std: float = 0.02) -> torch.Tensor:
    """Random context vectors N(0, 0.02), upstream's initialisation."""
    return torch.randn(*shape) * std


def init_text_context(clip_model: nn.Module, n_ctx: int, ctx_init: str) -> tuple[torch.Tensor, str]:
    """Initial ``ctx [n_ctx, D]`` and the prompt prefix for IVLP-style learners.

    With a non-empty ``ctx_init`` and ``n_ctx <= 4`` the context starts as the embeddings of the first ``n_ctx``
    phrase tokens and the prefix is the phrase (remaining phrase tokens stay fixed text); otherwise the context
    is random and the prefix is ``n_ctx`` placeholder ``X`` tokens.
    """
    if n_ctx < 1:
        raise ValueError(f"N_CTX_TEXT must be >= 1 for a text-prompted model, got {n_ctx}")
    width = clip_model.token_embedding.weight.shape[1]
    phrase = clean_classname(ctx_init).strip()
    if phrase and n_ctx <= MAX_PHRASE_INIT_CTX:
        return phrase_context(clip_model, phrase, n_ctx), phrase
    if phrase:
        logger.info(
            "CTX_INIT %r ignored because N_CTX_TEXT=%d > %d (upstream rule): random context",
            phrase,
            n_ctx,
            MAX_PHRASE_INIT_CTX,
        )
    return random_context(n_ctx, width), " ".join(["X"] * n_ctx)


def register_prompt_token_buffers(
    module: nn.Module,
    clip_model: nn.Module,
    prefix: str,
    classnames: Sequence[str],
    n_ctx: int,
    trim: bool = False,
) -> torch.Tensor:
    """Register the fixed token buffers of ``"<prefix> <class name>."`` prompts on ``module``; return the tokens.

    ``tokenized_prompts [C, L]`` (int64; locates EOT for pooling), ``token_prefix [C, 1, D]`` (SOT embedding) and
    ``token_suffix [C, L-1-n_ctx, D]`` (class tokens, ".", EOT, padding), both float32 embeddings from the frozen
    ``clip_model.token_embedding``. The ``n_ctx`` rows in between are replaced by the learnable context. The
    buffers are non-persistent: they are functions of the class names, so checkpoints never carry them
    (upstream files that do have them dropped on load). ``trim`` cuts all three after the last EOT of the
    classes: the causal text tower never lets later tokens reach the pooled one, so the features are the same
    and learners that assemble many prompts per step (ProDA) hold ~3x smaller prompt tensors.
    """
    tokenized = clip.tokenize(prompt_texts(prefix, classnames))  # (C, L)
    if trim:
        tokenized = tokenized[:, : int(tokenized.argmax(dim=-1).max()) + 1].contiguous()
    with torch.no_grad():
        weight = clip_model.token_embedding.weight
        embedding = clip_model.token_embedding(tokenized.to(weight.device)).float()  # (C, L, D)
    module.register_buffer("tokenized_prompts", tokenized, persistent=False)
    module.register_buffer("token_prefix", embedding[:, :1].clone(), persistent=False)  # SOT
    module.register_buffer("token_suffix", embedding[:, 1 + n_ctx :].clone(), persistent=False)  # class . EOT
    return tokenized
