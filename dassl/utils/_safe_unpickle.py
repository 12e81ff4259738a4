"""The one restricted unpickler: pickles from elsewhere are read without executing code from them.

Two users, one class (:class:`RestrictedUnpickler`), each with the globals it admits; any other global is
refused with :class:`UnsafePickleError` naming it (its module is never imported, nothing is called):

- checkpoints (:func:`restricted_torch_load`): ``torch.save`` files that ``torch.load(weights_only=True)``
  refuses;
- the official repositories' dataset caches (:func:`restricted_pickle_load`): pickles of ``Datum`` objects.

Every upstream Dassl checkpoint pickles scheduler objects (the warmup wrapper stores its inner scheduler
object, which references the optimizer), so torch's weights-only loader rejects them. This module reads
such files without executing pickled code:

- globals that torch's own weights-only loader allows (tensor/storage rebuild functions, dtypes,
  ``OrderedDict``, ``torch.Size``, ...) resolve to the real objects;
- the optimizer and LR-scheduler classes of ``torch.optim`` and Dassl's warmup schedulers, and the plain
  containers their state holds, become *inert* :class:`PickledObject` subclasses created on the fly: calling
  one, ``__new__``, ``__setstate__``, item and list assignment only record their arguments;
- anything else (``posix.system``, ``builtins.eval``, a user class ...) means the file was not written by a
  trainer: loading is refused, the error names the global. A tampered file is neither run nor quietly loaded.

Both torch formats are read here (the zip format of torch >= 1.6 and the legacy stream format); tensors are
rebuilt on the CPU. The global ``pickle`` module is never patched.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import torch

from dassl.errors import UnsafePickleError

__all__ = [
    "PickledObject",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "is_state_object",
    "restricted_pickle_load",
    "restricted_torch_load",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexDoubleStorage": torch.complex128,
    "ComplexFloatStorage": torch.complex64,
    "UntypedStorage": torch.uint8,
}


class PickledObject:
    """Inert stand-in for an object of a class this loader does not trust.

    ``global_name`` is the pickled ``module.qualname``; ``args``/``kwargs`` the constructor arguments,
    ``state`` what ``__setstate__``/BUILD received (for plain Python objects: their ``__dict__``), ``items``
    and ``listitems`` what dict/list subclasses carried.
    """

    global_name = "<unknown>"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = super().__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, listitems=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # arguments already recorded by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["listitems"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["listitems"].extend(values)

    def __repr__(self) -> str:
        return f"<PickledObject {self.global_name} (not loaded: untrusted class)>"


def _placeholder_type(module: str, name: str) -> type[PickledObject]:
    return type(name.rsplit(".", 1)[-1], (PickledObject,), {"global_name": f"{module}.{name}", "__module__": __name__})


def _allowed_globals() -> dict[str, Any]:
    """The globals torch's weights-only unpickler accepts, keyed ``module.name``."""
    from torch import _weights_only_unpickler

    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    # Rebuilding a tensor subclass calls an arbitrary type; only allow it through a checked wrapper.
    allowed["torch._tensor._rebuild_from_type_v2"] = _rebuild_from_type_checked
    return allowed


def _rebuild_from_type_checked(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if isinstance(func, type) and issubclass(func, PickledObject):
        return func(new_type, args, state)
    if not (isinstance(new_type, type) and new_type in (torch.Tensor, torch.nn.Parameter)):
        return _placeholder_type("torch._tensor", "_rebuild_from_type_v2")(func, new_type, args, state)
    from torch._tensor import _rebuild_from_type_v2

    return _rebuild_from_type_v2(func, new_type, args, state)


# Classes that genuine (upstream Dassl / official) checkpoints pickle in their optimizer and scheduler entries.
_STATE_OBJECT_MODULES = ("torch.optim.lr_scheduler", "dassl.optim.lr_scheduler")
_BUILTIN_TYPES = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "bool", "str", "bytes")
_STATE_CONTAINERS = frozenset(
    f"{module}.{name}"
    for module, names in (
        ("builtins", _BUILTIN_TYPES),
        ("__builtin__", _BUILTIN_TYPES),  # protocol-2 pickles name builtins the Python 2 way
        ("collections", ("defaultdict", "Counter", "OrderedDict", "deque")),
    )
    for name in names
)


def is_state_object(module: str, name: str) -> bool:
    """Whether ``module.name`` is an optimizer, LR scheduler or container class as checkpoints pickle them."""
    if module in _STATE_OBJECT_MODULES:
        return name.isidentifier()
    if module.startswith("torch.optim."):
        cls = getattr(torch.optim, name, None)
        return isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
    return f"{module}.{name}" in _STATE_CONTAINERS


def _never_inert(module: str, name: str) -> bool:
    return False


