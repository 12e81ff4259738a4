"""Prediction throughput of ``predict.py``: images/s of an exported PromptKD student per loader worker count.

The student is the paper's at real size (ViT-B/16 with 9-deep 4-token vision prompts, projector 512 -> 768,
stored class features; random weights), written with ``trainers.common.inference.export_model`` and loaded back
with ``load_exported_model``, so the timed path is ``predict.py --model FILE``'s own: JPEG decode, the run's test
transform (bicubic resize + centre crop 224 + normalise), the batched forward under the chosen precision, softmax
and top-k. Images are synthetic photo-like 500x375 JPEGs. Each worker count runs once untimed (start-up, caches),
then the median of ``--repeats`` timed passes; ratios are against 0 workers in the same process.

    python -m bench.predict --images 64 --workers 0 1 2 --batch-size 32
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from bench.common import (
    bench_is_tiny,
    build_visual,
    format_machine,
    format_table,
    get_arch,
    machine_info,
    write_bench_json,
)
from bench.synthetic_data import write_jpegs
from dassl.engine import resolve_precision
from trainers.common import ivlp_design

logger = logging.getLogger(__name__)

CLIP_INPUT = {
    "SIZE": (224, 224),
    "INTERPOLATION": "bicubic",
    "PIXEL_MEAN": [0.48145466, 0.4578275, 0.40821073],
    "PIXEL_STD": [0.26862954, 0.26130258, 0.27577711],
    "TRANSFORMS": ["random_resized_crop", "random_flip", "normalize"],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="tiny-student" if tiny else "ViT-B/16")
    parser.add_argument("--teacher-dim", type=int, default=48 if tiny else 768)
    parser.add_argument("--classes", type=int, default=37)
    parser.add_argument("--images", type=int, default=8 if tiny else 64)
    parser.add_argument("--batch-size", type=int, default=4 if tiny else 32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=1 if tiny else 2)
    parser.add_argument("--prec", default="fp32", help="the exported run's PREC (fp16/amp run fp32 math on CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", default="")
    return parser.parse_args(argv)


def export_student(path: str, student: str, teacher_dim: int, classes: int, prec: str) -> None:
    """A random-weight PromptKD student at ``student`` size, exported as ``predict.py --export`` writes it."""
    from trainers.common.inference import FixedClassifier, export_model
    from trainers.promptkd import StudentProjector

    torch.manual_seed(0)
    arch = get_arch(student)
    visual = build_visual(arch, ivlp_design(min(9, arch.vision_layers), 0, 4, 0))
    features = torch.nn.functional.normalize(torch.randn(classes, teacher_dim), dim=-1)
    projector = StudentProjector(arch.embed_dim, teacher_dim)
    model = FixedClassifier(visual, features, torch.tensor(4.6052), projector=projector)
    size = arch.image_resolution
    input_cfg = dict(CLIP_INPUT, SIZE=(size, size))
    provenance = {"trainer": "PromptKD", "dataset": "bench", "config_sha256": "", "git_commit": "", "run_dir": ""}
    export_model(model, [f"class {i}" for i in range(classes)], input_cfg, prec, provenance, path)


def measure(predictor: Any, paths: list[str], batch_size: int, workers: int, repeats: int) -> dict[str, Any]:
    predictor.predict(paths, 1, batch_size, workers)  # untimed: worker start-up paths, allocator, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rows = predictor.predict(paths, 5, batch_size, workers)
        times.append(time.perf_counter() - start)
        assert len(rows) == len(paths)
    seconds = statistics.median(times)
    return {"workers": workers, "seconds": seconds, "images_per_s": len(paths) / seconds}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import predict
    from trainers.common.inference import load_exported_model

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    info = machine_info(device)
    with tempfile.TemporaryDirectory(prefix="promptkd-bench-predict-") as tmp:
        exported_file = os.path.join(tmp, "student.pt")
        export_student(exported_file, args.student, args.teacher_dim, args.classes, args.prec)
        exported = load_exported_model(exported_file, device)
        predictor = predict.Predictor(exported.model, exported.classnames, exported.transform,
                                      resolve_precision(exported.precision, device), device)  # fmt: skip
        paths = write_jpegs(os.path.join(tmp, "images"), args.images, (500, 375), seed=0)
        rows = []
        for workers in args.workers:
            rows.append(measure(predictor, paths, args.batch_size, workers, args.repeats))
            print(f"# done: {workers} workers", file=sys.stderr, flush=True)
    reference = next((r for r in rows if r["workers"] == 0), rows[0])["images_per_s"]
    print(format_machine(info))
    print(f"\n## predict.py --model (exported {args.student} PromptKD student, {args.classes} classes, prec "
          f"{args.prec}), {args.images} JPEGs 500x375, batch {args.batch_size}")  # fmt: skip
    table = [[r["workers"], r["seconds"], r["images_per_s"], r["images_per_s"] / reference] for r in rows]
    print(format_table(["workers", "seconds", "images/s", "vs 0 workers"], table))
    payload = {"machine": info, "args": vars(args), "rows": rows}
    if args.json:
        write_bench_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
