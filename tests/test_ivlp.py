"""IVLP through train.py with its real YAMLs; checkpoints; real-size trainable count."""

from __future__ import annotations

import torch

from clip.model import CLIP
from tests.helpers.trainer_runs import read_results, run_env_train
from trainers.common import PromptedCLIP, freeze_by_name, ivlp_design

CONFIG = "vit_b16_c2_ep20_batch8_4+4ctx"
PROMPT_KEYS = {
    "prompt_learner.ctx",
    "image_encoder.VPT",
    "image_encoder.transformer.resblocks.1.VPT_shallow",
    "text_encoder.transformer.resblocks.1.VPT_shallow",
}


def test_ivlp_trains_saves_prompts_only_and_eval_only_reproduces(trainer_env, tmp_path):
    out = tmp_path / "train"
    opts = ("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base")
    trainer = run_env_train(trainer_env, "IVLP", CONFIG, out, *opts)
    final = read_results(out)[-1]
    assert final["phase"] == "final" and final["classes"] == "base" and final["metrics"]["total"] == 6
    log = (out / "log.txt").read_text()
    assert "Finish training" in log and "* accuracy:" in log

    ckpt = torch.load(out / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)
    assert set(ckpt["state_dict"]) == PROMPT_KEYS  # 4+4 tokens; the tiny CLIP has 2 layers -> deep prompt at block 1
    assert ckpt["state_dict"]["prompt_learner.ctx"].shape == (4, 32)
    trained = trainer.model.prompt_learner.ctx.detach().clone()

    for flags in ((), ("--load-epoch", "2")):  # without --load-epoch: the 'checkpoint' pointer (no best file)
        ev = tmp_path / f"eval{len(flags)}"
        eval_flags = ("--eval-only", "--model-dir", str(out), *flags)
        evaluator = run_env_train(trainer_env, "IVLP", CONFIG, ev, *opts, flags=eval_flags)
        torch.testing.assert_close(evaluator.model.prompt_learner.ctx, trained, rtol=0, atol=0)
        record = read_results(ev)[-1]
        assert record["phase"] == "eval_only" and record["metrics"] == final["metrics"]


def test_full_upstream_style_checkpoint_loads(trainer_env, tmp_path):
    out = tmp_path / "train"
    opts = ("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base")
    trainer = run_env_train(trainer_env, "IVLP", CONFIG, out, *opts, flags=("--no-train",))
    model = trainer.model
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))  # perturbed: equal after reload proves the load
    full = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert "image_encoder.conv1.weight" in full and "text_encoder.positional_embedding" in full  # frozen keys too
    full["prompt_learner.token_prefix"] = model.prompt_learner.token_prefix.half()
    full["prompt_learner.token_suffix"] = model.prompt_learner.token_suffix.half()
    (tmp_path / "up" / "VLPromptLearner").mkdir(parents=True)
    torch.save({"state_dict": full, "epoch": 20, "optimizer": None, "scheduler": None, "val_result": None},
               tmp_path / "up" / "VLPromptLearner" / "model-best.pth.tar")  # fmt: skip
    eval_flags = ("--eval-only", "--model-dir", str(tmp_path / "up"))
    fresh = run_env_train(trainer_env, "IVLP", CONFIG, tmp_path / "ev", *opts, flags=eval_flags)
    for name, param in fresh.model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.cpu(), full[name].float().cpu(), rtol=0, atol=0)


def test_batch4_yaml_exists_with_upstream_script_name():
    from dassl.config import apply_cfg_defaults, get_cfg_default

    cfg = apply_cfg_defaults(get_cfg_default())
    cfg.merge_from_file("configs/trainers/IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml")
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (4, 0.0025, 20)
    node = cfg.TRAINER.IVLP
    assert (node.N_CTX_VISION, node.N_CTX_TEXT, node.PROMPT_DEPTH_VISION, node.PROMPT_DEPTH_TEXT) == (4, 4, 9, 9)


def test_trainable_parameter_count_at_vit_b16_size():
    """Trainable: ctx 2,048 + text deep 16,384 + vision 27,648 = 46,080 (built on the meta device: no memory)."""
    with torch.device("meta"):
        clip_model = CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12, design=ivlp_design(9, 9, 4, 4))
        model = PromptedCLIP(clip_model, ["cat", "dog"], 4, "a photo of a")
    freeze_by_name(model)
    counts = {"ctx": 0, "text": 0, "vision": 0}
    for name, param in model.named_parameters():
        if param.requires_grad:
            tower = name.split(".")[0]
            key = {"prompt_learner": "ctx", "text_encoder": "text", "image_encoder": "vision"}[tower]
            counts[key] += param.numel()
    assert counts == {"ctx": 2048, "text": 16384, "vision": 27648}