def _no_storage(pid: Any) -> Any:
    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in pickle")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``allowed`` (``"module.name" -> object``).

    Globals for which ``inert(module, name)`` is true become :class:`PickledObject` placeholders; any other
    global raises :class:`UnsafePickleError` naming it. Its module is never imported. ``storages`` resolves
    torch's persistent ids (tensor storages); without it a persistent id is an error.
    """

    def __init__(
        self,
        file: Any,
        allowed: dict[str, Any],
        storages: Any = None,
        encoding: str = "ASCII",
        inert: Callable[[str, str], bool] = _never_inert,
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = allowed
        self._storages = storages or _no_storage
        self._inert = inert

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key in self._allowed:
            return self._allowed[key]
        if self._inert(module, name):
            return _placeholder_type(module, name)
        raise UnsafePickleError(f"the pickle refers to {key}, which this loader does not admit")

    def persistent_load(self, pid: Any) -> Any:
        return self._storages(pid)


def restricted_pickle_load(file: Any, allowed: dict[str, Any]) -> Any:
    """Unpickle the plain pickle stream ``file`` admitting only the globals in ``allowed``."""
    return RestrictedUnpickler(file, allowed).load()


def _dtype_of(storage_type: Any) -> torch.dtype:
    if isinstance(storage_type, torch.dtype):
        return storage_type
    storage_type_cls = getattr(torch.serialization, "StorageType", None)
    if storage_type_cls is not None and isinstance(storage_type, storage_type_cls):
        return storage_type.dtype
    name = getattr(storage_type, "__name__", None)
    if name not in _STORAGE_DTYPES:
        raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r} in checkpoint")
    return _STORAGE_DTYPES[name]


def _typed(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _load_zip(zf: zipfile.ZipFile, encoding: str) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkl:
        raise pickle.UnpicklingError("zip archive has no '<archive>/data.pkl' record: not a torch.save file")
    prefix = pkl[0][: -len("data.pkl")]
    if any(n == f"{prefix}constants.pkl" for n in names) or any(n.startswith(f"{prefix}code/") for n in names):
        raise pickle.UnpicklingError(
            "this is a TorchScript archive, not a checkpoint; open it through clip.load_state_dict "
            "(which checks its SHA-256 or needs MODEL.TRUST_TORCHSCRIPT)"
        )
    if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").decode().strip() != "little":
        raise pickle.UnpicklingError("big-endian checkpoints are not supported")
    cache: dict[str, torch.storage.TypedStorage] = {}

    def load_storage(pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in checkpoint")
        _, storage_type, key, _location, _numel = pid[:5]
        dtype = _dtype_of(storage_type)
        if key not in cache:
            raw = zf.read(f"{prefix}data/{key}")
            if raw:
                untyped = torch.frombuffer(bytearray(raw), dtype=torch.uint8).untyped_storage()
            else:
                untyped = torch.UntypedStorage(0)
            cache[key] = _typed(untyped, dtype)
        return _typed(cache[key]._untyped_storage, dtype)

    with zf.open(pkl[0]) as f:
        return RestrictedUnpickler(
            io.BytesIO(f.read()), _allowed_globals(), load_storage, encoding, inert=is_state_object
        ).load()


def _load_legacy(f: Any, encoding: str) -> Any:
    allowed = _allowed_globals()

    def header() -> Any:
        return RestrictedUnpickler(f, allowed, None, encoding).load()

    magic = header()
    if magic != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("invalid magic number: not a torch.save file")
    if header() != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("unsupported legacy torch.save protocol version")
    sys_info = header()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError("big-endian checkpoints are not supported")

    storages: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}

    def load_storage(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in checkpoint")
        if pid[0] == "module":  # legacy pickled nn.Module source: ignored, never compiled
            return pid[1] if len(pid) > 1 else None
        if pid[0] != "storage" or len(pid) < 6:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in checkpoint")
        storage_type, root_key, _location, numel, view_metadata = pid[1:6]
        dtype = _dtype_of(storage_type)
        if root_key not in storages:
            nbytes = int(numel) * torch.empty((), dtype=dtype).element_size()
            storages[root_key] = (torch.UntypedStorage(nbytes), dtype)
        untyped, root_dtype = storages[root_key]
        if view_metadata is not None:
            _view_key, offset, view_size = view_metadata
            esize = torch.empty((), dtype=root_dtype).element_size()
            untyped = untyped[offset * esize : (offset + view_size) * esize]
        return _typed(untyped, dtype)

    result = RestrictedUnpickler(f, allowed, load_storage, encoding, inert=is_state_object).load()
    keys = RestrictedUnpickler(f, {}, None, encoding).load()
    if not isinstance(keys, list):
        raise pickle.UnpicklingError("corrupt legacy checkpoint: storage key list missing")
    for key in keys:
        if key not in storages:
            raise pickle.UnpicklingError(f"corrupt legacy checkpoint: unknown storage key {key!r}")
        untyped, dtype = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        if nbytes != untyped.nbytes():
            raise pickle.UnpicklingError(f"corrupt legacy checkpoint: storage {key!r} has the wrong size")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise pickle.UnpicklingError("truncated legacy checkpoint")
        if nbytes:
            untyped.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8).untyped_storage())
    return result


def restricted_torch_load(fpath: str | os.PathLike, encoding: str = "ASCII") -> Any:
    """Load a ``torch.save`` file (zip or legacy); optimizer/scheduler objects become :class:`PickledObject`.

    Raises :class:`UnsafePickleError` naming the global when the file pickles anything else, and
    ``pickle.UnpicklingError`` (or ``EOFError``) when it is not a torch checkpoint.
    """
    if zipfile.is_zipfile(fpath):
        with zipfile.ZipFile(fpath) as zf:
            return _load_zip(zf, encoding)
    with open(fpath, "rb") as f:
        return _load_legacy(f, encoding)
