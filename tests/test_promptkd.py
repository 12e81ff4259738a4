"""PromptKD: teacher from our PromptSRC checkpoints and official-layout files, text features
computed once, KD loss, base/novel/HM reporting, student-only evaluation, checkpoints, real-size counts, teacher
ensembles that equal one teacher bit for bit and mix different teachers by their weights."""

from __future__ import annotations

import math
import re
import shutil

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.model import CLIP
from tests.helpers.trainer_runs import read_results, run_env_train
from trainers.common import freeze_by_name, ivlp_design, load_clip_state_dict, prompt_texts
from trainers.promptkd import PromptKDStudent

CONFIG = "vit_b16_c2_ep20_batch8_4+4ctx"
CROSS_CONFIG = "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"
STUDENT_KEYS = {
    "image_encoder.VPT",
    "image_encoder.transformer.resblocks.1.VPT_shallow",
    "VPT_image_trans.conv1.0.weight",
    "VPT_image_trans.conv1.0.bias",
    "VPT_image_trans.conv1.1.weight",
    "VPT_image_trans.conv1.1.bias",
    "VPT_image_trans.conv1.1.running_mean",
    "VPT_image_trans.conv1.1.running_var",
    "VPT_image_trans.conv1.1.num_batches_tracked",
    "VPT_image_trans.conv1.3.weight",
    "VPT_image_trans.conv1.3.bias",
    "text_features",
}


@pytest.fixture(scope="module")
def teacher_run(trainer_env, tmp_path_factory):
    """A ViT-L/14-style teacher trained by our PromptSRC on the base classes (the README's stage 1)."""
    out = tmp_path_factory.mktemp("teacher")
    opts = (
        "MODEL.BACKBONE.NAME",
        trainer_env["teacher"],
        "DATASET.NUM_SHOTS",
        "4",
        "DATASET.SUBSAMPLE_CLASSES",
        "base",
    )
    trainer = run_env_train(trainer_env, "PromptSRC", "vit_l14_c2_ep20_batch8_4+4ctx", out, *opts)
    with torch.no_grad():
        base_text_features = trainer.model.encode_text()  # (3 base classes, 48)
    return {"dir": out, "base_text_features": base_text_features, "model": trainer.model}


def kd_opts(env: dict, teacher_ckpt: str, *more: str) -> tuple[str, ...]:
    return ("DATASET.NUM_SHOTS", "0", "TRAINER.PROMPTKD.TEACHER_CLIP", env["teacher"],
            "TRAINER.PROMPTKD.TEACHER_CKPT", teacher_ckpt, *more)  # fmt: skip


@pytest.fixture(scope="module")
def distilled(trainer_env, teacher_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("kd")
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, out, *kd_opts(trainer_env, str(teacher_run["dir"])))
    return {"dir": out, "trainer": trainer, "text_tower_runs": [t.text_tower_runs for t in trainer.teachers]}


def test_end_to_end_distillation_reports_base_novel_hm(distilled, teacher_run):
    out, trainer = distilled["dir"], distilled["trainer"]
    assert distilled["text_tower_runs"] == [1]  # computed once; the teacher keeps no text tower to run again

    records = read_results(out)
    base, new, summary = records[-3:]
    assert (base["classes"], new["classes"], summary["event"]) == ("base", "new", "summary")
    assert base["metrics"]["total"] == 6 and new["metrics"]["total"] == 4  # 3 base / 2 novel classes x 2 images
    b, n = base["metrics"]["accuracy"], new["metrics"]["accuracy"]
    assert summary["base"] == b and summary["novel"] == n
    assert summary["hm"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)
    log = (out / "log.txt").read_text()
    tail = log[log.index("Finish training") :]
    assert f"* base_accuracy: {b:.1f}%" in tail and f"* novel_accuracy: {n:.1f}%" in tail
    assert f"* HM: {summary['hm']:.1f}%" in tail
    assert tail.rindex("* accuracy:") > tail.index("* base_accuracy") - 200  # last accuracy block = novel (upstream)
    assert "Model selection: last_step" in log

    # stored text features: the teacher's normalised class features, rows of the base classes equal PromptSRC's own
    features = trainer.model.text_features.cpu()
    assert features.shape == (5, 48)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(features[:3], teacher_run["base_text_features"].cpu(), rtol=1e-5, atol=1e-5)
    (teacher,) = trainer.teachers
    assert {name.split(".")[0] for name, _ in teacher.named_parameters()} == {"image_encoder"}  # text tower released
    torch.testing.assert_close(teacher.class_features.cpu(), features, rtol=0, atol=0)  # W stored in the student

    ckpt = torch.load(out / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)
    assert set(ckpt["state_dict"]) == STUDENT_KEYS  # trainable tensors, BN statistics, stored features only
    torch.testing.assert_close(ckpt["state_dict"]["text_features"].cpu(), features)


