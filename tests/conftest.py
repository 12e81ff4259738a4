"""Fixtures shared by several test modules (pytest finds them here; test modules never import fixtures)."""

from __future__ import annotations

import pytest

from tests.helpers.dataset_fixtures import make_caltech101
from tests.helpers.tiny_clip import save_tiny_clip
from tests.helpers.trainer_runs import NUM_CLASSES, STUDENT_CLIP, TEACHER_CLIP


@pytest.fixture(scope="session")
def trainer_env(tmp_path_factory) -> dict[str, str]:
    """Dataset root, cache dir and the two tiny CLIP files (OpenAI state-dict layout), shared by a session."""
    root = tmp_path_factory.mktemp("trainer_env")
    make_caltech101(root / "data", num_classes=NUM_CLASSES, per_class=6, size=32)
    save_tiny_clip(root / "student.pt", **STUDENT_CLIP)
    save_tiny_clip(root / "teacher.pt", **TEACHER_CLIP)
    return {
        "root": str(root / "data"),
        "cache": str(root / "cache"),
        "student": str(root / "student.pt"),
        "teacher": str(root / "teacher.pt"),
    }


@pytest.fixture
def kd_step_losses(monkeypatch) -> list[float]:
    """The loss of every PromptKD training step (the value the engine logs), appended while the test runs."""
    from trainers.promptkd import PromptKD

    losses: list[float] = []
    original = PromptKD.forward_backward

    def recording(self, batch):
        out = original(self, batch)
        losses.append(out["loss"])
        return out

    monkeypatch.setattr(PromptKD, "forward_backward", recording)
    return losses
