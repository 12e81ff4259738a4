"""Training-step cost of PromptKD distillation, ours vs the upstream algorithm, on the same models (issue #8).

Our step (trainers/promptkd.py; the teacher's class features are computed once and stored in the student): teacher image
tower under inference mode -> teacher logits against the STORED class features ``W`` -> student forward + KL loss +
backward -> SGD step.
The upstream step additionally re-encodes all C class prompts through the teacher's text tower on every step,
so its extra cost grows with C; upstream evaluation also runs the whole teacher on every batch.

Models are the real sizes with random weights in OpenAI's layout (default teacher ViT-L/14 with PromptSRC's
9-deep 4+4 prompts, student ViT-B/16 with 9-deep 4 vision prompts and the 2-layer projector). Printed per
(classes, batch): images/s, step-time split, FLOPs per step (analytic, ``bench/common.py``), achieved TFLOP/s,
MFU against the device's dense bf16 peak (GPU), peak memory, and the upstream/ours ratio measured in this process.

    python -m bench.distill --batch-sizes 4 --classes 37 1000 --prec bf16          # CPU, real sizes
    python -m bench.distill --device cuda --batch-sizes 8 256 --classes 37 1000    # GPU
    python -m bench.distill --trainer-run                                           # the trainer's counter
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.common import (
    PROMPTKD_YAML,
    REPO,
    ClipArch,
    bench_is_tiny,
    build_clip,
    build_visual,
    format_machine,
    format_table,
    get_arch,
    is_out_of_memory,
    machine_info,
    peak_memory_mib,
    projector_train_flops,
    reset_peak_memory,
    resolve_device,
    synchronize,
    text_forward_flops,
    time_call,
    vit_backward_input_flops,
    vit_forward_flops,
    write_bench_json,
)
from dassl.config import get_cfg_default
from dassl.engine.precision import Precision, resolve_precision
from dassl.optim import build_optimizer
from trainers.common import (
    PromptedCLIP,
    TeacherCache,
    TeacherView,
    freeze_by_name,
    ivlp_design,
    kl_logit_loss,
    store_matmul_weights_in,
)
from trainers.promptkd import PromptKDStudent

logger = logging.getLogger(__name__)

CTX_INIT = "a photo of a"
LOGIT_SCALE = math.log(100.0)  # OpenAI checkpoints store ln(100) as ``logit_scale``


@dataclass(frozen=True)
class DistillSetup:
    """What a benchmark run builds: architectures, prompt designs, precision and device."""

    teacher_arch: ClipArch
    student_arch: ClipArch
    device: torch.device
    prec: str = "bf16"
    teacher_depth: int = 9  # PromptSRC ViT-L/14 teacher: 9-deep prompts in both towers, 4+4 tokens
    student_depth: int = 9  # base2novel student YAML (cross: 3)
    n_ctx: int = 4
    kd_weight: float = 1000.0
    frozen_dtype: str = "fp32"  # "bf16": frozen towers stored in bf16 (saves autocast's weight casts);
    # "teacher-bf16": the teacher image tower's matmul weights only (TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS)

    @property
    def precision(self) -> Precision:
        return resolve_precision(self.prec, self.device)


@dataclass
class DistillModels:
    """Teacher (full PromptedCLIP: the upstream step needs its text tower), student, optimiser, stored ``W``."""

    setup: DistillSetup
    teacher: PromptedCLIP
    student: PromptKDStudent
    optimizer: torch.optim.Optimizer
    grad_scaler: torch.amp.GradScaler | None
    teacher_logit_scale: float
    n_classes: int
    text_tower_runs: int = 0
    text_once_s: float | None = None  # the one text-tower pass of our algorithm (library path)
    student_forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # torch.compile'd when requested
    teacher_image_forward: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.student_forward = self.student_forward or self.student
        self.teacher_image_forward = self.teacher_image_forward or self.teacher.image_encoder

    def compile(self, mode: str = "default") -> None:
        """``torch.compile`` the student and the teacher image tower (the per-step work of our algorithm);
        ``mode`` as ``TRAIN.COMPILE`` takes it (``reduce-overhead``: CUDA graphs)."""
        self.student_forward = torch.compile(self.student, mode=mode)
        self.teacher_image_forward = torch.compile(self.teacher.image_encoder, mode=mode)


def build_models(setup: DistillSetup, n_classes: int) -> DistillModels:
    """Random-weight teacher and student as ``PromptKD.build_model`` arranges them, then ``W`` computed once.

    Class names are ``"class {i}"`` (prompt ``"a photo of a class i."``, EOT at position 9-10; the text tower's
    cost in the upstream algorithm does not depend on them, since it always runs all 77 positions).
    """
    classnames = [f"class {i}" for i in range(n_classes)]
    teacher_design = ivlp_design(setup.teacher_depth, setup.teacher_depth, setup.n_ctx, setup.n_ctx)
    teacher = PromptedCLIP(build_clip(setup.teacher_arch, teacher_design), classnames, setup.n_ctx, CTX_INIT)
    teacher.requires_grad_(False)
    teacher.to(setup.device).eval()

    visual = build_visual(setup.student_arch, ivlp_design(setup.student_depth, 0, setup.n_ctx, 0))
    student = PromptKDStudent(visual, torch.tensor(LOGIT_SCALE), n_classes)
    student.materialize(setup.teacher_arch.embed_dim)  # W is filled by encode_class_features below
    freeze_by_name(student)
    student.to(setup.device).train()
    if setup.frozen_dtype == "bf16":
        _store_frozen_in_bf16(teacher, student, setup)
    elif setup.frozen_dtype == "teacher-bf16":  # what TRAINER.PROMPTKD.TEACHER_AUTOCAST_WEIGHTS does
        if setup.precision.autocast_dtype != torch.bfloat16:
            raise ValueError(f"--frozen-dtype teacher-bf16 needs bf16 autocast (--prec bf16), got --prec {setup.prec}")
        store_matmul_weights_in(teacher.image_encoder, torch.bfloat16)
    cfg = get_cfg_default()
    cfg.OPTIM.NAME, cfg.OPTIM.LR = "sgd", 0.005  # the PromptKD YAML (momentum 0.9, weight decay 5e-4 defaults)
    optimizer = build_optimizer(student, cfg.OPTIM)
    models = DistillModels(
        setup,
        teacher,
        student,
        optimizer,
        setup.precision.make_grad_scaler(),
        float(teacher.logit_scale.detach().exp()),
        n_classes,
    )
    synchronize(setup.device)
    start = time.perf_counter()
    with torch.no_grad():
        student.text_features.copy_(encode_class_features(models))  # once, stored in the student
    synchronize(setup.device)
    models.text_once_s = time.perf_counter() - start
    return models


def _store_frozen_in_bf16(teacher: nn.Module, student: nn.Module, setup: DistillSetup) -> None:
    if setup.precision.autocast_dtype != torch.bfloat16:
        raise ValueError(f"--frozen-dtype bf16 needs bf16 autocast (--prec bf16), got --prec {setup.prec}")
    teacher.image_encoder.to(torch.bfloat16)  # the text tower keeps fp32 (it runs once in our algorithm)
    for name, param in student.image_encoder.named_parameters():
        if not param.requires_grad and "ln_" not in name:
            param.data = param.data.to(torch.bfloat16)


def encode_class_features(models: DistillModels, limit: int | None = None, full_length: bool = False) -> torch.Tensor:
    """``W = normalize(text_tower(prompts))`` ``[C, E_t]`` under no_grad + autocast (a teacher text-tower pass).

    Default: the library path, ``PromptedCLIP.encode_text`` (``clip.model.encode_text_embeddings`` may cut the
    causal sequence after the last EOT: same features, less work). ``full_length``: run all ``context_length``
    (77) positions as upstream's text tower does; ``limit`` then encodes only the first
    classes (warm-up at a small size).
    """
    teacher = models.teacher
    models.text_tower_runs += 1
    with torch.no_grad(), models.setup.precision.autocast():
        if not full_length:
            return teacher.encode_text().float()
        prompts, tokenized = teacher.prompt_learner(), teacher.prompt_learner.tokenized_prompts
        if limit is not None:
            prompts, tokenized = prompts[:limit], tokenized[:limit]
        features = _full_length_text_tower(teacher.text_encoder, prompts, tokenized)
        return F.normalize(features, dim=-1).float()


def _full_length_text_tower(encoder: nn.Module, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
    """Upstream's text forward: positional embedding, transformer over all 77 positions, EOT row, LN, projection."""
    x = encoder.transformer(prompts + encoder.positional_embedding.to(prompts.dtype))  # (C, 77, D)
    x = x[torch.arange(x.shape[0], device=x.device), tokenized.argmax(dim=-1)]  # (C, D) at EOT
    return encoder.ln_final(x) @ encoder.text_projection


