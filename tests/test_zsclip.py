"""Zero-shot CLIP: eval-only through train.py equals a direct computation with the clip API;
the ensemble of ZeroshotCLIP2; immutable template lists."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clip
from tests.helpers.trainer_runs import last_accuracy, make_tiny_setup, read_results, run_train
from trainers.templates import CUSTOM_TEMPLATES, IMAGENET_TEMPLATES, IMAGENET_TEMPLATES_SELECT, custom_template


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_setup(tmp_path_factory.mktemp("zsclip"), classes=6, per_class=5)


def _direct_text_features(model, classnames, templates) -> torch.Tensor:
    with torch.no_grad():
        per_template = [
            F.normalize(model.encode_text(clip.tokenize([t.format(c.replace("_", " ")) for c in classnames])), dim=-1)
            for t in templates
        ]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


def test_zeroshot_eval_only_equals_direct_clip_computation(tiny) -> None:
    out = tiny.tmp / "zs"
    trainer = run_train(tiny.args("ZeroshotCLIP", "CoOp/vit_b16", out, epochs=None, eval_only=True))
    records = [r for r in read_results(out) if r["phase"] == "eval_only"]
    assert len(records) == 1 and records[0]["trainer"] == "ZeroshotCLIP"

    # the same numbers from the public clip API: build, preprocess, encode, cosine x logit scale
    model = clip.build_model(torch.load(tiny.clip_file, weights_only=True))
    classnames = trainer.dm.dataset.classnames
    text = _direct_text_features(model, classnames, ["a photo of a {}."])
    torch.testing.assert_close(trainer.text_features, text)
    fixture = tiny.fixture
    preprocess = clip.image_transform(32)
    images = torch.stack([preprocess(Image.open(fixture.dataset_dir / p)) for p, _, _ in fixture.split["test"]])
    labels = torch.tensor([label for _, label, _ in fixture.split["test"]])
    with torch.no_grad():
        logits = model.logit_scale.exp() * F.normalize(model.encode_image(images), dim=-1) @ text.t()
    correct = int((logits.argmax(-1) == labels).sum())
    metrics = records[0]["metrics"]
    assert metrics["total"] == len(labels) and metrics["correct"] == correct
    assert metrics["accuracy"] == pytest.approx(100.0 * correct / len(labels))


def test_zeroshot_clip2_ensembles_templates_without_mutating_them(tiny) -> None:
    before = (tuple(IMAGENET_TEMPLATES_SELECT), len(IMAGENET_TEMPLATES))
    for run in ("ens1", "ens2"):  # twice: upstream appended the custom template to the shared list each time
        trainer = run_train(tiny.args("ZeroshotCLIP2", "CoOp/vit_b16", tiny.tmp / run, epochs=None, eval_only=True))
    assert (tuple(IMAGENET_TEMPLATES_SELECT), len(IMAGENET_TEMPLATES)) == before
    assert trainer.templates() == [*IMAGENET_TEMPLATES_SELECT, "a photo of a {}."]
    model = clip.build_model(torch.load(tiny.clip_file, weights_only=True))
    expected = _direct_text_features(model, trainer.dm.dataset.classnames, trainer.templates())
    torch.testing.assert_close(trainer.text_features, expected)
    assert 0.0 <= last_accuracy(tiny.tmp / "ens2", "eval_only") <= 100.0


def test_zeroshot_refuses_training(tiny) -> None:
    with pytest.raises(RuntimeError, match="has nothing to train: run train.py with --eval-only"):
        run_train(tiny.args("ZeroshotCLIP", "CoOp/vit_b16", tiny.tmp / "train", epochs=None))


def test_templates_are_immutable_and_complete() -> None:
    assert len(IMAGENET_TEMPLATES) == 60 and len(set(IMAGENET_TEMPLATES)) == 60
    assert IMAGENET_TEMPLATES[0] == "a photo of a {}." and IMAGENET_TEMPLATES[-1] == "itap of the {}."
    assert IMAGENET_TEMPLATES_SELECT[0] == "itap of a {}." and len(IMAGENET_TEMPLATES_SELECT) == 7
    assert len(CUSTOM_TEMPLATES) == 16 and custom_template("DescribableTextures") == "{} texture."
    assert custom_template("Folder") == "a photo of a {}."  # your own images (DATASET.NAME Folder)
    with pytest.raises(TypeError):
        CUSTOM_TEMPLATES["Mine"] = "{}"  # type: ignore[index]
    with pytest.raises(KeyError, match="Did you mean 'OxfordPets'"):
        custom_template("OxfordPet")
