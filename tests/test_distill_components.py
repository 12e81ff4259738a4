"""Shared distillation pieces in trainers.common: base-to-novel evaluation by logit columns, the frozen teacher,
the teacher mixture, and every student design of PromptKD trained end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dassl.config import get_cfg_default
from dassl.errors import ConfigError
from tests.helpers.trainer_runs import NUM_CLASSES, read_results, run_env_train
from trainers.common import ClassSubsetEvaluator, FrozenTeacher, TeacherEnsemble, base_novel_subsets, mixture_target
from trainers.promptkd import STUDENT_DESIGNS, PromptKD

CONFIG = "vit_b16_c2_ep20_batch8_4+4ctx"
STEPS = 20  # one batch of 8 per epoch on the 5-class world


def test_base_novel_subsets_split_the_labels_like_subsample_classes():
    assert base_novel_subsets(5) == {"base": [0, 1, 2], "new": [3, 4]}
    assert base_novel_subsets(4) == {"base": [0, 1], "new": [2, 3]}


def test_subset_scores_equal_a_classifier_built_for_the_subset_alone():
    torch.manual_seed(0)
    cfg = get_cfg_default()
    logits, labels = torch.randn(40, 6), torch.randint(0, 6, (40,))
    subsets = {"odd": [5, 1, 3], "low": [0, 1]}
    evaluator = ClassSubsetEvaluator(cfg, {i: f"c{i}" for i in range(6)}, subsets)
    for rows in torch.arange(40).split(7):  # batches mixing the subsets' images
        evaluator.process(logits[rows], labels[rows])
    for name, classes in subsets.items():
        keep = torch.isin(labels, torch.tensor(classes))
        predicted = torch.tensor(classes)[logits[keep][:, classes].argmax(-1)]
        results = evaluator.evaluate(name, "test")
        assert evaluator.evaluators[name].counts() == {
            "total": int(keep.sum()),
            "correct": int((predicted == labels[keep]).sum()),
        }
        assert results["accuracy"] == pytest.approx(100.0 * (predicted == labels[keep]).float().mean().item())


@pytest.mark.parametrize("labels", [[], [0, 0], [6]])
def test_a_bad_subset_is_refused(labels):
    with pytest.raises(ValueError, match="distinct labels in"):
        ClassSubsetEvaluator(get_cfg_default(), {i: str(i) for i in range(6)}, {"s": labels})


def test_the_mixture_is_a_distribution_and_a_one_teacher_mixture_is_that_teacher():
    torch.manual_seed(0)
    logits = [torch.randn(6, 5) * 10, torch.randn(6, 5) * 10, torch.randn(6, 5)]
    weights = (0.2, 0.5, 0.3)
    target = mixture_target(logits, weights, temperature=2.0)
    assert bool((target >= 0).all())
    torch.testing.assert_close(target.sum(-1), torch.ones(6), rtol=0, atol=1e-6)
    expected = sum(w * F.softmax(z / 2.0, dim=-1) for z, w in zip(logits, weights, strict=True))
    torch.testing.assert_close(target, expected, rtol=1e-6, atol=1e-7)
    alone = F.softmax(logits[1] / 2.0, dim=-1)
    assert torch.equal(mixture_target([logits[0], logits[1]], (0.0, 1.0), 2.0), alone)  # weight 0: not evaluated
    assert torch.equal(mixture_target([logits[1], logits[1].clone()], (0.7, 0.3), 2.0), alone)  # identical teachers


def test_teachers_of_different_class_lists_are_refused_naming_both():
    def teacher(names: list[str], source: str) -> FrozenTeacher:
        return FrozenTeacher(nn.Identity(), 100.0, torch.eye(len(names), 4), names, source, runs=1)

    with pytest.raises(ConfigError, match=r"label 1 is 'b' vs 'c'\) \(teacher 1, A / teacher 2, B\)"):
        TeacherEnsemble([teacher(["a", "b"], "A"), teacher(["a", "c"], "B")])
    with pytest.raises(ConfigError, match=r"2 vs 3 classes\) \(teacher 1, A / teacher 3, C\)"):
        TeacherEnsemble([teacher(["a", "b"], "A"), teacher(["a", "b"], "B"), teacher(["a", "b", "c"], "C")])
    assert len(TeacherEnsemble([teacher(["a", "b"], "A"), teacher(["a", "b"], "B")], (2.0, 1.0))) == 2


# ------------------------------------------------------------------------------------------------ student designs
@pytest.fixture(scope="module")
def name_led_student(trainer_env, tmp_path_factory) -> str:
    """The session's student CLIP with token embeddings x10.

    At CLIP's 0.02 scale a random 2-layer text tower gives all class prompts nearly the same features (cosine
    0.94-0.998), so a CoOp context, which only steers the text side, could not separate the classes at all.
    """
    state = torch.load(trainer_env["student"], weights_only=True)
    state["token_embedding.weight"] = state["token_embedding.weight"] * 10
    path = tmp_path_factory.mktemp("name_led") / "student.pt"
    torch.save(state, path)
    return str(path)


def fit_teacher_to_the_labels(trainer: PromptKD) -> float:
    """Make the zero-shot tiny teacher an accurate one; returns its test accuracy.

    Its class features become the least-squares map from its (normalised) image features of labelled training views
    to one-hot labels, rows normalised. The labels are read here, by the test; the distillation never reads them.
    """
    teacher = trainer.teachers.first
    features, labels = [], []
    for _ in range(4):  # four augmented passes over the training images
        for batch in trainer.train_loader_x:
            features.append(teacher.image_features(batch["img"].to(trainer.device)))
            labels.append(batch["label"].to(trainer.device))
    onehot = F.one_hot(torch.cat(labels), NUM_CLASSES).float()
    fitted = F.normalize(torch.linalg.lstsq(torch.cat(features), onehot).solution.t(), dim=-1)
    teacher.class_features.copy_(fitted)
    if design_of(trainer) == "vpt":  # the paper's student classifies with the first teacher's class features
        trainer.prompt_model.text_features.copy_(fitted)
    correct = total = 0
    for batch in trainer.test_loader:
        image, label = trainer.parse_batch_test(batch)
        correct += int((teacher.logits(image).argmax(-1) == label).sum())
        total += len(label)
    return correct / total


def design_of(trainer: PromptKD) -> str:
    return trainer.cfg.TRAINER.PROMPTKD.STUDENT_DESIGN


def count_text_tower_runs(trainer: PromptKD) -> list[int]:
    runs: list[int] = []
    trainer.prompt_model.prompted.text_encoder.register_forward_hook(lambda *_: runs.append(1))
    return runs


@pytest.mark.parametrize("design", STUDENT_DESIGNS)
def test_every_student_design_learns_base_and_novel_classes_from_the_teacher(
    design, trainer_env, name_led_student, tmp_path
):
    opts = (
        "DATASET.NUM_SHOTS", "0", "MODEL.BACKBONE.NAME", name_led_student,
        "TRAINER.PROMPTKD.TEACHER_CLIP", trainer_env["teacher"], "TRAINER.PROMPTKD.TEACHER_CKPT", "none",
        "TRAINER.PROMPTKD.STUDENT_DESIGN", design, "TRAINER.PROMPTKD.PREC", "fp32",
        "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "1", "TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT", "1",
        "OPTIM.MAX_EPOCH", str(STEPS), "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.1",
    )  # fmt: skip
    out = tmp_path / "kd"
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, out, *opts, flags=("--no-train",))
    assert fit_teacher_to_the_labels(trainer) >= 0.9
    trainer.train()

    base, new, summary = read_results(out)[-3:]
    assert (base["classes"], new["classes"], summary["event"]) == ("base", "new", "summary")
    assert base["metrics"]["accuracy"] > 100 / 3 and new["metrics"]["accuracy"] > 100 / 2  # chance: 3 and 2 classes
    if design == "vpt":
        return

    # a text-prompted student: every checkpoint stores the class features of its prompts ...
    flags = ("--eval-only", "--model-dir", str(out), "--load-epoch", str(STEPS))
    loaded = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "eval", *opts, flags=flags)
    student = loaded.prompt_model
    with torch.no_grad():
        assert torch.equal(student.class_features, student.encode_text().float())  # == a fresh encode after loading
    torch.testing.assert_close(student.class_features, trainer.prompt_model.class_features, rtol=0, atol=0)
    assert [r["metrics"] for r in read_results(tmp_path / "eval")[:2]] == [base["metrics"], new["metrics"]]
    # ... so evaluating a loaded student runs no text tower
    runs = count_text_tower_runs(loaded)
    loaded.test()
    assert runs == []
    with torch.no_grad():
        student.encode_text()
    assert runs == [1]  # the counter sees the text tower when it does run