class PhaseClock:
    """Accumulates wall time per phase; syncs the device at phase ends only when ``split`` (else free-running)."""

    def __init__(self, device: torch.device, split: bool) -> None:
        self.device, self.split = device, split
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.split:
            yield
            return
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def train_step(
    models: DistillModels,
    image: torch.Tensor,
    upstream: bool,
    clock: PhaseClock,
    teacher_cache: TeacherCache | None = None,
    view: TeacherView | None = None,
) -> torch.Tensor:
    """One distillation step; ``upstream`` re-encodes every class through the teacher text tower first.

    With ``teacher_cache`` and ``view`` the teacher's features come from the cache as in a ``TEACHER_CACHE`` run
    of the trainer (computed and stored on a miss); the logits are computed from fp32 features either way.
    """
    precision = models.setup.precision
    if upstream:
        with clock.phase("teacher_text"):
            features = encode_class_features(models, full_length=True)
    else:
        features = models.student.text_features

    def teacher_features() -> torch.Tensor:
        with torch.inference_mode(), precision.autocast():
            return F.normalize(models.teacher_image_forward(image), dim=-1).float()

    with clock.phase("teacher_image"):
        if teacher_cache is not None and view is not None:
            t = teacher_cache.features(0, view, image, teacher_features)
        else:
            t = teacher_features()
        with torch.inference_mode(), precision.autocast():
            teacher_logits = models.teacher_logit_scale * t @ features.t().float()
        teacher_logits = teacher_logits.float().clone()
    with clock.phase("student_fwd_bwd"):
        with precision.autocast():
            student_logits = models.student_forward(image)
        loss = models.setup.kd_weight * kl_logit_loss(student_logits, teacher_logits, 1.0)
    return backward_and_step(models, loss, clock)


