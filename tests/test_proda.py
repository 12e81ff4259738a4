"""ProDA: the surrogate loss against a brute-force fp64 oracle, the prompt layouts against tokenised sentences,
the sampling cycle, the mean classifier and its cache, resume, memory at 1000 classes, and the base-to-novel
scripts end to end on a synthetic benchmark layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import clip
from clip.loading import CLIP_MEAN, CLIP_STD
from reporting.cli import main as parse_main
from tests.helpers.dataset_fixtures import _class_colour
from tests.helpers.tiny_clip import tiny_clip_state_dict
from tests.helpers.trainer_runs import load_saved_state, make_tiny_setup, read_results, run_train
from trainers.coop import CoOpCLIP, CoOpPromptLearner
from trainers.proda import (
    ProDACLIP,
    ProDAPromptLearner,
    PromptCycle,
    diversity_loss,
    proda_loss,
    prompt_positions,
    surrogate_variance,
)

ROOT = Path(__file__).resolve().parents[1]
CFG = "vit_b16_c16_ep100_batch4"


@pytest.fixture(scope="module")
def clip_model():
    return clip.build_model(tiny_clip_state_dict(seed=3))


def _learner(clip_model, names, n_ctx=4, n_prompt=4, m=2, seed=0) -> ProDAPromptLearner:
    torch.manual_seed(seed)
    return ProDAPromptLearner(names, clip_model, n_ctx=n_ctx, n_prompt=n_prompt, prompt_batch_size=m, seed=seed)


# ----------------------------------------------------------------------------------------------- surrogate
def _brute_force_sigma(z: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sigma_bj = R_yy + R_jj - 2 R_yj with R_b = sum_d z_bd^2 Cov_d and the explicit [D, C, C] covariance."""
    u = w - w.mean(dim=1, keepdim=True)  # (C, M, D)
    cov = torch.einsum("akd,ckd->dac", u, u) / (w.shape[1] + 1)  # (D, C, C)
    r = torch.einsum("bd,dac->bac", z.square(), cov)  # (B, C, C)
    rows = torch.arange(len(y))
    r_yy = r[rows, y, y][:, None]
    r_jj = torch.diagonal(r, dim1=1, dim2=2)
    return r_yy + r_jj - 2 * r[rows, y]


@pytest.mark.parametrize(("b", "c", "m", "d"), [(1, 2, 1, 3), (4, 5, 4, 8), (7, 13, 3, 16), (3, 40, 8, 32)])
def test_surrogate_equals_the_explicit_covariance_in_fp64(b, c, m, d) -> None:
    gen = torch.Generator().manual_seed(b * 100 + c)
    z = F.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=-1)
    w = F.normalize(torch.randn(c, m, d, generator=gen, dtype=torch.float64), dim=-1)
    y = torch.randint(c, (b,), generator=gen)
    sigma = surrogate_variance(z, w, y)
    assert sigma.dtype == torch.float64 and sigma.shape == (b, c)
    torch.testing.assert_close(sigma, _brute_force_sigma(z, w, y).clamp_min(0), rtol=0, atol=1e-10)
    # the definition: sum_k sum_d z^2 (u_j - u_y)^2 / (M+1)
    u = w - w.mean(dim=1, keepdim=True)
    direct = torch.einsum("bd,bjkd->bj", z.square(), (u[None] - u[y][:, None]).square()) / (m + 1)
    torch.testing.assert_close(sigma, direct, rtol=0, atol=1e-10)
    assert (sigma >= 0).all()
    assert (sigma[torch.arange(b), y] == 0).all()
    if m > 1:
        assert (sigma.sum(dim=1) > 0).all()