def test_eval_only_needs_no_teacher(trainer_env, distilled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./teacher_model here, and the teacher CLIP path does not exist either
    opts = ("DATASET.NUM_SHOTS", "0", "TRAINER.PROMPTKD.TEACHER_CLIP", str(tmp_path / "missing.pt"))
    flags = ("--eval-only", "--model-dir", str(distilled["dir"]), "--load-epoch", "2")
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "eval", *opts, flags=flags)
    assert trainer.teachers is None  # no teacher built, so no text-tower pass
    trained = read_results(distilled["dir"])[-3:]
    evaluated = read_results(tmp_path / "eval")
    assert [r["phase"] for r in evaluated] == ["eval_only"] * 3
    assert [r["metrics"] for r in evaluated[:2]] == [r["metrics"] for r in trained[:2]]
    assert evaluated[2]["hm"] == trained[2]["hm"]
    with pytest.raises(FileNotFoundError, match="teacher"):  # training without a teacher stops clearly
        trainer.train()


def _official_teacher_file(teacher_run, path, drop=()):
    """A teacher checkpoint as upstream writes it: full PromptSRC state (fp16), token buffers, ZS encoder."""
    model = teacher_run["model"]
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("gpa.")}
    state["prompt_learner.token_prefix"] = model.prompt_learner.token_prefix  # 3 training classes, not 5
    state["prompt_learner.token_suffix"] = model.prompt_learner.token_suffix
    assert any(k.startswith("prompt_learner.ZS_image_encoder.") for k in state)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if k not in drop}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None, "val_result": 91.0}, path)
    return state


def test_official_layout_teacher_loads_from_the_default_location(
    trainer_env,
    teacher_run,
    distilled,
    tmp_path,
    monkeypatch,
):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "teacher_model" / "Caltech101" / "VLPromptLearner"
    state = _official_teacher_file(teacher_run, folder / "model-best.pth.tar")
    no_train = ("--no-train",)
    trainer = run_env_train(
        trainer_env, "PromptKD", CONFIG, tmp_path / "out", *kd_opts(trainer_env, ""), flags=no_train
    )
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "teacher_model/Caltech101/VLPromptLearner/model-best.pth.tar" in log
    assert "vision depth 3 x 4 tokens, text depth 3 x 4 tokens" in log  # design read from the keys
    assert state["prompt_learner.ctx"].dtype == torch.float16
    # fp16 prompts from the file -> features close to those of the fp32 teacher used before
    expected = distilled["trainer"].model.text_features
    torch.testing.assert_close(trainer.model.text_features.cpu(), expected.cpu(), atol=2e-3, rtol=0)

    # any of model-best.pth.tar / model.pth.tar-N in a folder
    (folder / "model-best.pth.tar").rename(folder / "model.pth.tar-20")
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "out2", *kd_opts(trainer_env, str(folder)),
                        flags=no_train)  # fmt: skip
    torch.testing.assert_close(trainer.model.text_features.cpu(), expected.cpu(), atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("image_encoder.transformer.resblocks.1.VPT_shallow", "missing keys.*image_encoder.transformer.resblocks.1"),
        ("prompt_learner.ctx", "no 'prompt_learner.ctx'"),
        ("image_encoder.VPT", "no 'image_encoder.VPT'"),
    ],
)
def test_teacher_with_a_missing_prompt_key_fails_clearly(trainer_env, teacher_run, tmp_path, missing, message):
    path = tmp_path / "teacher.pth.tar"
    _official_teacher_file(teacher_run, path, drop=(missing,))
    with pytest.raises(KeyError, match=message):
        run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "out", *kd_opts(trainer_env, str(path)),
                  flags=("--no-train",))  # fmt: skip


