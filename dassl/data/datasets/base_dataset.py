"""Sample record (`Datum`) and dataset base class (`DatasetBase`), Dassl.pytorch-compatible.

The module path ``dassl.data.datasets.base_dataset`` and the attribute names of `Datum` are part of the
pickle format of upstream few-shot caches (``split_fewshot/shot_K-seed_S.pkl``) and must not change.
"""

from __future__ import annotations

import logging
import os
import random
import tarfile
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from dassl.errors import InputFileError

logger = logging.getLogger(__name__)

__all__ = ["Datum", "DatasetBase", "sample_few_shot", "group_by_label"]


class Datum:
    """One labelled image: path, class label, domain label and class name.

    Upstream checks at construction that the image file exists. That costs one ``stat`` per image (1.28M for
    ImageNet) and aborts at the first missing file, so here the check can be switched off per call
    (``check=False``) or globally (``Datum.check_file_exists = False``) by readers that validate a whole list
    at once. The default stays upstream's: check.

    Instances pickle as ``dassl.data.datasets.base_dataset.Datum`` with the instance dict
    ``{"_impath", "_label", "_domain", "_classname"}`` exactly like upstream; unpickling never checks
    files because pickle does not call ``__init__``.
    """

    check_file_exists: bool = True

    def __init__(
        self,
        impath: str = "",
        label: int = 0,
        domain: int = 0,
        classname: str = "",
        *,
        check: bool | None = None,
    ) -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        do_check = self.check_file_exists if check is None else check
        if do_check and not os.path.isfile(impath):
            raise InputFileError(
                f'No file found at "{impath}" (label={label}, classname={classname!r}). '
                "Check DATASET.ROOT and the dataset folder layout, or pass check=False to skip the check."
            )
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def _key(self) -> tuple[str, int, int, str]:
        return (self._impath, self._label, self._domain, self._classname)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Datum(impath={self._impath!r}, label={self._label!r}, domain={self._domain!r}, "
            f"classname={self._classname!r})"
        )


class _SupportsSampling(Protocol):
    """The two stdlib RNG methods few-shot sampling uses (the `random` module or a `random.Random`)."""

    def sample(self, population: Sequence[Any], k: int) -> list[Any]: ...

    def choices(self, population: Sequence[Any], *, k: int = 1) -> list[Any]: ...


def group_by_label(items: Sequence[Datum]) -> dict[int, list[Datum]]:
    """Group items by label; groups in first-appearance order, items in original order."""
    groups: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return groups


def sample_few_shot(
    items: Sequence[Datum],
    num_shots: int,
    rng: _SupportsSampling | None = None,
    repeat: bool = False,
) -> list[Datum]:
    """Pick ``num_shots`` items per label from one list with upstream's exact RNG call order.

    Upstream ``DatasetBase.generate_fewshot_dataset`` for one data source: for each label group in
    first-appearance order, ``rng.sample(group, K)`` when the group has at least K items, else
    ``rng.choices(group, k=K)`` if ``repeat``, else the whole group with no RNG call. ``rng=None`` uses the
    global `random` module (upstream); a private ``random.Random(seed)`` driven through the same calls gives the
    same result. ``num_shots < 1`` returns a copy of ``items``.
    """
    if num_shots < 1:
        return list(items)
    if rng is None:
        rng = random
    picked: list[Datum] = []
    short: list[tuple[int, int]] = []
    for label, group in group_by_label(items).items():
        if len(group) >= num_shots:
            picked.extend(rng.sample(group, num_shots))
        elif repeat:
            picked.extend(rng.choices(group, k=num_shots))
        else:
            picked.extend(group)
            short.append((label, len(group)))
    if short:
        logger.warning(
            "Few-shot sampling (%d shots): %d class(es) have fewer images and keep all of them (label: count) %s",
            num_shots,
            len(short),
            ", ".join(f"{lab}: {n}" for lab, n in short),
        )
    return picked


