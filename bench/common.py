"""Shared pieces of the benchmarks: model sizes, analytic FLOP counts, timing, peak memory, output.

FLOP convention (used for "achieved FLOP/s" and MFU): 2 FLOPs per multiply-accumulate of every matrix product
(linear layers, patch embedding, attention scores and attention-weighted values); element-wise work (LayerNorm,
softmax, GELU, residual adds) is not counted, as in the usual transformer MFU accounting. The attention core is
counted in full also for the causal text tower. Backward passes through the frozen towers count only the
activation gradients (the weights are frozen, so autograd runs no weight-gradient products): one product per
forward linear product, two per forward attention product; the image patch embedding needs no gradient at all
(the input image does not require one). The trainable projector counts forward + input and weight gradients.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from clip.model import CLIP, VisionTransformer, heads_for_width
from dassl.utils import git_commit as dassl_git_commit
from dassl.utils.atomic import write_json_atomic

__all__ = [
    "ARCHS",
    "PROMPTKD_YAML",
    "REPO",
    "ClipArch",
    "available_memory_mib",
    "bench_is_tiny",
    "build_clip",
    "build_visual",
    "device_peak_tflops",
    "format_table",
    "get_arch",
    "interleaved_times",
    "is_out_of_memory",
    "machine_info",
    "peak_memory_mib",
    "projector_train_flops",
    "reset_peak_memory",
    "resolve_device",
    "step_peak_mib",
    "synchronize",
    "text_forward_flops",
    "time_call",
    "vit_backward_input_flops",
    "vit_forward_flops",
    "write_bench_json",
]

REPO = Path(__file__).resolve().parents[1]
PROMPTKD_YAML = REPO / "configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml"  # the base2novel student
TINY_ENV = "PROMPTKD_BENCH_TINY"
OPENAI_VOCAB = 49408
OPENAI_CONTEXT = 77


@dataclass(frozen=True)
class ClipArch:
    """The hyper-parameters of ``clip.model.CLIP(...)`` for one model."""

    name: str
    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    text_width: int
    text_layers: int
    context_length: int = OPENAI_CONTEXT
    vocab_size: int = OPENAI_VOCAB

    @property
    def vision_heads(self) -> int:
        return heads_for_width(self.vision_width)

    @property
    def text_heads(self) -> int:
        """Not stored in a state dict either: ``clip.loading`` infers it the same way."""
        return heads_for_width(self.text_width)

    @property
    def image_tokens(self) -> int:
        """Class token + patches (without prompt tokens)."""
        return (self.image_resolution // self.vision_patch_size) ** 2 + 1


ARCHS: dict[str, ClipArch] = {
    arch.name: arch
    for arch in (
        ClipArch("ViT-L/14", 768, 224, 24, 1024, 14, 768, 12),
        ClipArch("ViT-B/16", 512, 224, 12, 768, 16, 512, 12),
        ClipArch("ViT-B/32", 512, 224, 12, 768, 32, 512, 12),
        # Tiny stand-ins for smoke tests (widths below 64 use 16 channels per head, clip.model.heads_for_width).
        ClipArch("tiny-teacher", 48, 32, 2, 64, 8, 48, 2),
        ClipArch("tiny-student", 32, 32, 2, 32, 8, 32, 1),
    )
}


def get_arch(name: str) -> ClipArch:
    """The architecture called ``name``; unknown names raise with the list of known ones."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHS)}")
    return ARCHS[name]


def bench_is_tiny() -> bool:
    """True when ``PROMPTKD_BENCH_TINY=1``: every benchmark shrinks to seconds-long sizes (smoke tests, CPU checks)."""
    return os.environ.get(TINY_ENV, "") not in ("", "0")


def build_clip(arch: ClipArch, design: Any = None) -> CLIP:
    """A randomly initialised CLIP in OpenAI's layout (what ``clip.build_model`` builds from a real file)."""
    return CLIP(
        arch.embed_dim,
        arch.image_resolution,
        arch.vision_layers,
        arch.vision_width,
        arch.vision_patch_size,
        arch.context_length,
        arch.vocab_size,
        arch.text_width,
        arch.text_heads,
        arch.text_layers,
        design,
    )


def build_visual(arch: ClipArch, design: Any = None) -> VisionTransformer:
    """The image tower alone (``clip.build_visual``'s result), randomly initialised."""
    return VisionTransformer(
        arch.image_resolution,
        arch.vision_patch_size,
        arch.vision_width,
        arch.vision_layers,
        arch.vision_heads,
        arch.embed_dim,
        design,
    )


# ------------------------------------------------------------------------------------------------ FLOP counts
def _layer_linear_flops(tokens: int, width: int) -> int:
    """QKV (3D²) + output projection (D²) + MLP (8D²) per token, 2 FLOPs per MAC."""
    return 2 * tokens * 12 * width * width


def _layer_attention_flops(tokens: int, width: int) -> int:
    """Scores ``Q Kᵀ`` and ``P V``: 2 · L² · D MACs."""
    return 2 * 2 * tokens * tokens * width