def test_kd_step_uses_the_formula_and_learns_the_teacher(trainer_env, teacher_run, tmp_path):
    opts = kd_opts(trainer_env, str(teacher_run["dir"]), "TRAINER.PROMPTKD.KD_WEIGHT", "3.0",
                   "TRAINER.PROMPTKD.TEMPERATURE", "2.0", "TRAINER.PROMPTKD.PREC", "fp32")  # fmt: skip
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "out", *opts, flags=("--no-train",))
    batch = next(iter(trainer.train_loader_x))
    image = batch["img"].to(trainer.device)
    batch["label"] = torch.full_like(batch["label"], -100)  # labels are never read
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10**6  # no scheduler step inside the loop
    for group in trainer.optim.param_groups:
        group["lr"] = 0.05

    def logits():
        with torch.no_grad():
            return trainer.model(image), trainer.teachers.first.logits(image)

    student, teacher = logits()
    total = 0.0
    for s_row, t_row in zip((student / 2).tolist(), (teacher / 2).tolist(), strict=True):
        log_zs = math.log(sum(math.exp(v) for v in s_row))
        log_zt = math.log(sum(math.exp(v) for v in t_row))
        total += sum(math.exp(t - log_zt) * ((t - log_zt) - (s - log_zs)) for s, t in zip(s_row, t_row, strict=True))
    expected = 3.0 * 4.0 * total / student.numel()
    agreement_before = (student.argmax(-1) == teacher.argmax(-1)).float().mean().item()
    losses = [trainer.forward_backward(batch)["loss"]]
    assert losses[0] == pytest.approx(expected, rel=1e-4)

    for name, param in trainer.model.named_parameters():  # gradients reach exactly the trainable tensors
        assert (param.grad is not None) == param.requires_grad, name
    assert {n for n, p in trainer.model.named_parameters() if p.requires_grad} == {
        k for k in STUDENT_KEYS if "running" not in k and "num_batches" not in k and k != "text_features"
    }

    losses += [trainer.forward_backward(batch)["loss"] for _ in range(15)]
    student, teacher = logits()
    agreement_after = (student.argmax(-1) == teacher.argmax(-1)).float().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert agreement_after > agreement_before and agreement_after >= 0.75


def test_zero_shot_teacher_is_a_config_choice(trainer_env, tmp_path):
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "out", *kd_opts(trainer_env, "none"),
                        flags=("--no-train",))  # fmt: skip
    plain = clip.build_model(load_clip_state_dict(trainer.cfg, trainer_env["teacher"]))
    texts = prompt_texts("a photo of a", trainer.dm.dataset.classnames)
    with torch.no_grad():
        expected = F.normalize(plain.encode_text(clip.tokenize(texts)), dim=-1)
    torch.testing.assert_close(trainer.model.text_features.cpu(), expected, rtol=1e-5, atol=1e-5)


def test_cross_modal_in_bf16_evaluates_all_classes(trainer_env, teacher_run, tmp_path):
    opts = kd_opts(trainer_env, str(teacher_run["dir"]), "TRAINER.MODAL", "cross", "TRAINER.PROMPTKD.PREC", "bf16",
                   "OPTIM.MAX_EPOCH", "1")  # fmt: skip
    run_env_train(trainer_env, "PromptKD", CROSS_CONFIG, tmp_path / "out", *opts)
    records = read_results(tmp_path / "out")
    assert [(r["classes"], r["metrics"]["total"]) for r in records] == [("all", 10)]
    assert re.search(r"bf16 autocast on (cpu|cuda)", (tmp_path / "out" / "log.txt").read_text())


