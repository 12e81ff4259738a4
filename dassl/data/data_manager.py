"""`DatasetWrapper`, `build_data_loader` and `DataManager`, with upstream Dassl's names and arguments.

Single-process behaviour is upstream's: torch's `RandomSampler` / `SequentialSampler`, no loader generator,
no ``worker_init_fn``, so a seeded run draws the same torch RNG values (each new loader iterator draws the
loader's base seed and, for ``RandomSampler``, the permutation seed from the torch CPU generator). Changes:

- ``pin_memory`` only when CUDA is used; ``persistent_workers`` only with ``DATALOADER.PERSISTENT_WORKERS``
  (off by default: workers are then seeded once per loader instead of once per epoch, which saves worker start-up
  but changes the torch RNG stream and is not restored on resume).
- Under ``torch.distributed`` with world size > 1, a training loader uses torch's ``DistributedSampler``
  (shuffled like ``RandomSampler`` when that is the configured sampler, seed ``cfg.SEED`` or 0 when unseeded)
  and a per-process batch of ``batch_size // world_size`` (so the global batch stays the configured one);
  call `set_loader_epoch` at the start of every epoch so each epoch shuffles differently. Evaluation loaders
  give each rank a disjoint strided shard without padding (`ShardedSequentialSampler`), keeping the
  configured per-process batch, so gathered metrics count every image exactly once.
- Unreadable images raise an error naming the file; a loader over un-transformed PIL images (which the default
  collate cannot batch) is refused at build time; the ``img0`` pipeline is built only when requested (upstream
  always builds it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from dassl.errors import ImageFileError, InputFileError
from dassl.utils import read_image
from dassl.utils.process_group import get_rank, get_world_size

from .datasets import build_dataset
from .datasets.base_dataset import Datum
from .samplers import ShardedSequentialSampler, build_sampler
from .transforms import build_transform, get_interpolation_mode

logger = logging.getLogger(__name__)

__all__ = ["DataManager", "DatasetWrapper", "ImageReadError", "build_data_loader", "set_loader_epoch"]


class ImageReadError(ImageFileError):
    """An image listed by the dataset could not be decoded."""


def _distributed_world() -> tuple[int, int]:
    """(rank, world_size) of the running process group, or (0, 1) when not distributed."""
    world_size = get_world_size()
    return (get_rank() if world_size > 1 else 0), world_size


def _use_cuda(cfg: Any) -> bool:
    return bool(cfg.USE_CUDA) and torch.cuda.is_available()


class DatasetWrapper(Dataset):
    """Torch dataset over a list of `Datum`: reads the image and returns upstream's item dict.

    Keys: ``label``, ``domain``, ``impath``, ``index``, ``img`` (``img2``, ``img3`` ... for a list of
    transforms; a list of K tensors when ``DATALOADER.K_TRANSFORMS = K > 1`` in training) and ``img0`` (the
    resized, un-augmented image) when ``DATALOADER.RETURN_IMG0``.
    """

    def __init__(self, cfg: Any, data_source: Sequence[Datum], transform: Any = None, is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # accept list (tuple) as input
        self.is_train = is_train
        # Augmenting an image K>1 times is only allowed during training
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"Cannot augment the image {self.k_tfm} times because transform is None "
                "(DATALOADER.K_TRANSFORMS > 1 needs a training transform)"
            )
        self._to_tensor: Compose | None = None

    @property
    def to_tensor(self) -> Compose:
        """The ``img0`` pipeline: resize to exactly ``INPUT.SIZE``, to tensor, normalise if configured."""
        if self._to_tensor is None:
            inp = self.cfg.INPUT
            steps: list[Any] = [Resize(inp.SIZE, interpolation=get_interpolation_mode(inp.INTERPOLATION)), ToTensor()]
            if "normalize" in inp.TRANSFORMS:
                steps.append(Normalize(mean=inp.PIXEL_MEAN, std=inp.PIXEL_STD))
            self._to_tensor = Compose(steps)
        return self._to_tensor

    def __len__(self) -> int:
        return len(self.data_source)

    def _read(self, impath: str, idx: int) -> Any:
        try:
            return read_image(impath)
        except FileNotFoundError as e:
            raise InputFileError(f'Image of item {idx} not found: "{impath}" ({e})') from e
        except Exception as e:  # PIL raises several types for corrupt/truncated files
            raise ImageReadError(f'Cannot read image of item {idx}: "{impath}" ({type(e).__name__}: {e})') from e

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data_source[idx]
        output: dict[str, Any] = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = self._read(item.impath, idx)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm: Any, img0: Any) -> Any:
        imgs = [tfm(img0) for _ in range(self.k_tfm)]
        return imgs[0] if len(imgs) == 1 else imgs


def _build_distributed_sampler(
    sampler_type: str, cfg: Any, dataset: Dataset, is_train: bool, rank: int, world_size: int
) -> Sampler[int]:
    if not is_train:
        return ShardedSequentialSampler(dataset, rank=rank, world_size=world_size)
    if sampler_type not in ("RandomSampler", "SequentialSampler"):
        raise ValueError(
            f"Sampler {sampler_type!r} is not supported with torch.distributed (world size {world_size}); "
            "use RandomSampler or SequentialSampler for the training loader, or run a single process"
        )
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    return DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=sampler_type == "RandomSampler", seed=seed
    )


def build_data_loader(
    cfg: Any,
    sampler_type: str = "SequentialSampler",
    data_source: Sequence[Datum] | None = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Any = None,
    is_train: bool = True,
    dataset_wrapper: type[Dataset] | None = None,
) -> DataLoader:
    """Loader over ``data_source`` as upstream builds it; ``drop_last`` only in training with a full batch."""
    if not data_source:
        raise ValueError(f"build_data_loader got an empty data_source (sampler {sampler_type}, is_train={is_train})")
    if dataset_wrapper is None:
        if tfm is None:
            raise ValueError(
                "No transform given: the default collate cannot batch PIL images. Remove INPUT.NO_TRANSFORM, pass a "
                "transform, or pass a dataset_wrapper that converts images itself"
            )
        dataset_wrapper = DatasetWrapper
    dataset = dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train)

    rank, world_size = _distributed_world()
    if world_size > 1:
        sampler = _build_distributed_sampler(sampler_type, cfg, dataset, is_train, rank, world_size)
        if is_train:
            batch_size = max(1, batch_size // world_size)
        num_items = len(sampler)
    else:
        sampler = build_sampler(
            sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size, n_domain=n_domain, n_ins=n_ins
        )
        num_items = len(data_source)

    num_workers = cfg.DATALOADER.NUM_WORKERS
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=is_train and num_items >= batch_size,
        pin_memory=_use_cuda(cfg),
        persistent_workers=num_workers > 0 and bool(cfg.DATALOADER.get("PERSISTENT_WORKERS", False)),
    )
    if len(loader) == 0 and (is_train or world_size == 1):  # an evaluation shard may be empty on some rank
        raise ValueError(
            f"The {'training' if is_train else 'evaluation'} loader is empty ({num_items} items, batch size "
            f"{batch_size}, sampler {sampler_type})"
        )
    return loader


def set_loader_epoch(loader: DataLoader | None, epoch: int) -> None:
    """Tell a distributed sampler which epoch starts (reshuffles per epoch); no-op for other samplers."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def _format_table(rows: list[list[str]]) -> str:
    """Two-column table in tabulate's "simple" style without headers: dashed rules, left-aligned cells."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([rule, *lines, rule])


class DataManager:
    """Builds the dataset, the transforms and the train/val/test loaders from ``cfg``, in upstream's order."""

    def __init__(
        self,
        cfg: Any,
        custom_tfm_train: Any = None,
        custom_tfm_test: Any = None,
        dataset_wrapper: type[Dataset] | None = None,
    ) -> None:
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train

        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        dl = cfg.DATALOADER

        def train_loader(source: list, node: Any) -> DataLoader | None:
            if not source:
                return None
            return build_data_loader(
                cfg,
                sampler_type=node.SAMPLER,
                data_source=source,
                batch_size=node.BATCH_SIZE,
                n_domain=node.N_DOMAIN,
                n_ins=node.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        def eval_loader(source: list | None) -> DataLoader | None:
            if not source:
                return None
            return build_data_loader(
                cfg,
                sampler_type=dl.TEST.SAMPLER,
                data_source=source,
                batch_size=dl.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        # Each loader exists only when its list is non-empty: a dataset of unlabeled images and a class list may
        # have no labeled training images, and without test images training still runs and nothing is evaluated.
        train_loader_x = train_loader(dataset.train_x, dl.TRAIN_X)
        train_loader_u = train_loader(dataset.train_u, dl.TRAIN_X if dl.TRAIN_U.SAME_AS_X else dl.TRAIN_U)
        val_loader = eval_loader(dataset.val)
        test_loader = eval_loader(dataset.test)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the training loaders' distributed samplers (no-op in a single process)."""
        set_loader_epoch(self.train_loader_x, epoch)
        set_loader_epoch(self.train_loader_u, epoch)

    def show_dataset_summary(self, cfg: Any) -> None:
        """Print upstream's summary table (dataset, domains, class and split sizes)."""
        rows = [["Dataset", str(cfg.DATASET.NAME)]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", str(cfg.DATASET.SOURCE_DOMAINS)])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", str(cfg.DATASET.TARGET_DOMAINS)])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x or ()):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test or ()):,}"])
        print(_format_table(rows))
