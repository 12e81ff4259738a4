"""Where the class name sits among the learnable context tokens, and the one assembly of prompt embeddings.

Every text-prompted learner builds ``[SOT] ctx_1..ctx_n  name-tokens  "."  [EOT] pad`` (the ``end`` layout) by
concatenating the fixed ``token_prefix`` (SOT), the context and the fixed ``token_suffix`` (name, ".", EOT,
padding). CoOp (Zhou et al., IJCV 2022) also puts the name in the ``middle`` of the context or in ``front`` of it;
ProDA (Lu et al., CVPR 2022) uses all three layouts in one prompt bank. The other layouts are a fixed permutation
of the ``end`` sequence, so the sequence length and the EOT position (where the text tower pools) never change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["CLASS_TOKEN_POSITIONS", "assemble_prompts", "class_token_order", "name_token_counts"]

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def name_token_counts(tokenized: torch.Tensor, n_ctx: int) -> list[int]:
    """Tokens of the class name in each tokenised ``"<n_ctx context words> <name>."`` prompt ``[C, L]``.

    Read from the prompt itself (everything between the context and the final "." before EOT), so the counts
    always come from the same cleaned name string as the prompt, whatever the name contains.
    """
    eot = tokenized.argmax(dim=-1)
    counts = (eot - 2 - n_ctx).tolist()
    if min(counts, default=0) < 0:
        raise ValueError(f"a prompt has fewer than {n_ctx} context tokens before its '.'; not a context prompt")
    return counts


def class_token_order(n_ctx: int, name_lens: Sequence[int], length: int, position: str) -> torch.Tensor:
    """Index ``[C, L]`` that rearranges the ``end`` layout ``[SOT][ctx][name . EOT pad]`` of every class.

    ``middle``: ``[SOT][ctx[:n//2]][name][ctx[n//2:]][. EOT pad]``; ``front``: ``[SOT][name][ctx][. EOT pad]``;
    ``end``: the identity.
    """
    if position not in CLASS_TOKEN_POSITIONS:
        raise ValueError(f"class-token position is {position!r}; allowed: {list(CLASS_TOKEN_POSITIONS)}")
    rows = []
    ctx = list(range(1, 1 + n_ctx))
    half = n_ctx // 2
    for name_len in name_lens:
        cls = list(range(1 + n_ctx, 1 + n_ctx + name_len))
        rest = list(range(1 + n_ctx + name_len, length))
        if position == "end":
            order = [0, *ctx, *cls, *rest]
        elif position == "middle":
            order = [0, *ctx[:half], *cls, *ctx[half:], *rest]
        else:
            order = [0, *cls, *ctx, *rest]
        rows.append(order)
    return torch.tensor(rows, dtype=torch.long).view(len(rows), length)


def assemble_prompts(
    token_prefix: torch.Tensor,
    ctx: torch.Tensor,
    token_suffix: torch.Tensor,
    token_order: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prompt embeddings ``[..., L, D]`` = ``[prefix | ctx | suffix]``, rearranged by ``token_order``.

    ``token_prefix [..., 1, D]``, ``ctx [..., n, D]`` and ``token_suffix [..., S, D]`` broadcast over their
    leading dimensions (a shared context ``[1, n, D]`` against ``C`` classes, or one row per (prompt, class)
    pair). ``token_order [..., L]`` (from :func:`class_token_order`) moves the name tokens; None keeps ``end``.
    The fixed embeddings take the context's dtype.
    """
    lead = torch.broadcast_shapes(token_prefix.shape[:-2], ctx.shape[:-2], token_suffix.shape[:-2])
    parts = [part.to(ctx.dtype).expand(*lead, *part.shape[-2:]) for part in (token_prefix, ctx, token_suffix)]
    prompts = torch.cat(parts, dim=-2)
    if token_order is not None:
        index = token_order.unsqueeze(-1).expand(*token_order.shape, prompts.shape[-1])
        prompts = prompts.gather(-2, index)
    return prompts