def backward_and_step(models: DistillModels, loss: torch.Tensor, clock: PhaseClock) -> torch.Tensor:
    """The student's backward (timed with its forward) and the optimiser step, through the GradScaler if any."""
    with clock.phase("student_fwd_bwd"):
        models.optimizer.zero_grad(set_to_none=True)
        (models.grad_scaler.scale(loss) if models.grad_scaler else loss).backward()
    with clock.phase("optimizer"):
        if models.grad_scaler:
            models.grad_scaler.step(models.optimizer)
            models.grad_scaler.update()
        else:
            models.optimizer.step()
    return loss.detach()


def step_flops(models: DistillModels, batch: int, upstream: bool) -> int:
    """Analytic FLOPs of one step (convention in bench/common.py)."""
    s, t = models.setup.student_arch, models.setup.teacher_arch
    n = models.setup.n_ctx
    flops = vit_forward_flops(t, batch, n) + vit_forward_flops(s, batch, n) + vit_backward_input_flops(s, batch, n)
    flops += projector_train_flops(s.embed_dim, t.embed_dim, batch) + 3 * 2 * batch * models.n_classes * t.embed_dim
    if upstream:
        flops += text_forward_flops(t, models.n_classes)
    return flops


@dataclass
class StepResult:
    """Measurements of one algorithm at one (classes, batch) configuration."""

    algorithm: str
    n_classes: int
    batch: int
    step_s: float | None = None
    phases_s: dict[str, float] = field(default_factory=dict)
    flops: int = 0
    peak_mib: float | None = None
    error: str | None = None
    runs_s: list[float] = field(default_factory=list)

    @property
    def images_per_s(self) -> float | None:
        return self.batch / self.step_s if self.step_s else None

    def tflops(self) -> float | None:
        return self.flops / self.step_s / 1e12 if self.step_s else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "classes": self.n_classes,
            "batch": self.batch,
            "step_s": self.step_s,
            "images_per_s": self.images_per_s,
            "phases_s": self.phases_s,
            "flops_per_step": self.flops,
            "achieved_tflops": self.tflops(),
            "peak_mib": self.peak_mib,
            "error": self.error,
            "runs_s": self.runs_s,
        }


