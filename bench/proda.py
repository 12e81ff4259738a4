"""A ProDA training step against a CoOp training step on the same frozen CLIP (issue #13).

ProDA encodes ``C*M + K`` prompts with gradient per step (M of its K prompts for every class, plus the K
class-agnostic prompts of the diversity term) where CoOp encodes C, so its text work is about M times CoOp's;
the frozen image tower costs both the same. This builds one random-weight CLIP (OpenAI layout, ViT-B/16 by
default) and, on it, ProDA and CoOp exactly as their trainers do (``ProDACLIP`` / ``CoOpCLIP``, the optimizer
of the ProDA YAML over the prompt parameters, the engine's autocast), then alternates their timed steps in one
process (ProDA, CoOp, ProDA, CoOp, ...) so that a change of machine load hits both alike, and prints the median
step of each and their ratio. The batch, K, M, context length, diversity weight, precision (``fp16``, which
runs fp32 math on CPU) and optimizer come from ``configs/trainers/ProDA/vit_b16_c16_ep100_batch4.yaml``; CoOp
gets the same batch, context length, precision and optimizer. Each method's
peak memory is the growth of one extra step over what was resident before it (CUDA: allocated tensors; CPU:
the resident set's high-water mark, see ``bench.common.step_peak_mib``).

Class names are ``"class {i}"``: the text tower runs up to the last EOT token, so longer names cost both
methods proportionally more.

    python -m bench.proda --classes 100 1000 --iters 3
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.common import (
    REPO,
    available_memory_mib,
    bench_is_tiny,
    build_clip,
    format_machine,
    format_table,
    get_arch,
    interleaved_times,
    is_out_of_memory,
    machine_info,
    resolve_device,
    step_peak_mib,
    write_bench_json,
)
from dassl.config import apply_cfg_defaults, get_cfg_default
from dassl.engine.precision import Precision, resolve_precision
from dassl.optim import build_optimizer
from trainers.coop import CoOpCLIP, CoOpPromptLearner
from trainers.proda import ProDACLIP, ProDAPromptLearner

PRODA_YAML = REPO / "configs/trainers/ProDA/vit_b16_c16_ep100_batch4.yaml"
METHODS = ("ProDA", "CoOp")


@dataclass(frozen=True)
class ProDARecipe:
    """What the ProDA YAML fixes for one step (CoOp gets the same batch, context length and optimizer)."""

    batch: int
    n_ctx: int
    n_prompt: int
    prompt_batch_size: int
    diversity_weight: float
    prec: str
    optim: Any  # the OPTIM node of the YAML

    @classmethod
    def from_yaml(cls, path: Path = PRODA_YAML) -> ProDARecipe:
        cfg = apply_cfg_defaults(get_cfg_default())
        cfg.merge_from_file(str(path))
        node = cfg.TRAINER.PRODA
        return cls(cfg.DATALOADER.TRAIN_X.BATCH_SIZE, node.N_CTX, node.N_PROMPT, node.PROMPT_BATCH_SIZE,
                   float(node.DIVERSITY_WEIGHT), node.PREC, cfg.OPTIM)  # fmt: skip


def build_steps(
    clip_model: torch.nn.Module,
    n_classes: int,
    recipe: ProDARecipe,
    precision: Precision,
    device: torch.device,
    batch: int,
) -> tuple[dict[str, torch.nn.Module], dict[str, Callable[[], float]]]:
    """The two models and one training step of each, as ``ProDA.forward_backward`` and CoOp's trainer run it;
    both share the frozen towers of ``clip_model``. Each step returns its loss."""
    classnames = [f"class {i}" for i in range(n_classes)]
    proda = ProDACLIP(
        clip_model,
        ProDAPromptLearner(classnames, clip_model, recipe.n_ctx, recipe.n_prompt, recipe.prompt_batch_size, seed=0),
    )
    coop = CoOpCLIP(clip_model, CoOpPromptLearner(classnames, clip_model, recipe.n_ctx))
    models = {"ProDA": proda.to(device), "CoOp": coop.to(device)}
    optimizers = {}
    for name, model in models.items():
        for param_name, param in model.named_parameters():
            param.requires_grad_(param_name.startswith("prompt_learner."))
        model.train()
        optimizers[name] = build_optimizer(model.prompt_learner, recipe.optim)
    res = clip_model.visual.input_resolution
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, res, res, generator=generator).to(device)
    label = torch.randint(0, n_classes, (batch,), generator=generator).to(device)

    def proda_step() -> float:
        indices = proda.prompt_learner.sampler.next_indices()
        with precision.autocast():
            terms = proda(image, label=label, prompt_indices=indices, diversity_weight=recipe.diversity_weight)
        return _update(optimizers["ProDA"], terms["loss"])

    def coop_step() -> float:
        with precision.autocast():
            loss = F.cross_entropy(coop(image).float(), label)
        return _update(optimizers["CoOp"], loss)

    return models, {"ProDA": proda_step, "CoOp": coop_step}


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def text_sequences(method: str, n_classes: int, recipe: ProDARecipe) -> int:
    """Prompts a step encodes with gradient: ProDA ``C*M`` (+ ``K`` with the diversity term), CoOp ``C``."""
    if method == "CoOp":
        return n_classes
    return n_classes * recipe.prompt_batch_size + (recipe.n_prompt if recipe.diversity_weight > 0 else 0)


def measure(
    clip_model: torch.nn.Module,
    n_classes: int,
    recipe: ProDARecipe,
    precision: Precision,
    device: torch.device,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Interleaved timed steps of both methods at one class count, then one extra step each for its peak."""
    _, steps = build_steps(clip_model, n_classes, recipe, precision, device, args.batch)
    record: dict[str, Any] = {"classes": n_classes, "error": None}
    try:
        times = interleaved_times(steps, device, warmup=args.warmup, iters=args.iters)
        peaks = {name: step_peak_mib(step, device) for name, step in steps.items()} if args.memory else {}
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        record["error"] = "OOM"
        return record
    record["methods"] = {
        name: {"step_s": statistics.median(times[name]), "runs_s": times[name], "peak_mib": peaks.get(name),
               "text_sequences": text_sequences(name, n_classes, recipe)}
        for name in METHODS
    }  # fmt: skip
    proda, coop = record["methods"]["ProDA"], record["methods"]["CoOp"]
    record["time_ratio"] = proda["step_s"] / coop["step_s"]
    record["sequence_ratio"] = proda["text_sequences"] / coop["text_sequences"]
    record["memory_ratio"] = proda["peak_mib"] / coop["peak_mib"] if args.memory and coop["peak_mib"] else None
    return record


