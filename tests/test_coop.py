"""CoOp: training through train.py with the real YAML, eval-only reload, class-token layouts,
gradients, checkpoint contents."""

from __future__ import annotations

import pytest
import torch

import clip
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.helpers.trainer_runs import (
    gradient_report,
    last_accuracy,
    load_saved_state,
    make_tiny_setup,
    run_train,
)
from trainers.coop import CoOpCLIP, CoOpPromptLearner, class_token_order, coop_context


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_setup(tmp_path_factory.mktemp("coop"))


@pytest.fixture(scope="module")
def clip_model():
    return clip.build_model(tiny_clip_state_dict(seed=3))


def test_train_eval_reload_and_checkpoint(tiny) -> None:
    out = tiny.tmp / "run"
    opts = ("DATASET.NUM_SHOTS", "2", "TRAINER.COOP.N_CTX", "4")
    trainer = run_train(tiny.args("CoOp", "CoOp/vit_b16_ep50", out, *opts))
    final = last_accuracy(out, "final")
    assert 0.0 <= final <= 100.0
    folder = out / "prompt_learner"
    assert (folder / "model.pth.tar-2").is_file()
    state = load_saved_state(folder)
    assert set(state) == {"ctx"} and state["ctx"].shape == (4, 32)
    learned = trainer._models["prompt_learner"].ctx.detach().cpu()
    torch.testing.assert_close(state["ctx"], learned)

    out_eval = tiny.tmp / "eval"
    evaluator = run_train(tiny.args("CoOp", "CoOp/vit_b16_ep50", out_eval, *opts, seed=2, eval_from=out, load_epoch=2))
    assert last_accuracy(out_eval, "eval_only") == pytest.approx(final)
    torch.testing.assert_close(evaluator._models["prompt_learner"].ctx.detach().cpu(), learned)
    # MODEL.INIT_WEIGHTS starts a new run from a saved prompt learner
    init = str(out / "prompt_learner" / "model.pth.tar-2")
    fresh = run_train(
        [
            "--no-train",
            *tiny.args("CoOp", "CoOp/vit_b16_ep50", tiny.tmp / "init", *opts, "MODEL.INIT_WEIGHTS", init, seed=3),
        ]
    )
    torch.testing.assert_close(fresh._models["prompt_learner"].ctx.detach().cpu(), learned)

    # trainable parameters got gradients in the last step, frozen ones none
    with_grad, frozen_grad = gradient_report(trainer.model)
    assert with_grad == {"prompt_learner.ctx"} and frozen_grad == set()
    assert "acc" in (out / "log.txt").read_text()  # CoOp's iteration line reports the batch accuracy


@pytest.mark.parametrize(
    ("position", "text"),
    [("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")],
)
def test_class_token_positions_give_the_right_token_layout(clip_model, position: str, text: str) -> None:
    """With CTX_INIT the context equals the phrase's embeddings, so each layout must equal the embedding of the
    sentence with the class name moved to that position."""
    names = ["dog", "sea_lion", "hot air balloon"]
    learner = CoOpPromptLearner(names, clip_model, n_ctx=16, ctx_init="a photo of a", class_token_position=position)
    assert learner.n_ctx == 4
    with torch.no_grad():
        prompts = learner()
        expected = clip_model.token_embedding(clip.tokenize([text.format(n.replace("_", " ")) for n in names]))
    torch.testing.assert_close(prompts, expected)
    # the EOT position used for pooling is where the sentence ends: 6 words + "." after SOT ("dog" is 1 token)
    assert learner.tokenized_prompts.argmax(-1).tolist() == [7, 8, 9]


def test_class_token_order_values() -> None:
    order = class_token_order(n_ctx=4, name_lens=[1, 2], length=10, position="middle")
    assert order.tolist() == [[0, 1, 2, 5, 3, 4, 6, 7, 8, 9], [0, 1, 2, 5, 6, 3, 4, 7, 8, 9]]
    order = class_token_order(n_ctx=3, name_lens=[2], length=8, position="front")
    assert order.tolist() == [[0, 4, 5, 1, 2, 3, 6, 7]]
    with pytest.raises(ValueError, match=r"class-token position is 'left'; allowed: \['end', 'middle', 'front'\]"):
        class_token_order(4, [1], 10, "left")


def test_class_specific_context(clip_model) -> None:
    torch.manual_seed(0)
    learner = CoOpPromptLearner(["cat", "dog"], clip_model, n_ctx=3, class_specific=True)
    assert learner.ctx.shape == (2, 3, 32)
    prompts = learner()
    torch.testing.assert_close(prompts[:, 1:4], learner.ctx.detach())
    prompts.sum().backward()
    assert learner.ctx.grad.shape == (2, 3, 32)
    ctx, prefix = coop_context(clip_model, 16, "a photo of a", n_cls=2, class_specific=True)
    assert ctx.shape == (2, 4, 32) and prefix == "a photo of a"
    torch.testing.assert_close(ctx[0], ctx[1])


def test_resnet_backbone_stays_in_eval_mode_while_prompts_train() -> None:
    """Only the prompt learner switches to train mode: the frozen ResNet's BatchNorm statistics never move."""
    torch.manual_seed(0)
    resnet = clip.build_model(tiny_clip_state_dict(vision="resnet", vision_layers=1))
    model = CoOpCLIP(resnet, CoOpPromptLearner(["cat", "dog"], resnet, n_ctx=2)).train()
    assert model.prompt_learner.training and not model.image_encoder.training
    stats = resnet.visual.bn1.running_mean.clone()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    torch.testing.assert_close(resnet.visual.bn1.running_mean, stats)
    assert model.prompt_learner.ctx.grad.abs().sum() > 0


def test_trainable_count_at_real_vit_b16_size() -> None:
    """ViT-B/16, 16 context tokens: 16 x 512 = 8,192 values; class-specific: x C (meta device)."""
    with torch.device("meta"):
        real = clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
        shared = CoOpPromptLearner(["a", "b", "c"], real, 16)
        specific = CoOpPromptLearner(["a", "b", "c"], real, 16, class_specific=True)
    assert sum(p.numel() for p in shared.parameters()) == 8_192
    assert sum(p.numel() for p in specific.parameters()) == 3 * 8_192
