"""A yacs ``CfgNode`` whose "unknown key" errors name the closest existing key.

yacs rejects keys that are not in the default tree (KeyError from ``merge_from_file``, AssertionError from
``merge_from_list``) but only names the offending key. Users mostly hit this through a typo, so the error
raised here also lists the closest full key. Everything else is yacs unchanged (same type rules, literal
decoding, freezing, printing), and nested nodes may be plain yacs ``CfgNode`` objects.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from yacs.config import CfgNode

from dassl.errors import UserError

__all__ = ["ConfigNode", "UnknownConfigKeyError", "iter_full_keys"]

_YACS_FILE_PREFIX = "Non-existent config key: "
_YACS_LIST_PREFIX = "Non-existent key: "


class UnknownConfigKeyError(UserError, KeyError, AssertionError):
    """A config key that the default tree does not have.

    Subclasses both exception types yacs uses for this case so existing ``except`` clauses keep working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def iter_full_keys(node: CfgNode, prefix: str = "") -> Iterator[str]:
    """Yield every dotted key (leaves and nodes) of ``node``."""
    for key, value in node.items():
        full = f"{prefix}{key}"
        yield full
        if isinstance(value, CfgNode):
            yield from iter_full_keys(value, full + ".")


def _unknown_key_error(root: CfgNode, full_key: str, source: str) -> UnknownConfigKeyError:
    known = list(iter_full_keys(root))
    close = difflib.get_close_matches(full_key, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownConfigKeyError(
        f"Unknown config key {full_key!r} in {source}: the config tree has no such key.{hint} "
        "Keys must exist in the defaults (dassl.config.get_cfg_default() plus registered method defaults); "
        "fix the spelling or register the key with dassl.config.register_cfg_defaults."
    )


def _key_from_yacs_message(message: str) -> str | None:
    for prefix in (_YACS_FILE_PREFIX, _YACS_LIST_PREFIX):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return None


class ConfigNode(CfgNode):
    """Root config node: yacs ``CfgNode`` with better unknown-key errors.

    Only the root uses this class; nested nodes stay plain ``CfgNode`` (yacs compares node types exactly when
    merging, so loaded YAML trees are built as plain ``CfgNode`` too).
    """

    @classmethod
    def load_cfg(cls, cfg_file_obj_or_str):  # noqa: ANN001, ANN206 - yacs signature
        return CfgNode.load_cfg(cfg_file_obj_or_str)

    @classmethod
    def _decode_cfg_value(cls, value):  # noqa: ANN001, ANN206 - yacs signature
        # yacs turns dict values into cls(...); keep them plain CfgNode so types match the defaults.
        return CfgNode._decode_cfg_value(value)

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file; an unknown key raises naming the file, the key and the closest known key."""
        try:
            super().merge_from_file(cfg_filename)
        except UnknownConfigKeyError as err:
            raise UnknownConfigKeyError(str(err).replace("in merged config", f"in {cfg_filename}", 1)) from None

    def merge_from_other_cfg(self, cfg_other: CfgNode) -> None:
        try:
            super().merge_from_other_cfg(cfg_other)
        except KeyError as err:
            key = _key_from_yacs_message(str(err.args[0]) if err.args else "")
            if key is None:
                raise
            raise _unknown_key_error(self, key, "merged config") from None

    def merge_from_list(self, cfg_list: list) -> None:
        """Merge ``KEY VALUE`` pairs (command-line opts); unknown keys raise with a suggestion."""
        try:
            super().merge_from_list(cfg_list)
        except AssertionError as err:
            key = _key_from_yacs_message(str(err))
            if key is None:
                raise
            raise _unknown_key_error(self, key, "the opts list") from None
