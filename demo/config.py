"""The demo's preset files (``configs/demo/*.yaml``): generator and pre-training sizes, the overrides of the
real method YAMLs (restricted to sizes, epochs and paths), and the one named demo-only method setting.

A preset has four sections and an optional fifth. ``GENERATOR`` and ``PRETRAIN`` size the dataset and the two
tiny CLIPs; ``TEACHER`` and ``STUDENT`` are config fragments that the demo passes to ``train.py`` as command-line
opts after the real PromptSRC / PromptKD YAMLs. Keys outside :data:`ALLOWED_RUN_KEYS` are refused, so these
sections can only shrink a run, never change the method (learning rates, losses, prompt design stay the
published ones). ``DEMO_ONLY`` holds the settings a tiny run needs that are not the paper's recipe (only
``KD_WEIGHT``); the demo prints them at start, next to the published value they replace.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dassl.errors import ConfigError, InputFileError

from .pretrain import CLIPSpec, PretrainSettings

__all__ = [
    "ALLOWED_RUN_KEYS",
    "CONFIG_DIR",
    "DEMO_ONLY_KEYS",
    "DemoPreset",
    "flatten_overrides",
    "load_preset",
    "preset_path",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs" / "demo"

# Sizes, epoch counts and logging frequency; the paths are set by the pipeline itself.
ALLOWED_RUN_KEYS = frozenset(
    {
        "DATASET.NUM_SHOTS",
        "INPUT.SIZE",
        "OPTIM.MAX_EPOCH",
        "DATALOADER.NUM_WORKERS",
        "DATALOADER.TRAIN_X.BATCH_SIZE",
        "DATALOADER.TEST.BATCH_SIZE",
        "TRAIN.PRINT_FREQ",
    }
)
SECTIONS = ("GENERATOR", "PRETRAIN", "TEACHER", "STUDENT", "DEMO_ONLY")
DEMO_ONLY_KEYS = frozenset({"KD_WEIGHT"})

# Keys the pipeline reads back from a run section (the teacher's output path and checkpoint epoch), checked
# when the preset is loaded so that a preset without them fails before anything is written.
REQUIRED_RUN_KEYS = {"TEACHER": ("DATASET.NUM_SHOTS", "OPTIM.MAX_EPOCH")}


@dataclass(frozen=True)
class DemoPreset:
    """A parsed preset: ``teacher_opts`` / ``student_opts`` are ``train.py`` opts (``KEY VALUE ...``)."""

    name: str
    path: Path
    generator_seed: int
    image_size: int
    per_class: tuple[int, int, int]
    pretrain: PretrainSettings
    teacher_opts: tuple[str, ...]
    student_opts: tuple[str, ...]
    kd_weight: float | None = None  # DEMO_ONLY.KD_WEIGHT; None = the published per-dataset value

    def with_data_seed(self, seed: int) -> DemoPreset:
        """The same preset with ``seed`` for the generator and the CLIP pre-training (robustness sweeps)."""
        return dataclasses.replace(self, generator_seed=seed, pretrain=dataclasses.replace(self.pretrain, seed=seed))

    def opt(self, run: str, key: str) -> str:
        """The value a run section sets for ``key`` (as passed to train.py)."""
        opts = self.teacher_opts if run == "TEACHER" else self.student_opts
        pairs = dict(zip(opts[::2], opts[1::2], strict=False))
        if key not in pairs:
            raise ConfigError(f"section {run} does not set {key}", self.path, f"add '{key} <value>' to the section")
        return pairs[key]


def preset_path(name_or_path: str) -> Path:
    """``default`` -> ``configs/demo/default.yaml``; an existing file path is taken as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise InputFileError(f"No demo preset {name_or_path!r}: known presets {known} (in {CONFIG_DIR}) or a .yaml path")


def flatten_overrides(tree: dict, source: str, prefix: str = "") -> list[str]:
    """``{"OPTIM": {"MAX_EPOCH": 4}}`` -> ``["OPTIM.MAX_EPOCH", "4"]``, refusing keys outside the allow-list."""
    opts: list[str] = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            opts += flatten_overrides(value, source, f"{full}.")
            continue
        if full not in ALLOWED_RUN_KEYS:
            raise ConfigError(
                f"{source}: {full} may not be overridden by the demo (only sizes, epochs and paths: "
                f"{sorted(ALLOWED_RUN_KEYS)}). Change the method's own YAML under configs/trainers/ instead."
            )
        if isinstance(value, (list, tuple)):
            value = tuple(value)
        opts += [full, str(value)]
    return opts