def measure_steps(
    models: DistillModels, batch: int, iters: dict[str, int], warmup: int, split_iters: int
) -> list[StepResult]:
    """Median full-step time per algorithm (``iters`` maps "ours"/"upstream" to timed steps), the mean phase split
    and the peak memory; every algorithm is OOM-guarded on its own.

    The timed steps of the algorithms alternate, so a change of machine load (a shared CPU) hits both alike. On
    CUDA the timed steps run free (no sync inside a step), a separate synced run gives the split, and one step
    per algorithm after a reset of the allocator statistics gives its peak memory. On CPU syncs cost nothing,
    so the timed steps also give the split; the peak is the process's maximum RSS.
    """
    setup = models.setup
    device, on_cpu = setup.device, setup.device.type != "cuda"
    results = {
        name: StepResult(name, models.n_classes, batch, flops=step_flops(models, batch, name == "upstream"))
        for name in iters
    }
    res = setup.student_arch.image_resolution
    image = torch.randn(batch, 3, res, res, device=device)
    free_clock = PhaseClock(device, split=False)
    clocks = {name: PhaseClock(device, split=True) for name in iters}

    def guarded(name: str, clock: PhaseClock) -> float | None:
        """One timed step; None (and the error recorded) when it runs out of memory."""
        try:
            synchronize(device)
            start = time.perf_counter()
            train_step(models, image, name == "upstream", clock)
            synchronize(device)
            return time.perf_counter() - start
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            results[name].error = "OOM"
            models.optimizer.zero_grad(set_to_none=True)
            reset_peak_memory(device)
            return None

    if "upstream" in iters and warmup:  # warm the text tower at a small size; full-size passes are timed
        encode_class_features(models, limit=min(8, models.n_classes), full_length=True)
    for _ in range(warmup):
        if guarded("ours", free_clock) is None:
            return list(results.values())
    if not on_cpu:
        for name in iters:
            reset_peak_memory(device)
            if guarded(name, free_clock) is not None:
                results[name].peak_mib = peak_memory_mib(device)
    times: dict[str, list[float]] = {name: [] for name in iters}
    for i in range(max(iters.values())):
        for name, n in iters.items():
            if i < n and results[name].error is None:
                seconds = guarded(name, clocks[name] if on_cpu else free_clock)
                if seconds is not None:
                    times[name].append(seconds)
    if not on_cpu:
        for _ in range(split_iters):
            for name in iters:
                if results[name].error is None:
                    guarded(name, clocks[name])
    for name, result in results.items():
        if result.error is None and times[name]:
            runs = len(times[name]) if on_cpu else split_iters
            result.phases_s = {k: v / max(runs, 1) for k, v in clocks[name].seconds.items()}
            result.step_s = statistics.median(times[name])
            result.runs_s = times[name]
            if on_cpu:
                result.peak_mib = peak_memory_mib(device)
    return list(results.values())


