"""Teacher output cache: a distillation run stores what each frozen teacher produced for every training view, and
a later run with the same views reads it back instead of running the teacher's image tower.

Researchers sweep the KD weight, temperature, learning rate or epochs with one teacher, one dataset and one seed;
every such run sees exactly the same augmented batches (a longer run the shorter one's, then more), and the teacher
(a ViT-L/14, most of a step's time) gives exactly the same answer on them. A change that draws the student's initial
values differently from the run's generators (its prompt depth or design) shifts every later random draw: such a run
sees other views and misses throughout (its batches are recomputed, correctly). What is stored per view is the
teacher's L2-normalised image feature ``[E]``; the logits ``s * f @ W^T`` are recomputed from it (a matmul), so the
cache holds no class-count-sized data.

Correctness before speed -- a cache never gives a wrong result:

* The directory is named by a fingerprint of everything that decides the views or the teacher's answer (teacher
  weights and class features, seed, input/loader/dataset config, precision, device type, CUDA's fp32 math
  (TF32 or not), the compiler, world size and rank, cache dtype, torch version, the list of training items). A
  change of any of these is a new directory.
* Each batch also carries a probe of its input pixels (:func:`batch_probe`: a few sampled pixel values, each
  image's sum and its row- and column-weighted sums, so a flipped view differs too). A batch whose probe differs
  from the stored one is a miss, recomputed and stored again; so a view that changed for a reason the fingerprint
  does not see (another component drawing from the same RNG) is recomputed too.
* Shards are written atomically (a kill leaves the previous file or the complete new one), carry their fingerprint
  and a SHA-256 of their contents, and are read with ``weights_only=True``. A truncated, altered, foreign or
  unreadable shard is logged, its batches recomputed and the shard rewritten.
* Features are rounded to the cache dtype on a miss as on a hit, so the run that fills the cache and the runs that
  read it compute the same losses (fp32, the default, rounds nothing: an fp32 cache equals an uncached run).

Layout: ``<dir>/<fingerprint[:32]>/teacher<k>/epoch<e>-shard<s>.pt``, :data:`SHARD_BATCHES` batches per shard.
A partly filled cache (a killed run) is completed by the next run: missing batches are misses, and the shard they
belong to is rewritten with old and new batches together.

Storage per view is ``E * 4`` bytes in fp32 (``E * 2`` in fp16) plus an 88-byte probe (11 fp64 values), e.g.
3,160 bytes per view for a ViT-L/14 teacher (``E = 768``) in fp32 or 1,624 bytes in fp16. A 1.28M-image ImageNet
run of 20 epochs stores 25.6M views: about 81 GB in fp32, 42 GB in fp16.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import os.path as osp
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from dassl.utils.atomic import atomic_torch_save

__all__ = [
    "CACHE_DTYPES",
    "PROBE_POINTS",
    "SHARD_BATCHES",
    "TeacherCache",
    "TeacherView",
    "batch_probe",
    "tensor_fingerprint",
]

logger = logging.getLogger(__name__)

SHARD_BATCHES = 64  # batches per shard file: one file per ~64 steps, a few MB at batch 8, ~50 MB at batch 256
PROBE_POINTS = 8  # sampled pixel values per image in a batch probe (+ the image's sum)
CACHE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
_FORMAT = 2  # 2: probes with the row- and column-weighted sums


class TeacherView(NamedTuple):
    """Which training view a batch is: its place in the run (the cache key) and whether it ends the epoch."""

    epoch: int
    batch_idx: int
    last: bool = False


def tensor_fingerprint(tensors: Iterable[tuple[str, torch.Tensor]], settings: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of named tensors (name, dtype, shape and bytes, in the given order) and JSON ``settings``."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    if settings is not None:
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def batch_probe(image: torch.Tensor) -> torch.Tensor:
    """``[B, PROBE_POINTS + 3]`` fp64 on the CPU: pixel values at fixed positions spread over each image, the
    image's sum, and its sums weighted by column and by row index.

    Cheap (a gather and two reductions, no copy of the batch) and different for any other augmented view. The
    weighted sums are what tells a flipped view apart: a horizontal or vertical flip keeps the sum, and on an image
    whose background is uniform where the points are sampled, the points too.
    """
    image = image.detach()
    flat = image.reshape(image.shape[0], -1)
    positions = torch.linspace(0, flat.shape[1] - 1, PROBE_POINTS, device=flat.device).long()
    points = flat[:, positions].double()
    columns = image.sum(dim=tuple(range(1, image.dim() - 1)), dtype=torch.float64)  # [B, W]
    rows = image.sum(dim=(*range(1, image.dim() - 2), image.dim() - 1), dtype=torch.float64)  # [B, H]
    sums = columns.sum(dim=1, keepdim=True)
    by_column = columns @ torch.arange(1, columns.shape[1] + 1, dtype=torch.float64, device=flat.device)
    by_row = rows @ torch.arange(1, rows.shape[1] + 1, dtype=torch.float64, device=flat.device)
    return torch.cat([points, sums, by_column[:, None], by_row[:, None]], dim=1).cpu()


def _checksum(batch_ids: list[int], features: list[torch.Tensor], probes: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for batch_idx, feature, probe in zip(batch_ids, features, probes, strict=True):
        digest.update(str(batch_idx).encode())
        for tensor in (feature, probe):
            digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class _Shard:
    """One shard in memory: batch index -> (features in the cache dtype, probe); ``dirty`` = not yet on disk."""

    key: tuple[int, int]
    entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    dirty: bool = False


class _DamagedShard(Exception):
    pass


class TeacherCache:
    """Stored teacher features of one run's training views, one folder per teacher (``teacher<k>``).

    ``features(k, view, image, compute)`` returns teacher ``k``'s features for the batch ``image`` at ``view``:
    read from the cache when stored for this very batch, else ``compute()`` (stored for later runs). The result is
    fp32 on ``image``'s device, rounded to the cache dtype in both cases. Call :meth:`close` at the end of
    training (writes what is not yet on disk); :meth:`summary` is the run's one log line.
    """

    def __init__(self, root: str, fingerprint: str, dtype: str = "fp32", shard_batches: int = SHARD_BATCHES) -> None:
        if dtype not in CACHE_DTYPES:
            raise ValueError(f"teacher cache dtype {dtype!r}; allowed: {list(CACHE_DTYPES)}")
        if shard_batches < 1:
            raise ValueError(f"shard_batches must be >= 1, got {shard_batches}")
        self.root = root
        self.fingerprint = fingerprint
        self.directory = osp.join(root, fingerprint[:32])
        self.dtype = CACHE_DTYPES[dtype]
        self.shard_batches = shard_batches
        self.hits = 0
        self.misses = 0
        self.damaged = 0  # shard files found unusable (recomputed and rewritten)
        self.changed = 0  # stored batches whose input probe differed from this run's batch (recomputed)
        self._open: dict[int, _Shard] = {}

    # ------------------------------------------------------------------ lookup
    def features(
        self, teacher: int, view: TeacherView, image: torch.Tensor, compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """Teacher ``teacher``'s features ``[B, E]`` (fp32, on ``image``'s device) for the batch ``image``."""
        shard = self._shard(teacher, view)
        probe = batch_probe(image)
        stored = shard.entries.get(view.batch_idx)
        if stored is not None and stored[1].shape == probe.shape and torch.equal(stored[1], probe):
            self.hits += 1
            result = stored[0].to(image.device).float()
        else:
            if stored is not None:
                self.changed += 1
                if self.changed == 1:
                    logger.warning(
                        "teacher cache: the stored batch at epoch %d, batch %d came from other input pixels than "
                        "this run's (the views changed without a change of config); recomputing such batches",
                        view.epoch,
                        view.batch_idx,
                    )
            self.misses += 1
            rounded = compute().detach().to(self.dtype)
            shard.entries[view.batch_idx] = (rounded.to("cpu", copy=True), probe)  # never aliases the result
            shard.dirty = True
            result = rounded.float()
        if view.last:
            self._flush(teacher)
        return result

    def _shard(self, teacher: int, view: TeacherView) -> _Shard:
        key = (view.epoch, view.batch_idx // self.shard_batches)
        shard = self._open.get(teacher)
        if shard is not None and shard.key == key:
            return shard
        self._flush(teacher)
        shard = _Shard(key, self._read(teacher, key))
        self._open[teacher] = shard
        return shard

    # ------------------------------------------------------------------ files
    def shard_path(self, teacher: int, epoch: int, shard: int) -> str:
        """The file of teacher ``teacher``'s shard ``shard`` of epoch ``epoch``."""
        return osp.join(self.directory, f"teacher{teacher}", f"epoch{epoch}-shard{shard}.pt")

    def _read(self, teacher: int, key: tuple[int, int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        path = self.shard_path(teacher, *key)
        if not osp.isfile(path):
            return {}
        try:
            return self._validated(torch.load(path, map_location="cpu", weights_only=True), key)
        except Exception as error:  # any unreadable or inconsistent file is recomputed, never trusted
            self.damaged += 1
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            logger.warning("teacher cache: damaged shard %s (%s); recomputing its batches", path, reason[:200])
            return {}

    def _validated(self, data: Any, key: tuple[int, int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise _DamagedShard("not a teacher cache shard of this format")
        if data.get("fingerprint") != self.fingerprint:
            raise _DamagedShard("written for other settings or another teacher (fingerprint differs)")
        if (data.get("epoch"), data.get("shard")) != key:
            raise _DamagedShard(f"holds epoch {data.get('epoch')} shard {data.get('shard')}")
        batch_ids, features, probes = data.get("batch_ids"), data.get("features"), data.get("probes")
        if not (isinstance(batch_ids, list) and isinstance(features, list) and isinstance(probes, list)):
            raise _DamagedShard("missing batch lists")
        if not len(batch_ids) == len(features) == len(probes):
            raise _DamagedShard("batch lists of different lengths")
        if any(not isinstance(t, torch.Tensor) for t in [*features, *probes]):
            raise _DamagedShard("a batch entry is not a tensor")
        if any(t.dtype != self.dtype or t.dim() != 2 for t in features):
            raise _DamagedShard("features of another dtype or shape")
        if data.get("checksum") != _checksum(batch_ids, features, probes):
            raise _DamagedShard("checksum mismatch")
        return {int(b): (f, p) for b, f, p in zip(batch_ids, features, probes, strict=True)}

    def _flush(self, teacher: int) -> None:
        shard = self._open.get(teacher)
        if shard is None or not shard.dirty:
            return
        batch_ids = sorted(shard.entries)
        features = [shard.entries[b][0] for b in batch_ids]
        probes = [shard.entries[b][1] for b in batch_ids]
        data = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "epoch": shard.key[0],
            "shard": shard.key[1],
            "batch_ids": batch_ids,
            "features": features,
            "probes": probes,
            "checksum": _checksum(batch_ids, features, probes),
        }
        atomic_torch_save(data, self.shard_path(teacher, *shard.key))
        shard.dirty = False

    def close(self) -> None:
        """Write the shards still in memory (the end of training; also safe to call twice)."""
        for teacher in list(self._open):
            self._flush(teacher)
        self._open.clear()

    # ------------------------------------------------------------------ reporting
    def size_bytes(self) -> int:
        """Bytes on disk of this fingerprint's shards (all teachers), for the summary line."""
        total = 0
        for folder, _, files in os.walk(self.directory):
            total += sum(osp.getsize(osp.join(folder, name)) for name in files if name.endswith(".pt"))
        return total

    def summary(self) -> str:
        """``teacher cache: N hits, M misses (X MiB in DIR)`` (+ damaged shards / changed batches when any)."""
        line = f"teacher cache: {self.hits} hits, {self.misses} misses"
        extra = []
        if self.damaged:
            extra.append(f"{self.damaged} damaged shards rewritten")
        if self.changed:
            extra.append(f"{self.changed} batches with other inputs recomputed")
        if extra:
            line += ", " + ", ".join(extra)
        return f"{line} ({self.size_bytes() / 2**20:.1f} MiB in {self.directory})"