def test_selection_on_test_images_needs_the_explicit_key(trainer_env, teacher_run, tmp_path):
    opts = kd_opts(trainer_env, str(teacher_run["dir"]), "TEST.FINAL_MODEL", "best_val")
    with pytest.raises(ValueError, match="SELECT_ON_TEST True"):
        run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "a", *opts, flags=("--no-train",))
    with pytest.raises(ValueError, match="CE_WEIGHT"):
        ce_opts = kd_opts(trainer_env, "none", "TRAINER.PROMPTKD.CE_WEIGHT", "1.0")
        run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "b", *ce_opts, flags=("--no-train",))
    out = tmp_path / "c"
    run_env_train(
        trainer_env, "PromptKD", CONFIG, out, *opts, "TRAINER.PROMPTKD.SELECT_ON_TEST", "True", "OPTIM.MAX_EPOCH", "1"
    )
    assert "base-class TEST images" in (out / "log.txt").read_text()
    assert (out / "VLPromptLearner" / "model-best.pth.tar").is_file()
    assert [r["classes"] for r in read_results(out)] == [
        "base",
        "base",
        "new",
        "all",
    ]  # epoch val, final base/new/summary


def test_trainable_parameter_count_at_real_size():
    """ViT-B/16 student (J=9, 4 tokens) + projector 512 -> 768 (ViT-L/14 teacher), as the paper counts."""
    with torch.device("meta"):
        visual = CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12, design=ivlp_design(9, 0, 4, 0)).visual
        student = PromptKDStudent(visual, torch.tensor(4.6052), num_classes=100)
        student.materialize(768)
    freeze_by_name(student)
    prompts = sum(p.numel() for n, p in student.named_parameters() if p.requires_grad and n.startswith("image_encoder"))
    projector = sum(p.numel() for n, p in student.named_parameters() if p.requires_grad and n.startswith("VPT_image"))
    assert (prompts, projector) == (27_648, 986_112)
    shapes = {n: tuple(p.shape) for n, p in student.named_parameters() if n.startswith("VPT_image")}
    assert shapes == {
        "VPT_image_trans.conv1.0.weight": (768, 512, 1, 1), "VPT_image_trans.conv1.0.bias": (768,),
        "VPT_image_trans.conv1.1.weight": (768,), "VPT_image_trans.conv1.1.bias": (768,),
        "VPT_image_trans.conv1.3.weight": (768, 768, 1, 1), "VPT_image_trans.conv1.3.bias": (768,),
    }  # fmt: skip
    with torch.device("meta"):
        teacher = CLIP(768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12, design=ivlp_design(9, 9, 4, 4))
    assert sum(p.numel() for n, p in teacher.named_parameters() if "VPT" in n) + 4 * 768 == 64_512


def test_upstream_student_file_uses_the_teachers_features(trainer_env, teacher_run, distilled, tmp_path):
    """Upstream student checkpoints hold the whole student (frozen backbone too) but no text features."""
    state = distilled["trainer"].model.state_dict()
    assert "image_encoder.conv1.weight" in state and "logit_scale" in state
    del state["text_features"]
    (tmp_path / "up" / "VLPromptLearner").mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 2, "optimizer": None, "scheduler": None},
               tmp_path / "up" / "VLPromptLearner" / "model.pth.tar-2")  # fmt: skip
    flags = ("--eval-only", "--model-dir", str(tmp_path / "up"), "--load-epoch", "2")
    run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "ev", *kd_opts(trainer_env, str(teacher_run["dir"])),
              flags=flags)  # fmt: skip
    expected = [r["metrics"] for r in read_results(distilled["dir"])[-3:-1]]
    assert [r["metrics"] for r in read_results(tmp_path / "ev")[:2]] == expected
    with pytest.raises(KeyError, match="no 'text_features'"):
        no_teacher = kd_opts(trainer_env, str(tmp_path / "absent"))
        run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "ev2", *no_teacher, flags=flags)