def measure_eval_batch(models: DistillModels, batch: int, warmup: int, iters: int) -> dict[str, float]:
    """Seconds per evaluation batch: our student alone (stored W) and its parts that upstream adds."""
    setup, precision = models.setup, models.setup.precision
    res = setup.student_arch.image_resolution
    image = torch.randn(batch, 3, res, res, device=setup.device)
    models.student.eval()
    out: dict[str, float] = {}
    try:

        def student() -> torch.Tensor:
            with torch.inference_mode(), precision.autocast():
                return models.student(image)

        def teacher_image() -> torch.Tensor:
            with torch.inference_mode(), precision.autocast():
                return models.teacher.image_encoder(image)

        out["student_s"] = time_call(student, setup.device, warmup, iters)
        out["teacher_image_s"] = time_call(teacher_image, setup.device, warmup, iters)
    finally:
        models.student.train()
    return out


# ------------------------------------------------------------------------------------------------ trainer run
def run_trainer_once(teacher: str, student: str, n_classes: int, per_class: int, batch: int, workdir: str) -> dict:
    """Train the real PromptKD trainer for one epoch (+ its base/novel evaluation) on a synthetic dataset with
    random-weight CLIP files; returns the teacher text-tower passes its teachers counted while being built."""
    import train  # the CLI entry point, in-process
    from bench.synthetic_data import make_caltech101_layout

    root = make_caltech101_layout(f"{workdir}/data", n_classes, per_class, size=(64, 48))
    paths = {}
    for role, arch in (("teacher", get_arch(teacher)), ("student", get_arch(student))):
        state = {k: v.half() if v.is_floating_point() else v for k, v in build_clip(arch).state_dict().items()}
        paths[role] = f"{workdir}/{role}.pt"
        torch.save(state, paths[role])
        del state
    res = get_arch(student).image_resolution
    start = time.perf_counter()
    argv = [
        "--root", str(root), "--seed", "1", "--trainer", "PromptKD", "--output-dir", f"{workdir}/out",
        "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
        "--config-file", str(PROMPTKD_YAML),
        "MODEL.BACKBONE.NAME", paths["student"], "TRAINER.PROMPTKD.TEACHER_CLIP", paths["teacher"],
        "TRAINER.PROMPTKD.TEACHER_CKPT", "none", "TRAINER.PROMPTKD.PREC", "bf16", "DATASET.NUM_SHOTS", "0",
        "INPUT.SIZE", f"({res}, {res})", "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch), "DATALOADER.TEST.BATCH_SIZE", str(batch),
        "DATASET.CACHE_DIR", f"{workdir}/cache", "TRAIN.PRINT_FREQ", "1000",
    ]  # fmt: skip
    trainer = train.main(argv)
    runs = sum(teacher.text_tower_runs for teacher in trainer.teachers)
    return {
        "teacher": teacher,
        "student": student,
        "classes": n_classes,
        "train_images": n_classes * per_class,
        "steps": trainer.num_batches,
        "eval_images": len(trainer.test_loader.dataset),  # base and novel classes scored in one pass
        "teacher_text_tower_runs": runs,
        "wall_s": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", default="tiny-teacher" if tiny else "ViT-L/14", help="teacher architecture")
    p.add_argument("--student", default="tiny-student" if tiny else "ViT-B/16", help="student architecture")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[2] if tiny else [4])
    p.add_argument("--classes", type=int, nargs="+", default=[37, 1000])
    p.add_argument("--prec", default="bf16", help="fp32 | bf16 | fp16 | amp (dassl.engine.precision)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--warmup", type=int, default=3 if tiny else 1)
    p.add_argument("--iters", type=int, default=2 if tiny else 3, help="timed steps of our algorithm")
    p.add_argument("--upstream-iters", type=int, default=1, help="timed steps of the upstream algorithm")
    p.add_argument("--split-iters", type=int, default=2, help="GPU: extra synced steps for the phase split")
    p.add_argument("--frozen-dtype", default="fp32", choices=["fp32", "bf16", "teacher-bf16"])
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default="",
        choices=["default", "reduce-overhead", "max-autotune"],
        help="torch.compile the student and teacher image tower (optional mode; reduce-overhead = CUDA graphs)",
    )
    p.add_argument(
        "--attention",
        default="auto",
        choices=["auto", "math"],
        help="auto: PyTorch picks the fused SDPA kernel; math: the unfused reference (to measure the gain)",
    )
    p.add_argument("--no-upstream", action="store_true", help="measure only our algorithm")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation comparison")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    p.add_argument("--trainer-run", action="store_true", help="run the PromptKD trainer once; report its counter")
    p.add_argument("--trainer-per-class", type=int, default=2, help="--trainer-run: training images per class")
    return p.parse_args(argv)


