"""Index samplers for the data loaders plus the sharded samplers used under torchrun.

`RandomSampler` / `SequentialSampler` are torch's own, so a seeded run draws exactly what upstream draws.
The domain/class-balanced samplers keep upstream's per-epoch algorithm (stdlib `random` calls in
the same order) but no longer run a whole epoch at construction to learn their length: the length
is exact where it is deterministic (all domains per batch) and otherwise an estimate from a private RNG,
replaced by the true length of each epoch once that epoch's indices are drawn.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import RandomSampler, Sampler, SequentialSampler

logger = logging.getLogger(__name__)

__all__ = [
    "build_sampler",
    "RandomDomainSampler",
    "SeqDomainSampler",
    "RandomClassSampler",
    "RandomSampler",
    "SequentialSampler",
    "ShardedSequentialSampler",
]


def _domain_batches(
    domain_dict: dict[int, list[int]], domains: list[int], n_domain: int, n_per_domain: int, rng: Any, shuffle: bool
) -> list[int]:
    """One epoch of domain-balanced batches: upstream's loop with the RNG calls in upstream's order."""
    pool = copy.deepcopy(domain_dict)
    final: list[int] = []
    stop = False
    while not stop:
        selected = rng.sample(domains, n_domain) if shuffle else domains
        for domain in selected:
            idxs = rng.sample(pool[domain], n_per_domain)
            final.extend(idxs)
            for idx in idxs:
                pool[domain].remove(idx)
            if len(pool[domain]) < n_per_domain:
                stop = True
    return final


class RandomDomainSampler(Sampler[int]):
    """Each batch holds ``batch_size // n_domain`` images from each of ``n_domain`` randomly chosen domains.

    ``n_domain <= 0`` uses every domain. An epoch ends as soon as a domain just used has fewer images left
    than one batch needs.
    """

    def __init__(self, data_source: Sequence[Any], batch_size: int, n_domain: int) -> None:
        self.data_source = data_source
        self.domain_dict: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(data_source):
            self.domain_dict[item.domain].append(i)
        self.domains = list(self.domain_dict.keys())
        if n_domain is None or n_domain <= 0:
            n_domain = len(self.domains)
        if batch_size % n_domain != 0:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by n_domain ({n_domain})")
        if n_domain > len(self.domains):
            raise ValueError(f"n_domain ({n_domain}) exceeds the number of domains in the data ({len(self.domains)})")
        self.n_img_per_domain = batch_size // n_domain
        self.batch_size = batch_size
        self.n_domain = n_domain
        smallest = min(len(v) for v in self.domain_dict.values())
        if smallest < self.n_img_per_domain:
            raise ValueError(
                f"Every domain needs at least batch_size // n_domain = {self.n_img_per_domain} images; "
                f"the smallest has {smallest}"
            )
        self.length = self._initial_length()

    def _initial_length(self) -> int:
        if self.n_domain == len(self.domains):  # every batch uses every domain: length is deterministic
            rounds = min(len(v) // self.n_img_per_domain for v in self.domain_dict.values())
            return max(rounds, 1) * self.batch_size
        return len(self._epoch(random.Random(0)))  # estimate without touching the global RNG

    def _epoch(self, rng: Any) -> list[int]:
        return _domain_batches(self.domain_dict, self.domains, self.n_domain, self.n_img_per_domain, rng, True)

    def __iter__(self) -> Iterator[int]:
        idxs = self._epoch(random)
        self.length = len(idxs)
        return iter(idxs)

    def __len__(self) -> int:
        return self.length


class SeqDomainSampler(RandomDomainSampler):
    """Like `RandomDomainSampler` but every batch takes all domains, in sorted order."""

    def __init__(self, data_source: Sequence[Any], batch_size: int) -> None:
        super().__init__(data_source, batch_size, n_domain=0)
        self.domains.sort()

    def _epoch(self, rng: Any) -> list[int]:
        return _domain_batches(self.domain_dict, self.domains, self.n_domain, self.n_img_per_domain, rng, False)


class RandomClassSampler(Sampler[int]):
    """Each batch holds ``n_ins`` images of each of ``batch_size // n_ins`` random classes (person re-ID style).

    Classes with fewer than ``n_ins`` images are resampled with replacement (``np.random.choice``).
    """

    def __init__(self, data_source: Sequence[Any], batch_size: int, n_ins: int) -> None:
        if batch_size < n_ins:
            raise ValueError(f"batch_size={batch_size} must be no less than n_ins={n_ins}")
        self.data_source = data_source
        self.batch_size = batch_size
        self.n_ins = n_ins
        self.ncls_per_batch = batch_size // n_ins
        self.index_dic: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            self.index_dic[item.label].append(index)
        self.labels = list(self.index_dic.keys())
        if len(self.labels) < self.ncls_per_batch:
            raise ValueError(
                f"RandomClassSampler needs at least batch_size // n_ins = {self.ncls_per_batch} classes, "
                f"the data has {len(self.labels)}"
            )
        self.length = len(self._epoch(random.Random(0), np.random.RandomState(0)))  # estimate; exact per epoch

    def _epoch(self, rng: Any, np_rng: Any) -> list[int]:
        chunks: dict[int, list[list[int]]] = defaultdict(list)
        for label in self.labels:
            idxs = copy.deepcopy(self.index_dic[label])
            if len(idxs) < self.n_ins:
                idxs = [int(i) for i in np_rng.choice(idxs, size=self.n_ins, replace=True)]
            rng.shuffle(idxs)
            for start in range(0, len(idxs) - self.n_ins + 1, self.n_ins):
                chunks[label].append(idxs[start : start + self.n_ins])

        avai_labels = copy.deepcopy(self.labels)
        final: list[int] = []
        while len(avai_labels) >= self.ncls_per_batch:
            for label in rng.sample(avai_labels, self.ncls_per_batch):
                final.extend(chunks[label].pop(0))
                if not chunks[label]:
                    avai_labels.remove(label)
        return final

    def __iter__(self) -> Iterator[int]:
        idxs = self._epoch(random, np.random)
        self.length = len(idxs)
        return iter(idxs)

    def __len__(self) -> int:
        return self.length


class ShardedSequentialSampler(Sampler[int]):
    """Rank ``r`` of ``w`` gets indices ``r, r + w, r + 2w, ...`` in order, each index on exactly one rank.

    Unlike torch's ``DistributedSampler`` it never pads, so metrics gathered over ranks count every
    evaluation image exactly once.
    """

    def __init__(self, data_source: Sequence[Any], rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.num_total = len(data_source)
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_total, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_total, self.world_size))


def build_sampler(
    sampler_type: str,
    cfg: Any = None,
    data_source: Sequence[Any] | None = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler[int]:
    """Build the sampler named by ``DATALOADER.*.SAMPLER`` (upstream names and arguments)."""
    if sampler_type == "RandomDomainSampler":
        return RandomDomainSampler(data_source, batch_size, n_domain)
    if sampler_type == "SeqDomainSampler":
        return SeqDomainSampler(data_source, batch_size)
    if sampler_type == "RandomClassSampler":
        return RandomClassSampler(data_source, batch_size, n_ins)
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    valid = ["RandomSampler", "SequentialSampler", "RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler"]
    raise ValueError(f"Unknown sampler type: {sampler_type} (valid: {', '.join(valid)})")
