"""The package layering of docs/design.md, checked on the source: a lower layer never imports a higher one."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages of this repository it must not import
FORBIDDEN = {
    "clip": {"dassl", "trainers", "datasets", "reporting", "demo", "bench"},
    "dassl": {"clip", "trainers", "datasets", "reporting", "demo", "bench"},
    "datasets": {"clip", "trainers", "reporting", "demo", "bench"},
    "trainers": {"datasets", "reporting", "demo", "bench"},  # data reaches trainers through dassl.data
}


def _imported_top_level(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package}/ has no Python files"
    offenders = {str(path.relative_to(ROOT)): sorted(_imported_top_level(path) & FORBIDDEN[package]) for path in files}
    offenders = {path: bad for path, bad in offenders.items() if bad}
    assert not offenders, f"{package}/ imports packages above it: {offenders}"


def test_datasets_never_read_trainer_config() -> None:
    """Readers must not branch on the trainer; only the trainers know about them."""
    hits = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "datasets").rglob("*.py"))
        if "cfg.TRAINER" in path.read_text(encoding="utf-8")
    ]
    assert not hits, f"datasets read cfg.TRAINER.*: {hits}"


def test_library_code_has_no_hard_coded_device_or_half_casts() -> None:
    """Calls of ``.cuda()`` / ``.half()`` (docstrings that mention them are fine)."""
    hits = []
    for package in ("clip", "dassl", "trainers", "datasets"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"cuda", "half"}
                ):
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not hits, f"use the trainer's device and torch.autocast instead: {hits}"
