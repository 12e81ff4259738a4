"""PromptSRC: loss terms, GPA (weights, fp32 aggregation, persistence across resume),
frozen zero-shot references built from the same weights, checkpoints with upstream key names."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import clip
from tests.helpers.trainer_runs import read_results, run_env_train
from trainers.common import load_clip_state_dict
from trainers.promptsrc import GaussianPromptAggregator, gpa_weights, promptsrc_loss
from trainers.templates import IMAGENET_TEMPLATES

CONFIG = "vit_b16_c2_ep20_batch4_4+4ctx"
BASE = ("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base")
PROMPT_KEYS = {
    "prompt_learner.ctx",
    "image_encoder.VPT",
    "image_encoder.transformer.resblocks.1.VPT_shallow",
    "text_encoder.transformer.resblocks.1.VPT_shallow",
}


def test_gpa_weights_match_the_spec_values():
    weights = gpa_weights(20, 15, 1)
    assert sum(weights) == pytest.approx(1.0)
    assert [round(w, 3) for w in weights[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert max(weights[:12] + weights[17:]) < 0.0045
    broad = gpa_weights(20, 6, 10)
    assert 0.022 < min(broad) and max(broad) < 0.064
    with pytest.raises(ValueError, match="GPA_STD > 0"):
        gpa_weights(20, 15, 0)


def test_gpa_aggregates_trainable_parameters_in_fp32():
    model = nn.Module()
    model.VPT = nn.Parameter(torch.zeros(2, 3))
    model.frozen = nn.Parameter(torch.ones(1), requires_grad=False)
    weights = [0.2, 0.3, 0.5]
    gpa = GaussianPromptAggregator([("VPT", model.VPT)], weights)
    snapshots = [torch.full((2, 3), float(v)) for v in (1.0, -2.0, 4.0)]
    for epoch, value in enumerate(snapshots):
        with torch.no_grad():
            model.VPT.copy_(value)
        gpa.accumulate(model, epoch)
    assert gpa.VPT.dtype == torch.float32 and set(gpa.state_dict()) == {"VPT"}
    gpa.apply(model)
    torch.testing.assert_close(model.VPT.detach(), torch.full((2, 3), 0.2 * 1 - 0.3 * 2 + 0.5 * 4))


def test_promptsrc_loss_terms_match_hand_computation():
    gen = torch.Generator().manual_seed(0)
    batch, classes, dim = 3, 4, 5
    parts = {
        "logits": torch.randn(batch, classes, generator=gen) * 3,
        "zs_logits": torch.randn(batch, classes, generator=gen) * 3,
        "text_features": F.normalize(torch.randn(classes, dim, generator=gen), dim=-1),
        "fixed_text_features": F.normalize(torch.randn(classes, dim, generator=gen), dim=-1),
        "image_features": F.normalize(torch.randn(batch, dim, generator=gen), dim=-1),
        "zs_image_features": F.normalize(torch.randn(batch, dim, generator=gen), dim=-1),
    }
    label = torch.tensor([0, 3, 1])
    terms = promptsrc_loss(parts, label, text_weight=25.0, image_weight=10.0)
    z, q = parts["logits"].tolist(), parts["zs_logits"].tolist()
    ce = kl = 0.0
    for b in range(batch):
        log_p = [v - math.log(sum(math.exp(x) for x in z[b])) for v in z[b]]
        log_q = [v - math.log(sum(math.exp(x) for x in q[b])) for v in q[b]]
        ce -= log_p[label[b]] / batch
        kl += sum(math.exp(lq) * (lq - lp) for lq, lp in zip(log_q, log_p, strict=True)) / (batch * classes)
    text = 25.0 * (parts["text_features"] - parts["fixed_text_features"]).abs().sum().item() / (classes * dim)
    image = 10.0 * (parts["image_features"] - parts["zs_image_features"]).abs().sum().item() / (batch * dim)
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert terms["logit"].item() == pytest.approx(kl, rel=1e-5)
    assert terms["text"].item() == pytest.approx(text, rel=1e-5)
    assert terms["image"].item() == pytest.approx(image, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(ce + kl + text + image, rel=1e-5)


def test_promptsrc_trains_with_frozen_references_and_upstream_checkpoint_keys(trainer_env, tmp_path):
    out = tmp_path / "train"
    trainer = run_env_train(trainer_env, "PromptSRC", CONFIG, out, *BASE)
    model = trainer.model
    classnames = trainer.dm.dataset.classnames
    state_dict = load_clip_state_dict(trainer.cfg)
    plain = clip.build_model(state_dict)

    # zero-shot image encoder: the plain visual tower of the same weights, frozen and unchanged by training
    zs = model.prompt_learner.ZS_image_encoder
    assert not any(p.requires_grad for p in zs.parameters())
    for name, value in plain.visual.state_dict().items():
        torch.testing.assert_close(zs.state_dict()[name].cpu(), value, rtol=0, atol=0)
    # fixed embeddings: mean of the raw zero-shot features over the 60 templates
    with torch.no_grad():
        per_template = [
            plain.encode_text(clip.tokenize([t.format(c.replace("_", " ")) for c in classnames]))
            for t in IMAGENET_TEMPLATES
        ]
    assert len(per_template) == 60
    expected = torch.stack(per_template).mean(0)
    torch.testing.assert_close(model.fixed_embeddings.cpu(), expected, rtol=1e-4, atol=1e-4)

    ckpt = torch.load(out / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)
    gpa_keys = {"gpa." + key.replace(".", "__") for key in PROMPT_KEYS}
    assert set(ckpt["state_dict"]) == PROMPT_KEYS | gpa_keys  # no frozen backbone, no ZS encoder
    # after the last epoch the prompts ARE the aggregate
    for key in PROMPT_KEYS:
        torch.testing.assert_close(ckpt["state_dict"][key], ckpt["state_dict"]["gpa." + key.replace(".", "__")])

    # one more step: gradients reach exactly the trainable prompts (not the backbone, not the ZS encoder)
    batch = next(iter(trainer.train_loader_x))
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10**6
    assert trainer.forward_backward(batch)["loss"] > 0
    for name, param in model.named_parameters():
        assert (param.grad is not None) == param.requires_grad == (name in PROMPT_KEYS), name

    final = read_results(out)[-1]
    ev = tmp_path / "eval"
    run_env_train(
        trainer_env, "PromptSRC", CONFIG, ev, *BASE, flags=("--eval-only", "--model-dir", str(out), "--load-epoch", "2")
    )
    assert read_results(ev)[-1]["metrics"] == final["metrics"]


def test_gpa_survives_resume(trainer_env, tmp_path):
    gpa = ("TRAINER.PROMPTSRC.GPA_MEAN", "1", "TRAINER.PROMPTSRC.GPA_STD", "1")  # ints, as upstream's defaults
    opts = (*BASE, *gpa, "TRAIN.CHECKPOINT_FREQ", "1")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_env_train(trainer_env, "PromptSRC", CONFIG, full, *opts)
    run_env_train(trainer_env, "PromptSRC", CONFIG, resumed, *opts)
    folder = resumed / "VLPromptLearner"
    (folder / "model.pth.tar-2").unlink()  # as if interrupted after epoch 1
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    run_env_train(trainer_env, "PromptSRC", CONFIG, resumed, *opts)
    assert "Found checkpoint" in (resumed / "log.txt").read_text()

    epoch1 = torch.load(full / "VLPromptLearner" / "model.pth.tar-1", weights_only=True)["state_dict"]
    w1 = gpa_weights(2, 1, 1)[0]
    assert w1 == pytest.approx(1 / (1 + math.exp(-0.5)))
    for key in PROMPT_KEYS:  # after epoch 1 the accumulator holds w_1 * theta_1 (fp32)
        torch.testing.assert_close(epoch1["gpa." + key.replace(".", "__")], w1 * epoch1[key])
    a = torch.load(full / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    b = torch.load(folder / "model.pth.tar-2", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert not torch.equal(a["prompt_learner.ctx"], epoch1["prompt_learner.ctx"])