def run_configuration(setup: DistillSetup, n_classes: int, args: argparse.Namespace) -> dict:
    """All batch sizes at one class count; each (algorithm, batch) is OOM-guarded on its own (in measure_steps)."""
    build_start = time.perf_counter()
    models = build_models(setup, n_classes)
    if args.compile:
        models.compile(args.compile)
    record: dict[str, Any] = {"classes": n_classes, "build_s": time.perf_counter() - build_start, "rows": []}
    for batch in args.batch_sizes:
        iters = {"ours": args.iters} if args.no_upstream else {"ours": args.iters, "upstream": args.upstream_iters}
        record["rows"] += measure_steps(models, batch, iters, args.warmup, args.split_iters)
        if not args.no_eval:
            try:
                record.setdefault("eval", {})[batch] = measure_eval_batch(models, batch, args.warmup, args.iters)
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                record.setdefault("eval", {})[batch] = {"error": "OOM"}
    record["text_tower_runs"] = models.text_tower_runs
    record["text_once_s"] = models.text_once_s
    del models
    reset_peak_memory(setup.device)
    return record


def report(records: list[dict], info: dict) -> str:
    """The tables: per-step results, the upstream ratio and the evaluation comparison."""
    peak = info.get("bf16_peak_tflops")
    headers = ["classes", "batch", "algorithm", "step ms", "images/s", "teacher img ms", "student f+b ms",
               "optim ms", "text tower ms", "GFLOP/step", "TFLOP/s", "MFU %", "peak MiB"]  # fmt: skip
    rows, ratio_rows, eval_rows = [], [], []
    for record in records:
        by_batch: dict[int, dict[str, StepResult]] = {}
        for r in record["rows"]:
            by_batch.setdefault(r.batch, {})[r.algorithm] = r
            ph = r.phases_s
            tf = r.tflops()
            rows.append([
                r.n_classes, r.batch, r.algorithm + (f" ({r.error})" if r.error else ""), _ms(r.step_s),
                r.images_per_s, _ms(ph.get("teacher_image")), _ms(ph.get("student_fwd_bwd")), _ms(ph.get("optimizer")),
                _ms(ph.get("teacher_text")), r.flops / 1e9, tf, 100 * tf / peak if tf and peak else None, r.peak_mib,
            ])  # fmt: skip
        for batch, algos in by_batch.items():
            ours, up = algos.get("ours"), algos.get("upstream")
            if ours and up and ours.step_s and up.step_s:
                text = up.phases_s.get("teacher_text")
                composed = (ours.step_s + text) / ours.step_s if text is not None else None
                ratio_rows.append([record["classes"], batch, _ms(ours.step_s), _ms(up.step_s), _ms(text),
                                   up.step_s / ours.step_s, composed])  # fmt: skip
            ev = record.get("eval", {}).get(batch)
            if ev and "error" not in ev and up and up.phases_s.get("teacher_text") is not None:
                text = up.phases_s["teacher_text"]
                upstream_eval = ev["student_s"] + ev["teacher_image_s"] + text
                eval_rows.append([record["classes"], batch, batch / ev["student_s"], batch / upstream_eval,
                                  upstream_eval / ev["student_s"]])  # fmt: skip
    out = [format_machine(info), "", "## Training step", format_table(headers, rows)]
    if ratio_rows:
        title = "## Upstream algorithm (text tower re-run every step) / ours, same models, same process"
        ratio_headers = ["classes", "batch", "ours ms", "upstream ms", "text tower ms", "upstream / ours",
                         "(ours + text tower) / ours"]  # fmt: skip
        out += ["", title, format_table(ratio_headers, ratio_rows)]
    if eval_rows:
        title = "## Evaluation per batch: ours = student + stored W; upstream = teacher image + text tower + student"
        eval_headers = ["classes", "batch", "ours images/s", "upstream images/s", "upstream / ours"]
        out += ["", title + " (parts measured above)", format_table(eval_headers, eval_rows)]
    once = ", ".join(f"C={r['classes']}: {_ms(r['text_once_s']):.1f} ms" for r in records)
    out += ["", f"our one teacher text-tower pass per run (library path, computed at build): {once}"]
    passes = ", ".join(f"C={r['classes']}: {r['text_tower_runs']}" for r in records)
    out += ["", f"teacher text-tower passes per configuration (1 at build + warm-up + upstream steps): {passes}"]
    return "\n".join(out)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)  # PyTorch's default matmul precision, as the trainer (no TF32)
    info = machine_info(device)
    if args.trainer_run:
        with tempfile.TemporaryDirectory(prefix="promptkd-bench-") as workdir:
            n_classes = args.classes[0]
            trainer = run_trainer_once(args.teacher, args.student, n_classes, args.trainer_per_class,
                                       args.batch_sizes[0], workdir)  # fmt: skip
        print(format_machine(info))
        print(format_table(list(trainer), [list(trainer.values())]))
        if args.json:
            write_bench_json(args.json, {"machine": info, "trainer_run": trainer})
        return [trainer]
    setup = DistillSetup(get_arch(args.teacher), get_arch(args.student), device, args.prec,
                         frozen_dtype=args.frozen_dtype)  # fmt: skip
    options = f"frozen weights {args.frozen_dtype}, compile {args.compile}, attention {args.attention}"
    print(f"# distill: teacher {args.teacher}, student {args.student}, {setup.precision.description}, {options}")
    records = []
    attention = sdpa_kernel(SDPBackend.MATH) if args.attention == "math" else contextlib.nullcontext()
    for n_classes in args.classes:
        torch.manual_seed(0)
        with attention:
            records.append(run_configuration(setup, n_classes, args))
        # Each class count prints its tables at once (a run stopped later keeps them) and updates the JSON.
        print(report(records[-1:], info), flush=True)
        print(f"# done: {n_classes} classes", file=sys.stderr, flush=True)
        if args.json:
            write_bench_json(args.json, _json_payload(records, info, setup, args))
    if len(records) > 1:
        print("\n# all class counts\n" + report(records, info), flush=True)
    return records


def _json_payload(records: list[dict], info: dict, setup: DistillSetup, args: argparse.Namespace) -> dict:
    return {
        "machine": info,
        "setup": {"teacher": args.teacher, "student": args.student, "prec": args.prec,
                  "precision": setup.precision.description, "frozen_dtype": args.frozen_dtype,
                  "compile": args.compile, "attention": args.attention},
        "configurations": [
            {**{k: v for k, v in r.items() if k != "rows"}, "rows": [x.as_dict() for x in r["rows"]]} for r in records
        ],
    }  # fmt: skip


if __name__ == "__main__":
    main()
