"""Interleaved A/B comparison of training-step variants of our algorithm (issue #8, item 4).

On a shared machine the load changes from minute to minute (two identical CPU runs here differed by 2x), so
variants timed in separate processes cannot be compared. This builds one model set per variant in ONE process
and alternates their timed steps (A, B, C, A, B, C, ...), so every variant sees the same load. Ratios are
printed against the first variant (the reference), of the medians and of the best runs (on a shared CPU whose
load swings, the best run is the one least disturbed; on a dedicated GPU the two agree).

Variants: ``bf16`` (reference: autocast bf16, fp32 weights), ``fp32`` (no autocast, PyTorch's default full-fp32
CUDA matmuls, as the trainer runs ``PREC fp32``), ``fp32-tf32`` (the same with TF32 matmuls allowed),
``frozen-bf16`` (frozen teacher image tower and student tower stored in bf16: autocast has no weight casts to
do), ``teacher-bf16`` (only the teacher's matmul weights, as ``TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS``),
``math-attention`` (unfused SDPA reference: the gain of the fused kernel), ``compile`` (``torch.compile`` of
student and teacher image tower; ``compile-cudagraphs``: mode reduce-overhead), ``teacher-cache`` (bf16 with
``TRAINER.PROMPTKD.TEACHER_CACHE``: the warm-up step fills the cache, every timed step reads the teacher's
features back from its shard file -- re-opened each step, so the timing includes a shard read that a real run
does once per 64 steps). ``one-teacher`` / ``two-teachers`` (bf16): the trainer's teacher path
(``TeacherEnsemble.target`` + ``kl_target_loss``) with the model set's teacher alone, or with a second random
teacher of the same architecture mixed in (``TRAINER.PROMPTKD.TEACHERS`` with two entries).

    python -m bench.ab --variants bf16 fp32 frozen-bf16 math-attention --classes 37 --batch 4 --iters 4
    python -m bench.ab --variants one-teacher two-teachers --classes 37 --batch 4 --iters 4
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.common import (
    bench_is_tiny,
    format_machine,
    format_table,
    get_arch,
    interleaved_times,
    machine_info,
    resolve_device,
    write_bench_json,
)
from bench.distill import (
    DistillModels,
    DistillSetup,
    PhaseClock,
    backward_and_step,
    build_models,
    step_flops,
    train_step,
)
from trainers.common import FrozenTeacher, TeacherCache, TeacherEnsemble, TeacherView, kl_target_loss

VARIANTS: dict[str, dict[str, Any]] = {
    "bf16": {"prec": "bf16"},
    "fp32": {"prec": "fp32"},  # what PREC fp32 runs: PyTorch's default, full-fp32 matmuls on CUDA
    "fp32-tf32": {"prec": "fp32", "tf32": True},
    "frozen-bf16": {"prec": "bf16", "frozen_dtype": "bf16"},
    "teacher-bf16": {"prec": "bf16", "frozen_dtype": "teacher-bf16"},
    "math-attention": {"prec": "bf16", "attention": "math"},
    "compile": {"prec": "bf16", "compile": "default"},
    "compile-cudagraphs": {"prec": "bf16", "compile": "reduce-overhead"},
    "teacher-cache": {"prec": "bf16", "teacher_cache": True},
    "one-teacher": {"prec": "bf16", "teachers": 1},
    "two-teachers": {"prec": "bf16", "teachers": 2},
}


@contextlib.contextmanager
def _matmul_tf32(enabled: bool) -> Iterator[None]:
    """Allow TF32 CUDA matmuls (and cuDNN convolutions) inside the block only."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled or saved[1]
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def teacher_ensemble(models: DistillModels, count: int) -> TeacherEnsemble:
    """The model set's teacher (its stored ``W``) and ``count - 1`` more random ones, as the trainer holds them."""
    teachers = []
    for k in range(count):
        source = models if k == 0 else build_models(models.setup, models.n_classes)  # its own teacher and W
        names = [f"class {i}" for i in range(models.n_classes)]
        features = source.student.text_features
        teachers.append(FrozenTeacher(source.teacher.image_encoder, source.teacher_logit_scale, features, names,
                                      f"bench teacher {k + 1}", runs=1))  # fmt: skip
    return TeacherEnsemble(teachers)


