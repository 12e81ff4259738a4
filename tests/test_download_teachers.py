"""``python -m trainers.download_teachers``: placement in PromptKD's default layout, the checks before a teacher
is accepted, resume, idempotence, the teachers the Drive folder lacks, offline messages.

The Drive folder is replaced by `FakeTransport` serving zip archives of synthetic teacher checkpoints: engine
checkpoint dicts whose ``state_dict`` holds the prompt tensors of a PromptSRC ViT-L/14 teacher (the frozen CLIP
weights are irrelevant to the checks and left out).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.fake_transport import FakeTransport, zip_tree
from trainers.download_teachers import TEACHERS, check_teacher, main, resolve_teachers, teacher_target


def teacher_state(classes: int, depth: int = 9, n_ctx: int = 4, text_width: int = 768, vision_width: int = 1024):
    gen = torch.Generator().manual_seed(classes)
    state = {
        "logit_scale": torch.tensor(4.6052),
        "prompt_learner.ctx": torch.randn(n_ctx, text_width, generator=gen).half(),
        "prompt_learner.token_prefix": torch.zeros(classes, 1, text_width, dtype=torch.half),
        "image_encoder.VPT": torch.randn(n_ctx, vision_width, generator=gen),
    }
    for i in range(1, depth):
        state[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_ctx, vision_width, generator=gen)
        state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] = torch.randn(n_ctx, text_width, generator=gen)
    return state


def save_teacher(path: Path, classes: int, **design) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": teacher_state(classes, **design), "epoch": 20, "optimizer": {}, "scheduler": {}}, path)
    return path


def teacher_zip(tmp: Path, folder: str, classes: int, checkpoint: str = "model-best.pth.tar", **design) -> Path:
    """``<folder>.zip`` holding ``<folder>/VLPromptLearner/<checkpoint>`` (the release's README layout)."""
    sub = "VLPromptLearner_large" if folder == "ImageNet-xd" else "VLPromptLearner"
    save_teacher(tmp / "src" / folder / sub / checkpoint, classes, **design)
    return zip_tree(tmp / "src" / folder, tmp / f"{folder}.zip")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("release")
    return {
        "EuroSAT.zip": teacher_zip(tmp, "EuroSAT", 5).read_bytes(),
        "StandfordCars.zip": teacher_zip(tmp, "StandfordCars", 98).read_bytes(),  # the release's misspelling
        "ImageNet-xd.zip": teacher_zip(tmp, "ImageNet-xd", 1000, "model.pth.tar-20").read_bytes(),
    }


def _run(capsys, *argv, transport=None) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv], transport=transport)
    captured = capsys.readouterr()
    err = "\n".join(line for line in captured.err.splitlines() if not line.startswith("unpack "))
    return rc, captured.out, err


def test_teachers_land_where_promptkd_reads_them_by_default(release, tmp_path, capsys, monkeypatch):
    fake = FakeTransport(release)
    rc, out, err = _run(
        capsys, "eurosat", "StanfordCars", "ImageNet-xd", "--dest", tmp_path / "teacher_model", transport=fake
    )
    assert rc == 0, err
    assert "EuroSAT: installed" in out and "PromptSRC ViT-L/14, depth 9/9, 4+4 tokens, 5 classes" in out
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "teacher_model/EuroSAT/VLPromptLearner/model-best.pth.tar",
        "teacher_model/ImageNet-xd/VLPromptLearner_large/model.pth.tar-20",
        "teacher_model/StanfordCars/VLPromptLearner/model-best.pth.tar",
    ]
    # PromptKD's default lookup (relative to the working directory) finds them
    from dassl.config import apply_cfg_defaults, get_cfg_default
    from trainers.common import resolve_teacher_checkpoint
    from trainers.promptkd import default_teacher_checkpoint

    monkeypatch.chdir(tmp_path)
    for name, modal in (("EuroSAT", "base2novel"), ("StanfordCars", "base2novel"), ("Caltech101", "cross")):
        cfg = apply_cfg_defaults(get_cfg_default())
        cfg.DATASET.NAME, cfg.TRAINER.MODAL = name, modal
        path = resolve_teacher_checkpoint("", default_teacher_checkpoint(cfg), "TRAINER.PROMPTKD.TEACHER_CKPT")
        assert check_teacher(Path(path), TEACHERS["ImageNet-xd" if modal == "cross" else name])


def test_a_second_run_only_checks(release, tmp_path, capsys):
    dest = tmp_path / "teacher_model"
    assert _run(capsys, "eurosat", "--dest", dest, transport=FakeTransport(release))[0] == 0
    again = FakeTransport(release)
    rc, out, _ = _run(capsys, "eurosat", "--dest", dest, transport=again)
    assert rc == 0 and "EuroSAT: present" in out
    assert again.listings == 0 and again.fetches == []