def test_resume_restores_prompts_projector_and_stored_features(trainer_env, teacher_run, tmp_path):
    opts = kd_opts(trainer_env, str(teacher_run["dir"]), "TRAIN.CHECKPOINT_FREQ", "1")
    full = tmp_path / "full"
    run_env_train(trainer_env, "PromptKD", CONFIG, full, *opts)
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    folder = resumed / "VLPromptLearner"
    (folder / "model.pth.tar-2").unlink()  # as if interrupted after epoch 1
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    (resumed / "results.jsonl").unlink()
    run_env_train(trainer_env, "PromptKD", CONFIG, resumed, *opts)
    a = torch.load(full / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    b = torch.load(folder / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert set(a) == set(b) == STUDENT_KEYS
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    summary = [r.get("metrics", r.get("hm")) for r in read_results(resumed)]
    assert summary == [r.get("metrics", r.get("hm")) for r in read_results(full)[-3:]]


def _logged_losses(out) -> list[float]:
    return [float(value) for value in re.findall(r" loss (\S+) \(", (out / "log.txt").read_text())]


def ensemble_opts(env: dict, teachers: list[str], weights: str, *more: str) -> tuple[str, ...]:
    return kd_opts(env, "", "TRAINER.PROMPTKD.TEACHERS", repr(teachers), "TRAINER.PROMPTKD.TEACHER_WEIGHTS", weights,
                   *more)  # fmt: skip


@pytest.mark.parametrize(("second", "weights"), [("same", "[0.3, 0.7]"), ("none", "[1.0, 0.0]")])
def test_an_ensemble_equal_to_one_teacher_distils_exactly_like_it(
    trainer_env, teacher_run, distilled, tmp_path, second, weights
):
    """Two identical teachers (any weights), or a second teacher of weight 0: the single-teacher run, bit for bit."""
    first = str(teacher_run["dir"])
    out = tmp_path / "ensemble"
    opts = ensemble_opts(trainer_env, [first, first if second == "same" else second], weights)
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, out, *opts)
    assert [t.text_tower_runs for t in trainer.teachers] == [1, 1]  # each teacher encoded its classes once
    for teacher in trainer.teachers:  # and kept no text tower to run again
        assert {name.split(".")[0] for name, _ in teacher.named_parameters()} == {"image_encoder"}
    assert f"Teacher ensemble: {'0.3' if second == 'same' else '1'} x " in (out / "log.txt").read_text()

    reference = distilled["dir"]
    losses = _logged_losses(reference)
    assert len(losses) == 2 and _logged_losses(out) == losses
    assert [r.get("metrics", r.get("hm")) for r in read_results(out)] == [
        r.get("metrics", r.get("hm")) for r in read_results(reference)
    ]
    ours = torch.load(out / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    single = torch.load(reference / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert set(ours) == set(single) == STUDENT_KEYS
    for key, value in single.items():
        assert torch.equal(ours[key], value), key


def test_the_ensemble_target_is_the_weighted_mixture_of_the_teachers(trainer_env, teacher_run, tmp_path):
    opts = ensemble_opts(trainer_env, [str(teacher_run["dir"]), "none"], "[1.0, 3.0]",
                         "TRAINER.PROMPTKD.TEMPERATURE", "2.0", "TRAINER.PROMPTKD.PREC", "fp32")  # fmt: skip
    trainer = run_env_train(trainer_env, "PromptKD", CONFIG, tmp_path / "out", *opts, flags=("--no-train",))
    assert trainer.teachers.weights == (0.25, 0.75)
    trained, zero_shot = trainer.teachers
    assert zero_shot.source.startswith("zero-shot")
    # the student projects into the first teacher's space and classifies with its class features
    torch.testing.assert_close(trainer.model.text_features, trained.class_features, rtol=0, atol=0)
    image = next(iter(trainer.train_loader_x))["img"].to(trainer.device)
    target = trainer.teacher_target(image)
    assert target.dtype == torch.float32 and target.shape == (image.shape[0], 5)
    assert bool((target >= 0).all())
    torch.testing.assert_close(target.sum(-1), torch.ones(image.shape[0]), rtol=0, atol=1e-6)
    p1, p2 = (F.softmax(t.logits(image) / 2.0, dim=-1) for t in (trained, zero_shot))
    assert not torch.allclose(p1, p2, atol=1e-3)  # two different teachers, so the mixture is a real one
    torch.testing.assert_close(target, 0.25 * p1 + 0.75 * p2, rtol=1e-6, atol=1e-7)