def estimated_peak_mib(records: Sequence[dict[str, Any]], n_classes: int, recipe: ProDARecipe) -> float | None:
    """ProDA's peak at ``n_classes`` from the largest measured one, proportional to the text sequences (the
    activations of the text tower dominate and grow linearly with them; the constant part makes this an
    over-estimate). None before any measurement."""
    measured = [r for r in records if r.get("methods") and r["methods"]["ProDA"]["peak_mib"]]
    if not measured:
        return None
    largest = max(measured, key=lambda r: r["classes"])["methods"]["ProDA"]
    return largest["peak_mib"] / largest["text_sequences"] * text_sequences("ProDA", n_classes, recipe)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    tiny = bench_is_tiny()
    recipe = ProDARecipe.from_yaml()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="tiny-student" if tiny else "ViT-B/16", help="CLIP architecture")
    p.add_argument("--classes", type=int, nargs="+", default=[5, 40] if tiny else [100, 1000])
    p.add_argument("--batch", type=int, default=recipe.batch, help="images per step (the ProDA YAML's batch)")
    p.add_argument("--prec", default=recipe.prec,
                   help="fp32 | bf16 | fp16 | amp (dassl.engine.precision); default: the YAML's, which runs fp32 "
                        "math on CPU")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per method")
    p.add_argument("--iters", type=int, default=3, help="timed steps per method, interleaved")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory step")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    return p.parse_args(argv)


def report(records: list[dict[str, Any]], recipe: ProDARecipe, args: argparse.Namespace) -> str:
    headers = ["classes", "method", "text sequences", "step s", "images/s", "peak MiB", "runs s",
               "ProDA / CoOp time", "sequences", "peak"]  # fmt: skip
    rows = []
    for record in records:
        if record["error"]:
            estimate = record.get("estimated_peak_mib")
            rows.append([record["classes"], "ProDA", text_sequences("ProDA", record["classes"], recipe),
                         record["error"], None, estimate, None, None, None, None])  # fmt: skip
            continue
        for name in METHODS:
            m = record["methods"][name]
            ratios = [record["time_ratio"], record["sequence_ratio"], record["memory_ratio"]]
            rows.append([record["classes"], name, m["text_sequences"], m["step_s"], args.batch / m["step_s"],
                         m["peak_mib"], " ".join(f"{t:.3g}" for t in m["runs_s"]),
                         *(ratios if name == "ProDA" else [None, None, None])])  # fmt: skip
    what = (f"{args.arch}, batch {args.batch}, K={recipe.n_prompt} prompts, M={recipe.prompt_batch_size} per step, "
            f"{recipe.n_ctx} context tokens, diversity {recipe.diversity_weight}")  # fmt: skip
    return f"## Training step, ProDA vs CoOp, interleaved medians ({what})\n" + format_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.prec, device)
    recipe = ProDARecipe.from_yaml()
    torch.manual_seed(0)
    clip_model = build_clip(get_arch(args.arch)).to(device)
    info = machine_info(device)
    print(format_machine(info))
    print(f"# proda: {precision.description}, warmup {args.warmup}, {args.iters} timed steps per method", flush=True)
    records = []
    for n_classes in args.classes:
        needed, available = estimated_peak_mib(records, n_classes, recipe), available_memory_mib(device)
        if needed is not None and available is not None and needed > available:
            # a CPU step that does not fit is not an exception but the kernel's OOM killer (for others too)
            error = f"skipped: ProDA needs ~{needed / 1024:.1f} GiB (scaled), {available / 1024:.1f} GiB available"
            records.append({"classes": n_classes, "error": error, "estimated_peak_mib": needed})
        else:
            records.append(measure(clip_model, n_classes, recipe, precision, device, args))
        print("\n" + report(records[-1:], recipe, args), flush=True)  # a run stopped later keeps its tables
        if args.json:
            write_bench_json(args.json, {"machine": info, "args": vars(args), "records": records})
    if len(records) > 1:
        print("\n# all class counts\n" + report(records, recipe, args))
    return records


if __name__ == "__main__":
    main()