def ensemble_step(models: DistillModels, ensemble: TeacherEnsemble, image: torch.Tensor, clock: PhaseClock) -> None:
    """``PromptKD.forward_backward``'s body: the teachers' mixed target, the student's KD loss, the SGD step."""
    precision = models.setup.precision
    with clock.phase("teacher_image"):
        target = ensemble.target(image, 1.0, precision.autocast)
    with clock.phase("student_fwd_bwd"):
        with precision.autocast():
            student_logits = models.student_forward(image)
        loss = models.setup.kd_weight * kl_target_loss(student_logits, target, 1.0)
    backward_and_step(models, loss, clock)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["bf16", "fp32", "frozen-bf16", "math-attention"])
    p.add_argument("--teacher", default="tiny-teacher" if tiny else "ViT-L/14")
    p.add_argument("--student", default="tiny-student" if tiny else "ViT-B/16")
    p.add_argument("--classes", type=int, default=37)
    p.add_argument("--batch", type=int, default=2 if tiny else 4)
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2 if tiny else 4)
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    teacher, student = get_arch(args.teacher), get_arch(args.student)
    models, attention, tf32, caches, ensembles = {}, {}, {}, {}, {}
    cache_dir = tempfile.TemporaryDirectory(prefix="bench-teacher-cache-")
    for name in args.variants:
        spec = VARIANTS[name]
        setup = DistillSetup(teacher, student, device, spec["prec"], frozen_dtype=spec.get("frozen_dtype", "fp32"))
        torch.manual_seed(0)
        models[name] = build_models(setup, args.classes)
        if spec.get("compile"):
            models[name].compile(spec["compile"])
        attention[name] = spec.get("attention", "auto")
        tf32[name] = bool(spec.get("tf32", False))
        if spec.get("teacher_cache"):
            caches[name] = TeacherCache(cache_dir.name, "0" * 64)
        if spec.get("teachers"):
            ensembles[name] = teacher_ensemble(models[name], spec["teachers"])
    res = student.image_resolution
    image = torch.randn(args.batch, 3, res, res, device=device)
    clock = PhaseClock(device, split=False)
    view = TeacherView(0, 0, last=True)  # every step is the same view: filled by the warm-up, then read back

    def step(name: str) -> None:
        backend = sdpa_kernel(SDPBackend.MATH) if attention[name] == "math" else contextlib.nullcontext()
        cache = caches.get(name)
        if cache is not None:
            cache.close()  # the next read opens the shard file again
        with backend, _matmul_tf32(tf32[name]):
            if name in ensembles:
                ensemble_step(models[name], ensembles[name], image, clock)
            else:
                train_step(models[name], image, False, clock, cache, view)

    steps = {name: functools.partial(step, name) for name in models}
    times = interleaved_times(steps, device, warmup=args.warmup, iters=args.iters)
    reference = statistics.median(times[args.variants[0]])
    flops = step_flops(next(iter(models.values())), args.batch, upstream=False)
    rows = []
    for name in models:
        median = statistics.median(times[name])
        best = min(times[name])
        rows.append({"variant": name, "step_s": median, "images_per_s": args.batch / median,
                     "speedup_vs_reference": reference / median, "tflops": flops / median / 1e12,
                     "best_s": best, "best_speedup_vs_reference": min(times[args.variants[0]]) / best,
                     "runs_s": times[name]})  # fmt: skip
    info = machine_info(device)
    print(format_machine(info))
    what = f"{args.teacher} -> {args.student}, {args.classes} classes, batch {args.batch}"
    print(f"\n## Step variants of our algorithm, timed steps interleaved ({what})")
    ref = args.variants[0]
    headers = ["variant", "median ms", "images/s", f"speed-up vs {ref}", "TFLOP/s", "best ms",
               f"best speed-up vs {ref}", "all runs ms"]  # fmt: skip
    table = [[r["variant"], 1000 * r["step_s"], r["images_per_s"], r["speedup_vs_reference"], r["tflops"],
              1000 * r["best_s"], r["best_speedup_vs_reference"], " ".join(f"{1000 * t:.0f}" for t in r["runs_s"])]
             for r in rows]  # fmt: skip
    print(format_table(headers, table))
    for name, cache in caches.items():
        print(f"{name}: {cache.summary()}")
    cache_dir.cleanup()
    if args.json:
        write_bench_json(args.json, {"machine": info, "args": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