def test_loss_runs_in_fp32_under_low_precision_autocast() -> None:
    gen = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(4, 16, generator=gen), dim=-1)
    w = F.normalize(torch.randn(6, 4, 16, generator=gen), dim=-1)
    agnostic = F.normalize(torch.randn(8, 16, generator=gen), dim=-1)
    y = torch.tensor([0, 5, 2, 2])
    scale = torch.tensor(4.6052)
    reference = proda_loss(z, w, y, scale, agnostic, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = proda_loss(z.bfloat16(), w.bfloat16(), y, scale, agnostic.bfloat16(), 0.1)
    assert low["loss"].dtype == torch.float32 and low["logits"].dtype == torch.float32
    upcast = proda_loss(z.bfloat16().float(), w.bfloat16().float(), y, scale, agnostic.bfloat16().float(), 0.1)
    torch.testing.assert_close(low["loss"], upcast["loss"], rtol=0, atol=0)
    # the variance term matters at s^2/2 ~ 5000: dropping it changes the loss
    plain = F.cross_entropy(reference["logits"], y)
    assert reference["ce"] > plain + 1e-3
    torch.testing.assert_close(reference["loss"], reference["ce"] + 0.1 * diversity_loss(agnostic))


def test_diversity_loss_is_the_mean_off_diagonal_absolute_cosine() -> None:
    v = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]]), dim=-1)
    # |cos|: (0,1) 0.6, (0,2) 1.0, (1,2) 0.6 -> mean over the 6 ordered pairs
    torch.testing.assert_close(diversity_loss(v), torch.tensor(2.2 / 3))
    assert diversity_loss(v[:1]).item() == 0.0


# ----------------------------------------------------------------------------------------------- layouts
NAMES = ["dog", "sea_lion", "hot air balloon", "x" + " very long name" * 12]


def test_positions_by_index() -> None:
    assert prompt_positions(1) == ["end"]
    assert prompt_positions(8) == ["front"] * 2 + ["middle"] * 2 + ["end"] * 4
    with pytest.raises(ValueError, match="multiple of 4"):
        prompt_positions(6)


@pytest.mark.parametrize(("k", "sentence"), [(0, "{} a photo of a."), (1, "a photo {} of a."), (2, "a photo of a {}.")])
def test_layouts_equal_the_tokenised_sentence(clip_model, k, sentence) -> None:
    """With the context set to the embeddings of "a photo of a", prompt k of each layout must equal the embedding
    of the sentence with the (cleaned) name at that place; names with ``_``, several tokens and 40+ tokens."""
    learner = _learner(clip_model, NAMES, n_ctx=4, n_prompt=4)
    phrase = clip_model.token_embedding(clip.tokenize("a photo of a"))[0, 1:5].detach()
    with torch.no_grad():
        learner.ctx.copy_(phrase.expand(4, -1, -1))
        classes = torch.arange(len(NAMES))
        prompts, tokens = learner.pair_prompts(torch.full_like(classes, k), classes)
        sentences = clip.tokenize([sentence.format(n.replace("_", " ")) for n in NAMES])
        expected = clip_model.token_embedding(sentences)[:, : prompts.shape[1]]
    torch.testing.assert_close(prompts, expected)
    assert tokens.shape[1] == int(sentences.argmax(-1).max()) + 1  # trimmed after the last EOT
    # the same EOT position in all three layouts: where the sentence ends
    assert tokens.argmax(-1).tolist() == sentences.argmax(-1).tolist()
    assert tokens.argmax(-1).tolist()[:3] == [7, 8, 9]  # SOT, 4 context, name (1, 2, 3 tokens), "."


@pytest.mark.parametrize("position", ["front", "middle", "end"])
def test_layouts_equal_coops_class_token_positions(clip_model, position) -> None:
    learner = _learner(clip_model, NAMES, n_ctx=6, n_prompt=4)
    k = {"front": 0, "middle": 1, "end": 3}[position]
    coop = CoOpPromptLearner(NAMES, clip_model, n_ctx=6, class_token_position=position)
    with torch.no_grad():
        coop.ctx.copy_(learner.ctx[k])
        classes = torch.arange(len(NAMES))
        prompts, _ = learner.pair_prompts(torch.full_like(classes, k), classes)
        torch.testing.assert_close(prompts, coop()[:, : prompts.shape[1]])


