"""Throughput of PromptKD's training input pipeline on synthetic photo-sized JPEGs (issue #8).

The pipeline is the engine's: ``dassl.utils.read_image`` (PIL decode + RGB) -> ``build_transform(cfg,
is_train=True)`` with the PromptKD YAML's INPUT block (RandomResizedCrop 224 bicubic, horizontal flip, ToTensor,
CLIP normalisation) -> ``build_data_loader`` (default collate; persistent workers; pinned memory on CUDA).

Measured:
1. in-process, per image: decode ms, transform ms, images/s; also with PIL's JPEG ``draft`` (DCT-domain
   down-scaling while decoding, to the smallest power-of-two reduction that stays >= the crop size);
2. the training DataLoader for each worker count: images/s of the first epoch (worker start-up included) and of
   the second (persistent workers already running);
3. end to end: ``DataManager`` over a synthetic Caltech101-layout dataset (reader, split file, sampler, loader),
   one epoch.
Ratios are printed against the 1-process reference of the same run.

    python -m bench.dataloader --images 256 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from yacs.config import CfgNode

from bench.common import PROMPTKD_YAML, bench_is_tiny, format_machine, format_table, machine_info, write_bench_json
from bench.synthetic_data import make_caltech101_layout, write_jpegs
from dassl.config import get_cfg_default
from dassl.data.data_manager import DataManager, DatasetWrapper, build_data_loader
from dassl.data.datasets.base_dataset import Datum
from dassl.data.transforms import build_transform
from dassl.utils import read_image

logger = logging.getLogger(__name__)


def make_cfg(size: int, workers: int, batch: int, root: str = "") -> Any:
    """The engine config with the PromptKD YAML's INPUT block and the given loader settings."""
    import datasets  # noqa: F401  (registers the benchmark readers and their config keys)
    from dassl.config import apply_cfg_defaults

    cfg = get_cfg_default()
    apply_cfg_defaults(cfg)
    with open(PROMPTKD_YAML, encoding="utf-8") as f:
        cfg.INPUT.merge_from_other_cfg(CfgNode.load_cfg(f).INPUT)
    cfg.INPUT.SIZE = (size, size)
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch
    cfg.DATASET.ROOT = root
    return cfg


def read_image_draft(path: str, size: int) -> Image.Image:
    """``read_image`` with PIL's JPEG draft mode: decode directly at 1/2, 1/4 or 1/8 scale when the result stays
    at least ``size`` on both sides (no reduction otherwise), then RGB."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        return img.convert("RGB")


class DraftDatasetWrapper(DatasetWrapper):
    """``DatasetWrapper`` that decodes with :func:`read_image_draft` at ``INPUT.SIZE``."""

    def _read(self, impath: str, idx: int) -> Any:
        return read_image_draft(impath, max(self.cfg.INPUT.SIZE))


def quiet_transform(cfg: Any, is_train: bool = True) -> Any:
    """``build_transform`` without its upstream console lines (they would interleave with the tables)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return build_transform(cfg, is_train=is_train)


