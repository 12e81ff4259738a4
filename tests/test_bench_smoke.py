"""bench/: each benchmark starts and prints its tables at tiny sizes; the analytic FLOP counts equal torch's
FLOP counter; the PromptKD trainer runs its teacher text tower once per run (issue #8)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench import ab, dataloader, distill, evaluate, predict, proda
from bench.common import (
    build_clip,
    build_visual,
    format_table,
    get_arch,
    text_forward_flops,
    vit_backward_input_flops,
    vit_forward_flops,
)
from clip.model import TextEncoder
from trainers.common import freeze_by_name, ivlp_design


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setenv("PROMPTKD_BENCH_TINY", "1")


def _counted(fn) -> int:
    # The math SDPA backend is made of matmuls that the counter sees (fused CPU kernels are not counted).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_vit_flops_forward_and_frozen_backward_equal_torch_counter():
    torch.manual_seed(0)
    arch = get_arch("tiny-student")
    visual = build_visual(arch, ivlp_design(2, 0, 4, 0))
    freeze_by_name(visual)  # prompts trainable, tower frozen: backward = activation gradients only
    image = torch.randn(3, 3, 32, 32)
    assert _counted(lambda: visual(image)) == vit_forward_flops(arch, 3, prompt_tokens=4)
    both = _counted(lambda: visual(image).square().sum().backward())
    assert both == vit_forward_flops(arch, 3, 4) + vit_backward_input_flops(arch, 3, 4)
    assert visual.VPT.grad is not None and visual.conv1.weight.grad is None


def test_text_flops_equal_torch_counter_for_the_upstream_full_length_tower():
    torch.manual_seed(0)
    arch = get_arch("tiny-teacher")
    model = build_clip(arch)
    tokens = torch.zeros(5, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 49406, 320, 49407
    encoder = TextEncoder(model)
    prompts = model.token_embedding(tokens).detach()
    counted = _counted(lambda: distill._full_length_text_tower(encoder, prompts, tokens))
    assert counted == text_forward_flops(arch, 5)
    with torch.no_grad():  # upstream's full-length pass gives the library's features
        torch.testing.assert_close(
            distill._full_length_text_tower(encoder, prompts, tokens), encoder(prompts, tokens), rtol=1e-4, atol=1e-5
        )


def test_distill_prints_both_algorithms_and_counts_text_tower_passes(tmp_path, capsys):
    out = tmp_path / "d.json"
    records = distill.main(["--classes", "5", "40", "--batch-sizes", "2", "--warmup", "1", "--iters", "1",
                            "--json", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert "## Training step" in text and "upstream / ours" in text and "## Evaluation per batch" in text
    teacher = get_arch("tiny-teacher")
    for record, classes in zip(records, (5, 40), strict=True):
        ours, upstream = record["rows"]
        assert (ours.algorithm, upstream.algorithm, ours.n_classes) == ("ours", "upstream", classes)
        assert ours.step_s > 0 and upstream.step_s > 0 and ours.error is None
        assert upstream.flops - ours.flops == text_forward_flops(teacher, classes)
        assert set(upstream.phases_s) == {"teacher_text", "teacher_image", "student_fwd_bwd", "optimizer"}
        assert "teacher_text" not in ours.phases_s
        assert record["text_tower_runs"] == 1 + 1 + 1  # build, upstream warm-up, one timed upstream step
    payload = json.loads(out.read_text())
    assert payload["configurations"][1]["rows"][1]["classes"] == 40


def test_trainer_run_reports_one_teacher_text_pass(capsys):
    (result,) = distill.main(["--trainer-run", "--classes", "4", "--batch-sizes", "2"])
    assert result["teacher_text_tower_runs"] == 1  # counted by the trainer's teacher over a whole run
    assert result["steps"] == 4 and result["eval_images"] == 4  # 8 training images; base+novel test images
    assert "teacher_text_tower_runs" in capsys.readouterr().out


def test_evaluate_prints_ratio(capsys):
    rows = evaluate.main(["--classes", "6", "--batch-sizes", "3", "--iters", "1", "--warmup", "1"])
    assert [r["algorithm"] for r in rows] == ["ours", "upstream"]
    assert rows[1]["flops"] > rows[0]["flops"] and all(r["images_per_s"] > 0 for r in rows)
    assert "upstream / ours" in capsys.readouterr().out


def test_dataloader_prints_pipeline_tables(capsys):
    result = dataloader.main(["--images", "6", "--workers", "0", "--epochs", "1", "--batch", "3", "--classes", "2"])
    text = capsys.readouterr().out
    assert "## In-process decode" in text and "## Training DataLoader" in text and "## End to end" in text
    full, draft = result["in_process"]
    assert full["decoded_size"] == "500x375" and draft["decoded_size"] == "63x47"  # 1/8 scale still >= 32 px
    assert result["loaders"][0]["epoch1_images_per_s"] > 0
    assert result["end_to_end"]["images"] == 6  # 2 classes x 3 images, batch 3, drop_last keeps full batches


def test_predict_prints_images_per_second_per_worker_count(capsys):
    result = predict.main(["--images", "4", "--workers", "0", "1", "--batch-size", "2", "--repeats", "1"])
    assert [r["workers"] for r in result["rows"]] == [0, 1] and all(r["images_per_s"] > 0 for r in result["rows"])
    assert "vs 0 workers" in capsys.readouterr().out


def test_format_table_aligns_and_marks_missing_values():
    table = format_table(["a", "bb"], [[1.23456, None], [1234.5, "x"]])
    assert table.splitlines() == ["| a    | bb |", "|------|----|", "| 1.23 |  - |", "| 1234 |  x |"]


def test_out_of_memory_is_reported_per_algorithm(monkeypatch, capsys):
    real_step = distill.train_step

    def upstream_runs_out_of_memory(models, image, upstream, clock):
        if upstream:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_step(models, image, upstream, clock)

    monkeypatch.setattr(distill, "train_step", upstream_runs_out_of_memory)
    (record,) = distill.main(["--classes", "3", "--batch-sizes", "2", "--iters", "1", "--warmup", "1", "--no-eval"])
    ours, upstream = record["rows"]
    assert ours.error is None and ours.step_s > 0
    assert upstream.error == "OOM" and upstream.step_s is None
    assert "upstream (OOM)" in capsys.readouterr().out


def test_ab_interleaves_variants_and_reports_speedup_vs_the_first(capsys):
    variants = ["bf16", "frozen-bf16", "teacher-bf16", "teacher-cache"]
    rows = ab.main(["--variants", *variants, "--iters", "2", "--classes", "3"])
    assert [r["variant"] for r in rows] == variants
    assert rows[0]["speedup_vs_reference"] == 1.0 and all(len(r["runs_s"]) == 2 for r in rows)
    out = capsys.readouterr().out
    assert "speed-up vs bf16" in out
    assert "teacher-cache: teacher cache: 2 hits, 1 misses" in out  # warm-up filled it, the timed steps read it
    with pytest.raises(SystemExit):
        ab.main(["--variants", "bf16", "fp8"])


def test_ab_times_a_two_teacher_ensemble_against_one_teacher(capsys):
    rows = ab.main(["--variants", "one-teacher", "two-teachers", "--iters", "2", "--classes", "3"])
    assert [r["variant"] for r in rows] == ["one-teacher", "two-teachers"]
    assert all(len(r["runs_s"]) == 2 and r["step_s"] > 0 for r in rows)
    assert "speed-up vs one-teacher" in capsys.readouterr().out
    models = ab.build_models(ab.DistillSetup(ab.get_arch("tiny-teacher"), ab.get_arch("tiny-student"),
                                             torch.device("cpu")), 3)  # fmt: skip
    ensemble = ab.teacher_ensemble(models, 2)
    assert len(ensemble) == 2 and ensemble.weights == (0.5, 0.5)
    assert ensemble.first.image_encoder is models.teacher.image_encoder  # the model set's own teacher first
    assert ensemble.teachers[1].image_encoder is not models.teacher.image_encoder


def test_proda_bench_times_both_methods_interleaved_and_prints_their_ratio(tmp_path, capsys):
    out = tmp_path / "p.json"
    records = proda.main(["--classes", "3", "8", "--warmup", "1", "--iters", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert "## Training step, ProDA vs CoOp, interleaved medians" in text and "ProDA / CoOp time" in text
    recipe = proda.ProDARecipe.from_yaml()
    for record, classes in zip(records, (3, 8), strict=True):
        ours, coop = record["methods"]["ProDA"], record["methods"]["CoOp"]
        assert ours["text_sequences"] == classes * recipe.prompt_batch_size + recipe.n_prompt
        assert coop["text_sequences"] == classes
        assert len(ours["runs_s"]) == len(coop["runs_s"]) == 2 and min(ours["runs_s"] + coop["runs_s"]) > 0
        assert record["time_ratio"] == ours["step_s"] / coop["step_s"]
        assert ours["peak_mib"] > 0 and coop["peak_mib"] >= 0
    assert json.loads(out.read_text())["records"][1]["classes"] == 8


def test_proda_bench_steps_train_only_the_prompts():
    torch.manual_seed(0)
    recipe = proda.ProDARecipe.from_yaml()
    clip_model = build_clip(get_arch("tiny-student"))
    frozen = {k: v.clone() for k, v in clip_model.state_dict().items()}
    precision = proda.resolve_precision("fp32", torch.device("cpu"))
    models, steps = proda.build_steps(clip_model, 4, recipe, precision, torch.device("cpu"), batch=2)
    for name, step in steps.items():
        ctx = models[name].prompt_learner.ctx.detach().clone()
        assert torch.isfinite(torch.tensor(step())), name
        assert not torch.equal(models[name].prompt_learner.ctx, ctx), f"{name}: the step did not update the prompts"
    assert int(models["ProDA"].prompt_learner.sampler.position) == recipe.prompt_batch_size  # one step of the cycle
    for key, value in clip_model.state_dict().items():
        torch.testing.assert_close(value, frozen[key], rtol=0, atol=0, msg=key)


def test_proda_bench_skips_a_class_count_that_would_not_fit(monkeypatch, capsys):
    monkeypatch.setattr(proda, "available_memory_mib", lambda device: 1.0)  # 1 MiB: only the first count runs
    first, skipped = proda.main(["--classes", "3", "1000", "--warmup", "0", "--iters", "1"])
    recipe = proda.ProDARecipe.from_yaml()
    measured = first["methods"]["ProDA"]
    expected = measured["peak_mib"] / measured["text_sequences"] * (1000 * recipe.prompt_batch_size + recipe.n_prompt)
    assert skipped["error"].startswith("skipped: ProDA needs") and skipped["estimated_peak_mib"] == expected
    assert "methods" not in skipped and "skipped" in capsys.readouterr().out
