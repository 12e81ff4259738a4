"""Evaluation throughput: our student with stored class features vs upstream's teacher + student (issue #8).

Ours: ``logits = s * normalize(P(f_s(x))) @ W^T`` with ``W`` stored in the student; the teacher is
never run. Upstream: every evaluation batch runs the teacher's text tower over all C
classes and its image tower, then the student. Both are measured end to end here, on the same random-weight
models, under ``torch.inference_mode`` and the chosen autocast precision; the ratio is printed.

    python -m bench.evaluate --batch-sizes 8 --classes 37 1000              # CPU
    python -m bench.evaluate --device cuda --batch-sizes 100 256 --classes 37 1000
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from bench.common import (
    bench_is_tiny,
    format_machine,
    format_table,
    get_arch,
    is_out_of_memory,
    machine_info,
    peak_memory_mib,
    reset_peak_memory,
    resolve_device,
    text_forward_flops,
    time_call,
    vit_forward_flops,
    write_bench_json,
)
from bench.distill import DistillModels, DistillSetup, build_models, encode_class_features

logger = logging.getLogger(__name__)


def evaluate_ours(models: DistillModels, image: torch.Tensor) -> torch.Tensor:
    """Student logits against the stored ``W`` (what ``PromptKD.test`` computes per batch)."""
    with torch.inference_mode(), models.setup.precision.autocast():
        return models.student(image)


def evaluate_upstream(models: DistillModels, image: torch.Tensor) -> torch.Tensor:
    """Upstream's per-batch work: teacher text tower (all classes) + teacher image tower + student."""
    with torch.inference_mode(), models.setup.precision.autocast():
        features = encode_class_features(models, full_length=True)
        models.teacher.image_encoder(image)  # computed by upstream's teacher forward, its output unused
        u = models.student.encode_image(image)
        return models.student.logit_scale.exp() * u @ features.t().to(u.dtype)


def measure(models: DistillModels, batch: int, warmup: int, iters: int, upstream_iters: int) -> list[dict[str, Any]]:
    """One row per algorithm (OOM reported per algorithm)."""
    setup = models.setup
    res = setup.student_arch.image_resolution
    image = torch.randn(batch, 3, res, res, device=setup.device)
    s, t, n = setup.student_arch, setup.teacher_arch, setup.n_ctx
    student_flops = vit_forward_flops(s, batch, n) + 2 * batch * (s.embed_dim * t.embed_dim + t.embed_dim**2)
    flops = {
        "ours": student_flops,
        "upstream": student_flops + vit_forward_flops(t, batch, n) + text_forward_flops(t, models.n_classes),
    }
    rows = []
    models.student.eval()
    for name, fn, n_iters in (("ours", evaluate_ours, iters), ("upstream", evaluate_upstream, upstream_iters)):
        row: dict[str, Any] = {"classes": models.n_classes, "batch": batch, "algorithm": name, "flops": flops[name]}
        reset_peak_memory(setup.device)
        try:
            seconds = time_call(lambda fn=fn: fn(models, image), setup.device, warmup=warmup, iters=n_iters)
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            row["error"] = "OOM"
        else:
            row.update(batch_s=seconds, images_per_s=batch / seconds, peak_mib=peak_memory_mib(setup.device))
            row["achieved_tflops"] = flops[name] / seconds / 1e12
        rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="tiny-teacher" if tiny else "ViT-L/14")
    p.add_argument("--student", default="tiny-student" if tiny else "ViT-B/16")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4] if tiny else [8])
    p.add_argument("--classes", type=int, nargs="+", default=[37, 1000])
    p.add_argument("--prec", default="bf16")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=2 if tiny else 1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--upstream-iters", type=int, default=1)
    p.add_argument("--frozen-dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = machine_info(device)
    setup = DistillSetup(
        get_arch(args.teacher), get_arch(args.student), device, args.prec, frozen_dtype=args.frozen_dtype
    )
    print(f"# evaluate: teacher {args.teacher}, student {args.student}, {setup.precision.description}", flush=True)
    rows: list[dict[str, Any]] = []
    for n_classes in args.classes:
        torch.manual_seed(0)
        models = build_models(setup, n_classes)
        for batch in args.batch_sizes:
            rows += measure(models, batch, args.warmup, args.iters, args.upstream_iters)
        del models
        reset_peak_memory(device)
        print(f"# done: {n_classes} classes", file=sys.stderr, flush=True)
    peak = info.get("bf16_peak_tflops")
    table, ratios = [], []
    for row in rows:
        tf = row.get("achieved_tflops")
        table.append([row["classes"], row["batch"], row["algorithm"] + (f" ({row['error']})" if "error" in row else ""),
                      row.get("images_per_s"), 1000 * row["batch_s"] if "batch_s" in row else None, row["flops"] / 1e9,
                      tf, 100 * tf / peak if tf and peak else None, row.get("peak_mib")])  # fmt: skip
    for ours, up in zip(rows[::2], rows[1::2], strict=True):
        if "batch_s" in ours and "batch_s" in up:
            ratios.append([ours["classes"], ours["batch"], ours["images_per_s"], up["images_per_s"],
                           up["batch_s"] / ours["batch_s"]])  # fmt: skip
    headers = ["classes", "batch", "algorithm", "images/s", "ms/batch", "GFLOP/batch", "TFLOP/s", "MFU %", "peak MiB"]
    print(format_machine(info))
    print("\n## Evaluation (ours: student + stored W; upstream: teacher text + image towers + student per batch)")
    print(format_table(headers, table))
    print("\n## Upstream / ours, same models, same process")
    print(format_table(["classes", "batch", "ours images/s", "upstream images/s", "upstream / ours"], ratios))
    if args.json:
        write_bench_json(args.json, {"machine": info, "prec": setup.precision.description, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
