"""Prompt designs for the CLIP encoders, as a typed option instead of upstream's `design_details` dict.

Upstream selects the block type by a trainer-name string. Here the design is a frozen
dataclass; `PromptDesign.from_upstream` maps upstream's dict onto it so that upstream call sites
(`build_model(state_dict, design_details)`) keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VARIANTS = ("none", "ivlp", "maple")

# Name parts that mark prompt parameters: the prompt learner's tensors (`prompt_learner.*`) and the deep prompts
# the encoders own (`VPT`, `VPT_shallow`; PromptKD's projector `VPT_image_trans` follows the same naming).
PROMPT_KEY_MARKERS = ("prompt_learner", "VPT")


def is_prompt_key(key: str) -> bool:
    """Whether a parameter / state-dict key belongs to a prompt (trained) rather than to CLIP's own weights.

    The official repositories freeze and checkpoint by this name rule; CLIP's own keys never contain a marker.
    """
    return any(marker in key for marker in PROMPT_KEY_MARKERS)


# upstream `design_details["trainer"]` -> our variant
_UPSTREAM_TRAINERS = {"IVLP": "ivlp", "VPT": "ivlp", "MaPLe": "maple", "CoOp": "none", "CoCoOp": "none"}


@dataclass(frozen=True)
class PromptDesign:
    """Which learnable prompt tokens the CLIP encoders own or accept.

    - `none`: plain CLIP (bit-identical to it).
    - `ivlp`: independent vision/text deep prompts (IVLP, PromptSRC, VPT, PromptKD).
      Vision: `visual.VPT [vision_ctx, Dv]` appended at the input when `vision_depth >= 1`, and
      `visual.transformer.resblocks.{i}.VPT_shallow` for `1 <= i <= vision_depth - 1`. Text: the layer-0
      prompt comes from the prompt learner; `transformer.resblocks.{i}.VPT_shallow [text_ctx, Dt]` for
      `1 <= i <= text_depth - 1`.
    - `maple`: MaPLe compound prompts: the encoders own no prompt parameters; the vision
      tower takes `(x, shared_ctx, deep_prompts)` and the text encoder `deep_prompts`. `maple_length` is the
      number of compound tokens (recorded for the prompt learner; shapes are taken from the tensors passed).
    """

    variant: str = "none"
    vision_depth: int = 0
    text_depth: int = 0
    vision_ctx: int = 0
    text_ctx: int = 0
    maple_length: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            close = difflib.get_close_matches(str(self.variant), VARIANTS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"PromptDesign.variant={self.variant!r} is not one of {VARIANTS}{hint}")
        for name in ("vision_depth", "text_depth", "vision_ctx", "text_ctx", "maple_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"PromptDesign.{name} must be an int >= 0, got {value!r}")
        if self.variant == "ivlp":
            if self.vision_depth >= 1 and self.vision_ctx < 1:
                raise ValueError(
                    f"PromptDesign(ivlp): vision_depth={self.vision_depth} needs vision_ctx >= 1 "
                    f"(got {self.vision_ctx}); set vision_depth=0 to disable vision prompts"
                )
            if self.text_depth >= 2 and self.text_ctx < 1:
                raise ValueError(
                    f"PromptDesign(ivlp): text_depth={self.text_depth} needs text_ctx >= 1 "
                    f"(got {self.text_ctx}); set text_depth<=1 to disable deep text prompts"
                )

    @property
    def vision_prompts(self) -> bool:
        """True when the vision tower owns `VPT` (IVLP with `vision_depth >= 1`)."""
        return self.variant == "ivlp" and self.vision_depth >= 1

    def vision_prompted_blocks(self, num_blocks: int) -> list[int]:
        """Indices of the vision blocks that own a `VPT_shallow` (1..J-1, clipped to the tower's depth)."""
        if not self.vision_prompts:
            return []
        return list(range(1, min(self.vision_depth, num_blocks)))

    def text_prompted_blocks(self, num_blocks: int) -> list[int]:
        """Indices of the text blocks that own a `VPT_shallow` (1..J-1, clipped to the tower's depth)."""
        if self.variant != "ivlp":
            return []
        return list(range(1, min(self.text_depth, num_blocks)))

    @classmethod
    def from_upstream(cls, details: Mapping[str, Any]) -> PromptDesign:
        """Map upstream's `design_details` dict (keys `trainer`, `vision_depth`, `language_depth`,
        `vision_ctx`, `language_ctx`, `maple_length`) onto a `PromptDesign`."""
        if "trainer" not in details:
            raise ValueError(
                f"design_details needs a 'trainer' key (one of {sorted(_UPSTREAM_TRAINERS)}), got {details!r}"
            )
        trainer = details["trainer"]
        if trainer not in _UPSTREAM_TRAINERS:
            raise ValueError(
                f"design_details['trainer']={trainer!r} is not supported; allowed: {sorted(_UPSTREAM_TRAINERS)} "
                "(IVLP/VPT -> deep prompts, MaPLe -> compound prompts, CoOp/CoCoOp -> plain CLIP)"
            )
        variant = _UPSTREAM_TRAINERS[trainer]
        if variant == "none":
            return cls()
        if variant == "maple":
            return cls(variant="maple", maple_length=int(details.get("maple_length", 0)))
        return cls(
            variant="ivlp",
            vision_depth=int(details.get("vision_depth", 0)),
            text_depth=int(details.get("language_depth", 0)),
            vision_ctx=int(details.get("vision_ctx", 0)),
            text_ctx=int(details.get("language_ctx", 0)),
        )

    @classmethod
    def coerce(cls, design: PromptDesign | Mapping[str, Any] | None) -> PromptDesign:
        """Accept a `PromptDesign`, upstream's dict, or None (plain CLIP)."""
        if design is None:
            return cls()
        if isinstance(design, PromptDesign):
            return design
        if isinstance(design, Mapping):
            return cls.from_upstream(design)
        raise TypeError(f"design must be a PromptDesign, an upstream design_details dict or None, got {type(design)}")
