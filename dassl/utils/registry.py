"""Name -> object registries (trainers, datasets, evaluators), as in upstream Dassl."""

from __future__ import annotations

from typing import Any

from dassl.errors import UserError

__all__ = ["Registry"]


class _RegistryKeyError(KeyError):
    """KeyError whose message prints as written (plain KeyError shows its repr, escaping the quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _UnknownNameError(UserError, _RegistryKeyError):
    """A name (usually from the config) that is not registered."""


class Registry:
    """A named mapping filled by a decorator.

    Usage::

        TRAINER_REGISTRY = Registry("TRAINER")

        @TRAINER_REGISTRY.register()
        class CoOp(TrainerX): ...

        TRAINER_REGISTRY.get("CoOp")

    Keys are the registered object's ``__name__``. Unknown names raise ``KeyError`` listing the registered
    names and the closest one, because a misspelt trainer/dataset name in a config is the usual cause.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise _RegistryKeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry '
                "(pass force=True to replace it)"
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Any:
        """Register ``obj`` under its ``__name__``; without ``obj``, return a class/function decorator."""
        if obj is None:

            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return None

    def get(self, name: str) -> Any:
        """The object registered as ``name``; ``KeyError`` naming the known names and the closest one."""
        if name not in self._obj_map:
            from .tools import get_most_similar_str_to_a_from_b

            known = self.registered_names()
            hint = ""
            if known:
                hint = f' (do you mean "{get_most_similar_str_to_a_from_b(str(name), known)}"?)'
            raise _UnknownNameError(
                f'Object name "{name}" does not exist in "{self._name}" registry{hint}; registered names: {known}'
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        """Names in registration order."""
        return list(self._obj_map.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __len__(self) -> int:
        return len(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={self.registered_names()})"