def test_class_agnostic_prompts_hold_only_the_context(clip_model) -> None:
    learner = _learner(clip_model, ["dog"], n_ctx=3, n_prompt=4)
    prompts, tokens = learner.agnostic_prompts()
    with torch.no_grad():
        reference = clip_model.token_embedding(clip.tokenize("X X X."))[0, :6]
    assert prompts.shape == (4, 6, learner.ctx.shape[-1]) and tokens.argmax(-1).tolist() == [5] * 4
    torch.testing.assert_close(prompts[:, 1:4], learner.ctx.detach())
    torch.testing.assert_close(prompts[:, [0, 4, 5]], reference[[0, 4, 5]].expand(4, -1, -1))


# ----------------------------------------------------------------------------------------------- CoOp parity
def test_equal_prompts_give_coops_cross_entropy(clip_model) -> None:
    """All sampled prompts equal -> zero variance and the mean of identical features: CoOp's logits and loss."""
    names = ["dog", "sea_lion", "cat"]
    learner = _learner(clip_model, names, n_ctx=4, n_prompt=8, m=4)
    coop_learner = CoOpPromptLearner(names, clip_model, n_ctx=4)
    with torch.no_grad():
        learner.ctx.copy_(coop_learner.ctx.expand(8, -1, -1))
    proda, coop = ProDACLIP(clip_model, learner), CoOpCLIP(clip_model, coop_learner)
    image = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    label = torch.tensor([0, 1, 2, 1, 0])
    terms = proda(image, label=label, prompt_indices=torch.tensor([4, 5, 6, 7]))  # the four 'end' prompts
    coop_logits = coop(image)
    torch.testing.assert_close(terms["logits"], coop_logits, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(coop_logits, label), rtol=1e-5, atol=1e-5)
    single = _learner(clip_model, names, n_ctx=4, n_prompt=1, m=1)  # a bank of one prompt is CoOp
    with torch.no_grad():
        single.ctx.copy_(coop_learner.ctx[None])
    terms = ProDACLIP(clip_model, single)(image, label=label, prompt_indices=torch.tensor([0]))
    torch.testing.assert_close(terms["ce"], F.cross_entropy(coop_logits, label), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- sampling cycle
def test_cycle_is_a_permutation_per_k_over_m_steps_and_resumes_from_its_state() -> None:
    cycle = PromptCycle(8, 2, seed=5)
    steps = [cycle.next_indices().tolist() for _ in range(12)]
    for start in (0, 4, 8):
        assert sorted(sum(steps[start : start + 4], [])) == list(range(8))
    assert steps[0:4] != steps[4:8]
    saved = {k: v.clone() for k, v in PromptCycle(8, 2, seed=5).state_dict().items()}
    fresh = PromptCycle(8, 2, seed=5)
    for _ in range(5):  # interrupted mid-cycle
        fresh.next_indices()
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    resumed = PromptCycle(8, 2, seed=99)
    resumed.load_state_dict(state)
    assert [resumed.next_indices().tolist() for _ in range(7)] == steps[5:12]
    assert set(saved) == {"generator_state", "order", "position"}
    with pytest.raises(ValueError, match="PROMPT_BATCH_SIZE must divide N_PROMPT"):
        PromptCycle(8, 3, seed=0)


# ----------------------------------------------------------------------------------------------- classifier
def test_classifier_is_the_mean_of_all_prompts_chunked_with_the_tail_and_cached(clip_model) -> None:
    names = ["dog", "sea_lion", "cat"]
    model = ProDACLIP(clip_model, _learner(clip_model, names, n_ctx=4, n_prompt=4))
    learner = model.prompt_learner
    with torch.no_grad():
        per_prompt = []
        for k in range(4):
            prompts, tokens = learner.pair_prompts(torch.full((3,), k), torch.arange(3))
            per_prompt.append(F.normalize(model.text_encoder(prompts, tokens), dim=-1))
    expected = torch.stack(per_prompt).mean(dim=0)  # not re-normalised
    model.max_text_sequences = 5  # 12 pairs: chunks of 5, 5 and the tail of 2
    classifier = model.class_features()
    torch.testing.assert_close(classifier, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(classifier.norm(dim=-1), torch.ones(3))
    assert model.class_features() is classifier  # cached while nothing changed
    with torch.no_grad():
        learner.ctx.add_(0.5)  # what an optimiser step does
    changed = model.class_features()
    assert changed is not classifier and not torch.allclose(changed, classifier)
    learner.load_state_dict({**learner.state_dict(), "ctx": learner.ctx.detach() - 0.5})
    torch.testing.assert_close(model.class_features(), classifier, rtol=1e-5, atol=1e-6)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(image)
        features = F.normalize(model.image_encoder(image), dim=-1)
    torch.testing.assert_close(logits, model.logit_scale.exp() * features @ model.class_features().t())


# ----------------------------------------------------------------------------------------------- trainer runs
def _aligned_clip(path: Path, classnames: list[str], n_ctx: int) -> None:
    """A tiny CLIP whose image projection is fitted (least squares) so that the solid-colour image of class c maps
    to the text features of ``c``'s name with a zero context, averaged over the three layouts; stands in for a
    pre-trained CLIP that has seen every concept, so that prompts learned on base classes can transfer."""
    state = tiny_clip_state_dict(seed=7)
    model = clip.build_model(state)
    n = len(classnames)
    learner = ProDAPromptLearner(classnames, model, n_ctx=n_ctx, n_prompt=4, prompt_batch_size=4, seed=0)
    with torch.no_grad():
        learner.ctx.zero_()
        text = ProDACLIP(model, learner).compute_class_features()
        text = F.normalize(text, dim=-1)
        colours = torch.tensor([_class_colour(c, n) for c in range(n)], dtype=torch.float32) / 255
        levels = torch.tensor([0.85, 0.92, 1.0])
        pixels = (colours[:, None, :] * levels[None, :, None]).reshape(-1, 3)
        images = (pixels - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        images = images[:, :, None, None].expand(-1, 3, 32, 32)
        proj = model.visual.proj.detach().clone()
        model.visual.proj.data = torch.eye(proj.shape[0])
        pre = model.visual(images)  # (N, width) features before the projection
        target = text.repeat_interleave(len(levels), dim=0)
        state["visual.proj"] = torch.linalg.lstsq(pre, target).solution.contiguous()
    torch.save(state, path)


def _stub_python(tmp: Path, tiny, epochs: int, extra: list[str]) -> Path:
    """A `python` for the scripts: runs train.py with the script's argv plus the tiny CLIP, 32 px images and
    `epochs` epochs (the script's --load-epoch follows). The scripts' exact argv is pinned by test_scripts."""
    stub = tmp / "bin" / "python"
    stub.parent.mkdir(parents=True, exist_ok=True)
    overrides = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "MODEL.BACKBONE.NAME", str(tiny.clip_file),
                 "DATASET.CACHE_DIR", str(tiny.cache), "OPTIM.MAX_EPOCH", str(epochs), *extra]  # fmt: skip
    stub.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(f"""
        import runpy, sys
        argv = sys.argv[1:]
        if "--load-epoch" in argv:
            argv[argv.index("--load-epoch") + 1] = "{epochs}"
        sys.path.insert(0, {str(ROOT)!r})
        sys.argv = argv + {overrides!r}
        runpy.run_path(argv[0], run_name="__main__")
        """)
    )
    stub.chmod(0o755)
    return stub.parent


PRODA_SMALL = ["TRAINER.PRODA.N_CTX", "4", "TRAINER.PRODA.N_PROMPT", "8", "TRAINER.PRODA.PROMPT_BATCH_SIZE", "4",
               "TRAINER.PRODA.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "OPTIM.LR", "0.01"]  # fmt: skip


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """base2new_train.sh + base2new_test.sh (seed 1) on an 8-class Caltech101 layout (4 base, 4 novel)."""
    tmp = tmp_path_factory.mktemp("proda_scripts")
    tiny = make_tiny_setup(tmp, classes=8, per_class=10)
    _aligned_clip(tiny.clip_file, tiny.classnames, n_ctx=4)
    bin_dir = _stub_python(tmp, tiny, epochs=3, extra=PRODA_SMALL)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DATA": str(tiny.data)}
    env["OUTPUT_ROOT"] = str(tmp / "output")
    env.pop("PYTHON", None)
    for script in ("base2new_train.sh", "base2new_test.sh"):
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts/proda" / script), "caltech101", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return tiny, tmp / "output" / "base2new"


def _run_dir(root: Path, split: str, seed: int) -> Path:
    return root / split / "caltech101" / "shots_16" / "ProDA" / CFG / f"seed{seed}"


def _final(run: Path, classes: str) -> float:
    (record,) = [r for r in read_results(run) if r.get("phase") in ("final", "eval_only")]
    assert record["classes"] == classes
    return record["metrics"]["accuracy"]


def test_scripts_train_on_base_and_test_on_novel_above_chance(scripted, capsys) -> None:
    _, root = scripted
    base = _final(_run_dir(root, "train_base", 1), "base")
    novel = _final(_run_dir(root, "test_new", 1), "new")
    assert base > 25.0 + 20 and novel > 25.0 + 20, (base, novel)  # 4 classes each: chance 25%
    state = load_saved_state(_run_dir(root, "train_base", 1) / "prompt_learner")
    assert set(state) == {"ctx", "sampler.generator_state", "sampler.order", "sampler.position"}
    assert state["ctx"].shape == (8, 4, 32)
    capsys.readouterr()
    assert parse_main([str(root), "--format", "json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert table["trainer"] == "ProDA" and table["kind"] == "base2novel" and table["problems"] == []
    (row,) = table["rows"]
    assert row["n"] == 1
    assert row["cells"]["base"]["values"] == [base] and row["cells"]["novel"]["values"] == [novel]
    reference = ROOT / "configs/reference/promptkd_cvpr2024.json"
    assert parse_main([str(root), "--format", "json", "--compare", str(reference)]) == 0
    (table,) = json.loads(capsys.readouterr().out)["tables"]
    assert table["reference"] == "ProDA"


def test_reference_holds_prodas_published_average_and_the_readme_copy_error() -> None:
    data = json.loads((ROOT / "configs/reference/promptkd_cvpr2024.json").read_text())
    average = data["base2novel"]["ProDA"]["Average"]
    assert average == {"base": 81.56, "novel": 72.3, "hm": 76.65}
    b, n = average["base"], average["novel"]
    assert round(2 * b * n / (b + n), 2) == 76.65 and round(2 * b * 75.83 / (b + 75.83), 2) == 78.59
    assert data["base2novel"]["CoCoOp"]["Average"]["hm"] == 75.83
    assert any("75.83" in note and "CoCoOp" in note for note in data["notes"])


def test_load_model_rebuilds_the_classifier_for_each_class_set(scripted, tmp_path) -> None:
    tiny, root = scripted
    train_dir = _run_dir(root, "train_base", 1)
    args = [*PRODA_SMALL, "DATASET.SUBSAMPLE_CLASSES"]
    trained = run_train(tiny.args("ProDA", f"ProDA/{CFG}", tmp_path / "b", *args, "base", eval_from=train_dir))
    novel = run_train(tiny.args("ProDA", f"ProDA/{CFG}", tmp_path / "n", *args, "new", eval_from=train_dir))
    saved = load_saved_state(train_dir / "prompt_learner")["ctx"]
    for trainer, names in ((trained, tiny.classnames[:4]), (novel, tiny.classnames[4:])):
        model = trainer.model
        torch.testing.assert_close(model.prompt_learner.ctx.detach(), saved, rtol=0, atol=0)
        assert [n for n in trainer.dm.dataset.classnames] == names
        classifier = model.class_features()
        oracle_clip = _tiny_clip_of(trainer)
        rebuilt = ProDACLIP(oracle_clip, ProDAPromptLearner(names, oracle_clip, 4, 8, 4, seed=0))
        with torch.no_grad():
            rebuilt.prompt_learner.ctx.copy_(saved)
        torch.testing.assert_close(classifier, rebuilt.compute_class_features(), rtol=0, atol=0)


def _tiny_clip_of(trainer):
    """The tiny CLIP file of the run, rebuilt (the oracle for the classifier)."""
    return clip.build_model(torch.load(trainer.cfg.MODEL.BACKBONE.NAME, weights_only=True))


def test_resume_restores_the_sampling_cycle(tmp_path) -> None:
    """3 batches per epoch, cycles of 2 steps: epoch 1 ends mid-cycle, and the resumed run still equals the
    uninterrupted one bitwise (prompts, optimiser, cycle state)."""
    tiny = make_tiny_setup(tmp_path, classes=4, per_class=6)
    opts = ["TRAINER.PRODA.N_CTX", "2", "TRAINER.PRODA.N_PROMPT", "4", "TRAINER.PRODA.PROMPT_BATCH_SIZE", "2",
            "DATASET.NUM_SHOTS", "3", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAIN.CHECKPOINT_FREQ", "1",
            "TEST.NO_TEST", "True"]  # fmt: skip
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run_train(tiny.args("ProDA", f"ProDA/{CFG}", full, *opts, epochs=2))
    run_train(tiny.args("ProDA", f"ProDA/{CFG}", resumed, *opts, epochs=1))
    trainer = run_train(tiny.args("ProDA", f"ProDA/{CFG}", resumed, *opts, epochs=2))
    assert "Found checkpoint" in (resumed / "log.txt").read_text()
    epoch1 = load_saved_state_file(full, 1)
    assert int(epoch1["sampler.position"]) == 2  # 12 images / batch 4 = 3 steps, 2 steps per cycle
    a, b = load_saved_state_file(full, 2), load_saved_state_file(resumed, 2)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert not torch.equal(a["ctx"], epoch1["ctx"])
    assert trainer.prompt_learner.sampler.position.item() == int(a["sampler.position"])
    # the classifier after load_model equals the one of the model that was saved
    before = trainer.model.class_features()
    loaded = run_train(tiny.args("ProDA", f"ProDA/{CFG}", tmp_path / "eval", *opts, eval_from=resumed, load_epoch=2))
    torch.testing.assert_close(loaded.model.class_features(), before, rtol=0, atol=0)


def load_saved_state_file(run: Path, epoch: int) -> dict:
    return torch.load(run / "prompt_learner" / f"model.pth.tar-{epoch}", weights_only=True)["state_dict"]


MEMORY_BOUND_MIB = 400  # measured 191-214 MiB (2-core CPU under load, torch 2.14)


def test_one_training_step_with_1000_classes_stays_within_the_memory_bound() -> None:
    """Peak RSS growth of one ProDA step (C=1000, K=32, M=4, batch 4, embed 128, tiny towers), measured in a fresh
    process. The E x C x C covariance alone would be 1000*1000*128 floats = 488 MiB; the step itself needs
    the text-tower activations of the 4000 + 32 prompts.

    Measured by the benchmarks' ``step_peak_mib`` (the lifetime ``ru_maxrss`` cannot see a step that peaks below
    model building; see its docstring).
    """
    code = textwrap.dedent("""
        import torch, clip
        from bench.common import step_peak_mib
        from tests.helpers.tiny_clip import tiny_clip_state_dict
        from trainers.proda import ProDACLIP, ProDAPromptLearner

        torch.manual_seed(0)
        torch.set_num_threads(1)
        model = clip.build_model(tiny_clip_state_dict(embed_dim=128, transformer_layers=1, vision_layers=1))
        names = [f"class {i}" for i in range(1000)]
        proda = ProDACLIP(model, ProDAPromptLearner(names, model, n_ctx=4, n_prompt=32, prompt_batch_size=4, seed=0))
        for name, p in proda.named_parameters():
            p.requires_grad_(name == "prompt_learner.ctx")
        image, label = torch.randn(4, 3, 32, 32), torch.tensor([0, 10, 500, 999])
        indices = proda.prompt_learner.sampler.next_indices()

        def step():
            terms = proda(image, label=label, prompt_indices=indices, diversity_weight=0.1)
            terms["loss"].backward()

        growth = step_peak_mib(step, torch.device("cpu"))
        assert proda.prompt_learner.ctx.grad.abs().sum() > 0
        print(growth)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = float(proc.stdout.strip().splitlines()[-1])
    assert 0 < growth < MEMORY_BOUND_MIB, growth