@pytest.mark.parametrize(
    "design, message",
    [
        ({"depth": 3}, "has prompt design vision/text depth 3/3 with 4+4 tokens; the released EuroSAT teacher has 9/9"),
        (
            {"text_width": 512, "vision_width": 768},
            "text/vision prompt widths 512/768; a ViT-L/14 teacher has 768/1024",
        ),
        ({"classes": 10}, "was trained on 10 classes; the EuroSAT teacher has 5 (is it another dataset's teacher?)"),
    ],
)
def test_a_teacher_with_another_design_is_refused_and_leaves_nothing(tmp_path, capsys, design, message):
    classes = design.pop("classes", 5)
    archive = teacher_zip(tmp_path, "EuroSAT", classes, **design)
    dest = tmp_path / "teacher_model"
    rc, _, err = _run(capsys, "eurosat", "--dest", dest, transport=FakeTransport.from_paths({"EuroSAT.zip": archive}))
    assert rc == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "it was not installed" in errors[0]
    assert not dest.exists() or not any(dest.rglob("*"))


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path, capsys):
    bogus = tmp_path / "src" / "EuroSAT" / "VLPromptLearner" / "model-best.pth.tar"
    bogus.parent.mkdir(parents=True)
    bogus.write_bytes(b"<html>quota exceeded</html>")
    archive = zip_tree(tmp_path / "src" / "EuroSAT", tmp_path / "EuroSAT.zip")
    rc, _, err = _run(
        capsys, "eurosat", "--dest", tmp_path / "t", transport=FakeTransport.from_paths({"EuroSAT.zip": archive})
    )
    assert rc == 1 and "is not a readable checkpoint" in err
    assert not (tmp_path / "t" / "EuroSAT").exists()


def test_bare_checkpoints_in_teacher_folders_are_placed_too(tmp_path, capsys):
    ckpt = save_teacher(tmp_path / "x.pth", 19)
    fake = FakeTransport({"OxfordPets/VLPromptLearner/model-best.pth.tar": ckpt.read_bytes(), "README.txt": b"hi"})
    rc, _, err = _run(capsys, "oxford_pets", "--dest", tmp_path / "t", transport=fake)
    assert rc == 0, err
    assert (tmp_path / "t" / "OxfordPets" / "VLPromptLearner" / "model-best.pth.tar").read_bytes() == ckpt.read_bytes()
    assert [name for name, _ in fake.fetches] == ["OxfordPets/VLPromptLearner/model-best.pth.tar"]


def test_an_interrupted_transfer_resumes(release, tmp_path, capsys):
    fake = FakeTransport(release, drop_after={"EuroSAT.zip": 4096})
    dest = tmp_path / "teacher_model"
    rc, _, err = _run(capsys, "eurosat", "--dest", dest, transport=fake)
    assert rc == 1 and "connection reset" in err and not teacher_target(TEACHERS["EuroSAT"], dest).exists()
    assert _run(capsys, "eurosat", "--dest", dest, transport=fake)[0] == 0
    assert fake.fetches == [("EuroSAT.zip", 0), ("EuroSAT.zip", 4096)]
    assert teacher_target(TEACHERS["EuroSAT"], dest).is_file() and not (dest / ".promptkd-download").exists()


def test_teachers_missing_from_the_folder_point_to_the_other_sources(release, tmp_path, capsys):
    rc, _, err = _run(capsys, "caltech101", "--dest", tmp_path / "t", transport=FakeTransport(release))
    assert rc == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("Caltech101: not in https://example.invalid/mirror (the authors keep only some teachers")
    assert "mjf4" in line and "terabox" in line.lower()
    assert str(tmp_path / "t" / "Caltech101" / "VLPromptLearner" / "model-best.pth.tar") in line


def test_offline_is_one_line_with_the_manual_route(tmp_path, capsys, monkeypatch):
    import gdown
    import requests

    def unreachable(**kw):
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download_folder", unreachable)
    rc, _, err = _run(capsys, "eurosat", "--dest", tmp_path / "t")
    assert rc == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "error: listing https://drive.google.com/drive/folders/1OdQ9WauZmYAzVSUTTw7tIKKChyECIS5B failed: "
        "unreachable (ConnectionError: Failed to resolve 'drive.google.com')"
    )
    assert "download the teachers from" in line and "mjf4" in line and "DATASETS.md" in line
    assert not (tmp_path / "t").exists()


def test_dry_run_lists_and_fetches_nothing(release, tmp_path, capsys):
    fake = FakeTransport(release)
    dest = tmp_path / "t"
    rc, out, _ = _run(capsys, "eurosat", "caltech101", "--dest", dest, "--dry-run", transport=fake)
    assert rc == 0 and fake.fetches == [] and not dest.exists()
    lines = out.strip().splitlines()
    assert (
        f"EuroSAT.zip: https://example.invalid/mirror/EuroSAT.zip -> {dest}/EuroSAT/VLPromptLearner/model-best.pth.tar"
        in lines
    )
    assert any(line.startswith("Caltech101: not in https://example.invalid/mirror") for line in lines)


def test_names():
    assert [t.name for t in resolve_teachers(["dtd", "FGVCaircraft", "oxford_flowers", "imagenet_xd"])] == [
        "DescribableTextures",
        "FGVCAircraft",
        "OxfordFlowers",
        "ImageNet-xd",
    ]
    assert len(resolve_teachers([])) == 12