def vit_forward_flops(arch: ClipArch, batch: int, prompt_tokens: int = 0) -> int:
    """Forward FLOPs of the image tower on ``batch`` images with ``prompt_tokens`` appended (IVLP)."""
    grid2 = (arch.image_resolution // arch.vision_patch_size) ** 2
    tokens = arch.image_tokens + prompt_tokens
    width = arch.vision_width
    patch = 2 * grid2 * width * 3 * arch.vision_patch_size**2
    layers = arch.vision_layers * (_layer_linear_flops(tokens, width) + _layer_attention_flops(tokens, width))
    return batch * (patch + layers + 2 * width * arch.embed_dim)


def vit_backward_input_flops(arch: ClipArch, batch: int, prompt_tokens: int = 0) -> int:
    """Backward FLOPs of a frozen image tower whose layer-0 prompts need gradients (activation gradients only)."""
    tokens = arch.image_tokens + prompt_tokens
    width = arch.vision_width
    layers = arch.vision_layers * (_layer_linear_flops(tokens, width) + 2 * _layer_attention_flops(tokens, width))
    return batch * (layers + 2 * width * arch.embed_dim)


def text_forward_flops(arch: ClipArch, n_classes: int) -> int:
    """Forward FLOPs of the text tower on ``n_classes`` prompts of ``context_length`` tokens (projection at EOT)."""
    tokens, width = arch.context_length, arch.text_width
    layers = arch.text_layers * (_layer_linear_flops(tokens, width) + _layer_attention_flops(tokens, width))
    return n_classes * (layers + 2 * width * arch.embed_dim)


def projector_train_flops(in_dim: int, out_dim: int, batch: int) -> int:
    """The two 1x1 convolutions of ``StudentProjector``: forward, input gradient and weight gradient (3x)."""
    return 3 * 2 * batch * (in_dim * out_dim + out_dim * out_dim)


# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; matched by substring of the device name,
# most specific first.
DEVICE_PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
)


def _cpu_model_name() -> str:
    """The CPU's model name as ``lscpu`` shows it (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    """``(device name, dense bf16 peak TFLOP/s or None when unknown / CPU)``."""
    if device.type != "cuda":
        return _cpu_model_name(), None
    name = torch.cuda.get_device_name(device)
    for key, peak in DEVICE_PEAK_BF16_TFLOPS:
        if key in name:
            return name, peak
    return name, None


# ------------------------------------------------------------------------------------------------ timing, memory
def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; a CUDA request without CUDA raises with what to do."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name!r} but torch.cuda.is_available() is False; use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int = 1, iters: int = 3) -> float:
    """Median seconds per call: ``fn`` runs ``warmup`` times untimed, then ``iters`` times, each timed with a device
    sync on both ends."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(
    steps: Mapping[str, Callable[[], Any]], device: torch.device, warmup: int = 1, iters: int = 3
) -> dict[str, list[float]]:
    """Seconds of each timed call per step name, the steps alternating (A, B, A, B, ...) after ``warmup``
    untimed calls of each: on a machine whose load changes from minute to minute only steps timed in turn in
    one process can be compared (take the median of each list)."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, fn in steps.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def _status_kib(field: str, path: str = "/proc/self/status") -> int:
    with open(path, encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def step_peak_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory one call of ``fn`` adds to what is resident before it, in MiB.

    CUDA: the allocator's peak during the call minus the memory allocated before it. CPU (Linux): the lifetime
    peak (``ru_maxrss``) cannot see a step that peaks below an earlier peak (model building), and freed heap pages
    are reused without growing the resident set, so the freed pages are first returned to the kernel
    (``malloc_trim``), the kernel's high-water mark is reset to the current resident set (``clear_refs`` 5), and
    the result is the high-water mark after the call minus the resident set before it. None where the kernel
    offers no such reset.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        before = _status_kib("VmRSS")
    except OSError:
        return None
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def available_memory_mib(device: torch.device) -> float | None:
    """Memory a new allocation can still get, in MiB: free CUDA memory, or the kernel's ``MemAvailable`` on CPU
    (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 2**20
    try:
        return _status_kib("MemAvailable", "/proc/meminfo") / 1024
    except (OSError, StopIteration):
        return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory since the last reset. CPU: the process's maximum resident set size
    (never reset, so on CPU it is the high-water mark of the whole process)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def is_out_of_memory(error: BaseException) -> bool:
    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in message or "not enough memory" in message


# ------------------------------------------------------------------------------------------------ output
def git_commit() -> str:
    return dassl_git_commit(REPO, short=True)


def machine_info(device: torch.device) -> dict[str, Any]:
    """What a result row needs to be comparable: machine, load, software, date, commit."""
    name, peak = device_peak_tflops(device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "device": str(device),
        "device_name": name,
        "bf16_peak_tflops": peak,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(load, 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
    }


def format_machine(info: dict[str, Any]) -> str:
    peak = f", bf16 peak {info['bf16_peak_tflops']:.0f} TFLOP/s" if info.get("bf16_peak_tflops") else ""
    return (
        f"# {info['device_name']} ({info['device']}{peak}); {info['cpu_count']} CPUs, {info['torch_threads']} torch "
        f"threads, load {info['load_average_1min']}; torch {info['torch']}; {info['date_utc']} UTC; commit "
        f"{info['commit']}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (pastes straight into bench/README.md)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def write_bench_json(path: str | os.PathLike, payload: Any) -> None:
    """The benchmark's ``--json`` file: indented, non-JSON values as strings, written atomically."""
    write_json_atomic(payload, path, indent=2, default=str)