def measure_in_process(paths: Sequence[str], cfg: Any, draft: bool) -> dict[str, Any]:
    """Decode and transform every image once in this process with ONE torch thread, as inside a DataLoader
    worker (torch sets 1 thread there); per-image milliseconds.

    With the default intra-op threads, ToTensor + Normalize of one 224 px image went from ~2 ms to 30-60 ms on
    the loaded 2-core machine (thread synchronisation on tiny ops), which is what ``NUM_WORKERS 0`` pays.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _decode_and_transform(paths, cfg, draft)
    finally:
        torch.set_num_threads(threads)


def _decode_and_transform(paths: Sequence[str], cfg: Any, draft: bool) -> dict[str, Any]:
    tfm = quiet_transform(cfg)
    size = max(cfg.INPUT.SIZE)
    decode = transform = 0.0
    decoded_size = None
    for path in paths:
        start = time.perf_counter()
        img = read_image_draft(path, size) if draft else read_image(path)
        mid = time.perf_counter()
        tfm(img)
        transform += time.perf_counter() - mid
        decode += mid - start
        decoded_size = img.size
    n = len(paths)
    return {
        "mode": "draft" if draft else "full decode",
        "decoded_size": f"{decoded_size[0]}x{decoded_size[1]}",
        "decode_ms": 1000 * decode / n,
        "transform_ms": 1000 * transform / n,
        "images_per_s": n / (decode + transform),
    }


def measure_loader(items: Sequence[Datum], cfg: Any, batch: int, epochs: int, draft: bool) -> dict[str, Any]:
    """Epoch times of the training loader (``build_data_loader``, as the trainer builds it)."""
    tfm = quiet_transform(cfg)
    wrapper = DraftDatasetWrapper if draft else None
    loader = build_data_loader(
        cfg, "RandomSampler", items, batch_size=batch, tfm=tfm, is_train=True, dataset_wrapper=wrapper
    )
    row: dict[str, Any] = {"workers": cfg.DATALOADER.NUM_WORKERS, "draft": draft, "batch": batch}
    for epoch in range(epochs):
        start = time.perf_counter()
        seen = 0
        for data in loader:
            seen += data["img"].shape[0]
        row[f"epoch{epoch + 1}_images_per_s"] = seen / (time.perf_counter() - start)
    del loader
    return row


def measure_datamanager(root: str, cfg: Any) -> dict[str, Any]:
    """One epoch of ``DataManager(cfg).train_loader_x`` (reader + split + loader), time to build included."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        dm = DataManager(cfg)
    built = time.perf_counter()
    seen = sum(batch["img"].shape[0] for batch in dm.train_loader_x)
    end = time.perf_counter()
    return {
        "images": seen,
        "workers": cfg.DATALOADER.NUM_WORKERS,
        "build_s": built - start,
        "epoch_s": end - built,
        "images_per_s": seen / (end - built),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    cpus = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=16 if tiny else 256, help="synthetic JPEGs to decode")
    p.add_argument("--image-size", type=int, nargs=2, default=[500, 375], metavar=("W", "H"))
    p.add_argument("--crop", type=int, default=32 if tiny else 224, help="INPUT.SIZE")
    p.add_argument("--batch", type=int, default=4 if tiny else 32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1] if tiny else sorted({0, 1, 2, cpus}))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--draft", action="store_true", help="also run the loaders with draft decoding")
    p.add_argument("--classes", type=int, default=4 if tiny else 37, help="end-to-end dataset classes")
    p.add_argument("--data-dir", default="", help="where to write the JPEGs (default: a temporary folder)")
    p.add_argument("--json", default="")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    info = machine_info(torch.device("cpu"))
    size = tuple(args.image_size)
    with tempfile.TemporaryDirectory(prefix="promptkd-bench-data-") as tmp:
        folder = args.data_dir or tmp
        paths = write_jpegs(os.path.join(folder, "flat"), args.images, size, seed=0)
        items = [Datum(impath=p, label=i % 2, classname=f"c{i % 2}", check=False) for i, p in enumerate(paths)]
        cfg = make_cfg(args.crop, 0, args.batch)
        in_process = [measure_in_process(paths, cfg, draft=False), measure_in_process(paths, cfg, draft=True)]
        loaders = []
        for workers in args.workers:
            for draft in (False, True) if args.draft else (False,):
                loaders.append(measure_loader(items, make_cfg(args.crop, workers, args.batch), args.batch,
                                              args.epochs, draft))  # fmt: skip
                print(f"# done: loader, {workers} workers, draft={draft}", file=sys.stderr, flush=True)
        per_class = max(1, args.images // args.classes)
        root = make_caltech101_layout(os.path.join(folder, "e2e"), args.classes, per_class, size)
        e2e_workers = max(args.workers)
        e2e_cfg = make_cfg(args.crop, e2e_workers, args.batch, str(root))
        e2e_cfg.DATASET.NAME, e2e_cfg.DATASET.NUM_SHOTS = "Caltech101", 0
        e2e_cfg.DATASET.CACHE_DIR = os.path.join(folder, "cache")
        end_to_end = measure_datamanager(str(root), e2e_cfg)

    ref = in_process[0]["images_per_s"]
    print(format_machine(info))
    print(f"\n## In-process decode + transform, {args.images} JPEGs of {size[0]}x{size[1]} -> {args.crop} px")
    rows = [[r["mode"], r["decoded_size"], r["decode_ms"], r["transform_ms"], r["images_per_s"],
             r["images_per_s"] / ref] for r in in_process]  # fmt: skip
    print(format_table(["mode", "decoded", "decode ms", "transform ms", "images/s", "vs full decode"], rows))
    base = next((r for r in loaders if r["workers"] == 0 and not r["draft"]), loaders[0])
    key = f"epoch{args.epochs}_images_per_s"
    print(f"\n## Training DataLoader (batch {args.batch}, RandomSampler, persistent workers)")
    rows = [[r["workers"], "yes" if r["draft"] else "no", r["epoch1_images_per_s"], r[key], r[key] / base[key]]
            for r in loaders]  # fmt: skip
    print(format_table(["workers", "draft", "epoch 1 images/s", f"epoch {args.epochs} images/s", "vs 0 workers"], rows))
    print(f"\n## End to end: DataManager (Caltech101 reader) over {end_to_end['images']} images, one epoch")
    print(format_table(list(end_to_end), [list(end_to_end.values())]))
    payload = {"machine": info, "in_process": in_process, "loaders": loaders, "end_to_end": end_to_end}
    if args.json:
        write_bench_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
