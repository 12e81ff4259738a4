"""Config keys shared by the prompt-learning trainers (registered once, next to the code that reads them)."""

from __future__ import annotations

from yacs.config import CfgNode

from dassl.config import register_cfg_defaults

__all__ = ["VALID_MODALS", "trainer_node"]

# PromptKD's protocols: distil on all classes and report base/novel, or distil on a target
# dataset's unlabeled images and evaluate on all its classes.
VALID_MODALS = ("base2novel", "cross")


@register_cfg_defaults
def _add_modal_default(cfg: CfgNode) -> None:
    cfg.TRAINER.MODAL = "base2novel"


def trainer_node(cfg: CfgNode) -> CfgNode:
    """The ``TRAINER.<NAME>`` block of the selected trainer (e.g. ``TRAINER.PROMPTKD``).

    Raises a KeyError naming the missing block when the trainer's defaults were never registered.
    """
    key = str(cfg.TRAINER.NAME).upper()
    if key not in cfg.TRAINER:
        raise KeyError(
            f"Config has no TRAINER.{key} block for trainer {cfg.TRAINER.NAME!r}; its defaults are registered "
            "when the trainer module is imported (import trainers before building the config)."
        )
    return cfg.TRAINER[key]