class DatasetBase:
    """Container of the train_x / train_u / val / test lists of `Datum`, as upstream Dassl's.

    ``num_classes`` (max label + 1) and ``lab2cname`` / ``classnames`` are derived from ``train_x`` only,
    as upstream. Non-contiguous labels or a label with two class names are logged as warnings (upstream is silent).
    """

    dataset_dir = ""  # the directory where the dataset is stored
    domains: list[str] = []  # string names of all domains

    def __init__(
        self,
        train_x: list[Datum] | None = None,
        train_u: list[Datum] | None = None,
        val: list[Datum] | None = None,
        test: list[Datum] | None = None,
        *,
        classnames: Sequence[str] | None = None,
    ) -> None:
        """``classnames`` (label order) gives the classes when the reader knows them without labeled training
        images (a folder of unlabeled images and a class list); ``train_x`` may then be empty."""
        self._train_x = train_x  # labeled training data
        self._train_u = train_u  # unlabeled training data (optional)
        self._val = val  # validation data (optional)
        self._test = test  # test data
        if classnames is not None:
            self._classnames = list(classnames)
            self._lab2cname = dict(enumerate(self._classnames))
            self._num_classes = len(self._classnames)
        else:
            self._num_classes = self.get_num_classes(train_x)
            self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> list[Datum] | None:
        return self._train_x

    @property
    def train_u(self) -> list[Datum] | None:
        return self._train_u

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum] | None:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum] | None) -> int:
        """Largest label + 1 (upstream semantics, not the number of distinct labels)."""
        if not data_source:
            raise ValueError(
                "DatasetBase needs a non-empty train_x to derive num_classes, got "
                f"{data_source!r}. The dataset reader must pass train_x (test-only datasets pass train_x=test)."
            )
        labels = {item.label for item in data_source}
        num_classes = max(labels) + 1
        if len(labels) != num_classes:
            missing = sorted(set(range(num_classes)) - labels)
            logger.warning(
                "Labels in train_x are not contiguous from 0: %d distinct labels but num_classes = max + 1 = %d "
                "(missing labels: %s)",
                len(labels),
                num_classes,
                missing[:20] + (["..."] if len(missing) > 20 else []),
            )
        return num_classes

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum] | None) -> tuple[dict[int, str], list[str]]:
        """Map label -> class name and list the names by ascending label.

        Upstream picks an arbitrary name when one label has several; here the first one seen wins and the
        conflict is logged.
        """
        mapping: dict[int, str] = {}
        for item in data_source or ():
            known = mapping.setdefault(item.label, item.classname)
            if known != item.classname:
                logger.warning(
                    "Label %d has two class names: %r (kept) and %r (item %s)",
                    item.label,
                    known,
                    item.classname,
                    item.impath,
                )
        labels = sorted(mapping)
        mapping = {label: mapping[label] for label in labels}
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        assert len(source_domains) > 0, "source_domains (list) is empty"
        assert len(target_domains) > 0, "target_domains (list) is empty"
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def download_data(self, url: str, dst: str, from_gdrive: bool = True) -> None:
        """Download an archive (Google Drive only, as upstream) and extract it next to ``dst``."""
        dst_dir = os.path.dirname(dst)
        if dst_dir:
            os.makedirs(dst_dir, exist_ok=True)
        if not from_gdrive:
            raise NotImplementedError(f"Only Google Drive downloads are supported (from_gdrive=True), got url={url}")
        import gdown  # lazy: optional dependency, needed only for downloads

        gdown.download(url, dst, quiet=False)

        print("Extracting file ...")
        if dst.endswith(".zip"):
            with zipfile.ZipFile(dst, "r") as zf:
                zf.extractall(dst_dir)
        elif dst.endswith(".tar") or dst.endswith(".tar.gz"):
            with tarfile.open(dst, "r:*") as tf:
                tf.extractall(dst_dir, filter="data")
        else:
            raise NotImplementedError(f"Cannot extract {dst}: only .zip, .tar and .tar.gz are supported")
        print(f"File extracted to {dst_dir}")

    def generate_fewshot_dataset(
        self,
        *data_sources: list[Datum],
        num_shots: int = -1,
        repeat: bool = False,
        rng: _SupportsSampling | None = None,
    ) -> list[Datum] | list[list[Datum]] | tuple[list[Datum], ...]:
        """Sample ``num_shots`` images per class from each source with upstream's exact algorithm.

        ``num_shots < 1`` returns the input unchanged (the single list, or the tuple of lists) without
        printing or touching the RNG. Otherwise prints ``Creating a {K}-shot dataset`` and samples each
        source in argument order with `sample_few_shot` (one RNG stream). ``rng=None`` = global `random`.
        """
        if num_shots < 1:
            if len(data_sources) == 1:
                return data_sources[0]
            return data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = [sample_few_shot(source, num_shots, rng=rng, repeat=repeat) for source in data_sources]
        if len(output) == 1:
            return output[0]
        return output

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group by label: keys in first-appearance order, items in original order."""
        return group_by_label(data_source)

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> dict[int, list[Datum]]:
        """Group by domain: keys in first-appearance order, items in original order."""
        output: dict[int, list[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