def _section(data: dict, name: str, source: Path) -> dict:
    value = data.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: section {name} is missing or not a mapping (sections: {list(SECTIONS)})")
    return value


def _spec(values: Any, key: str, source: Path) -> CLIPSpec:
    if not (isinstance(values, list) and len(values) == 6 and all(isinstance(v, int) and v > 0 for v in values)):
        raise ConfigError(
            f"{source}: PRETRAIN.{key} must be 6 positive integers [embed_dim, vision_width, vision_layers, "
            f"vision_patch_size, text_width, text_layers], got {values!r}"
        )
    return CLIPSpec(*values)


def _size_tuple(value: Any) -> tuple[int, int]:
    """``INPUT.SIZE`` as YAML gives it: the string ``"(32, 32)"`` or a list."""
    parsed = ast.literal_eval(value) if isinstance(value, str) else value
    return tuple(int(v) for v in parsed)


def load_preset(name_or_path: str = "default") -> DemoPreset:
    """Read and check a preset (see the module docstring)."""
    path = preset_path(name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; allowed: {list(SECTIONS)}")
    gen, pre = _section(data, "GENERATOR", path), _section(data, "PRETRAIN", path)
    demo_only = data.get("DEMO_ONLY") or {}
    if not isinstance(demo_only, dict) or set(demo_only) - DEMO_ONLY_KEYS:
        raise ConfigError(
            f"{path}: DEMO_ONLY may only set {sorted(DEMO_ONLY_KEYS)}, got {demo_only!r}; other method settings "
            "stay the published ones"
        )
    kd_weight = demo_only.get("KD_WEIGHT")
    if kd_weight is not None and not (isinstance(kd_weight, (int, float)) and kd_weight > 0):
        raise ConfigError(f"{path}: DEMO_ONLY.KD_WEIGHT must be a positive number, got {kd_weight!r}")
    per_class = tuple(int(v) for v in gen.get("PER_CLASS", (24, 4, 16)))
    if len(per_class) != 3 or min(per_class) < 1:
        raise ConfigError(f"{path}: GENERATOR.PER_CLASS must be [train, val, test] >= 1, got {per_class}")
    image_size = int(gen.get("IMAGE_SIZE", 32))
    settings = PretrainSettings(
        teacher=_spec(pre.get("TEACHER"), "TEACHER", path),
        student=_spec(pre.get("STUDENT"), "STUDENT", path),
        image_size=image_size,
        seed=int(pre.get("SEED", 0)),
        pool_per_class=int(pre.get("POOL_PER_CLASS", 200)),
        steps=int(pre.get("STEPS", 600)),
        batch_size=int(pre.get("BATCH_SIZE", 128)),
        lr=float(pre.get("LR", 2e-3)),
    )
    teacher = flatten_overrides(_section(data, "TEACHER", path), f"{path} TEACHER")
    student = flatten_overrides(_section(data, "STUDENT", path), f"{path} STUDENT")
    for run, opts in (("TEACHER", teacher), ("STUDENT", student)):
        pairs = dict(zip(opts[::2], opts[1::2], strict=False))
        for key in REQUIRED_RUN_KEYS.get(run, ()):
            if key not in pairs:
                raise ConfigError(f"section {run} does not set {key}", path, f"add {key} to the {run} section")
        size = _size_tuple(pairs.get("INPUT.SIZE", "(224, 224)"))
        if size != (image_size, image_size):
            raise ConfigError(
                f"{path}: {run}.INPUT.SIZE is {size} but GENERATOR.IMAGE_SIZE is {image_size}; the tiny CLIPs "
                f"are built for {image_size} px, so set INPUT.SIZE ({image_size}, {image_size})"
            )
    return DemoPreset(
        name=path.stem,
        path=path,
        generator_seed=int(gen.get("SEED", 0)),
        image_size=image_size,
        per_class=per_class,  # type: ignore[arg-type]
        pretrain=settings,
        teacher_opts=tuple(teacher),
        student_opts=tuple(student),
        kd_weight=None if kd_weight is None else float(kd_weight),
    )
