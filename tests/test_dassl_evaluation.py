"""dassl.metrics and dassl.evaluation: top-k accuracy (k > 1 included), distances, the Classification result block."""

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dassl.config import get_cfg_default
from dassl.evaluation import EVALUATOR_REGISTRY, Classification, EvaluatorBase, build_evaluator
from dassl.evaluation.label_metrics import confusion_matrix, macro_f1_score
from dassl.metrics import compute_accuracy, compute_distance_matrix, cosine_distance, euclidean_squared_distance


# --------------------------------------------------------------------------------------------- metrics
def test_compute_accuracy_topk_matches_manual_count():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 10, generator=gen)
    target = torch.randint(0, 10, (40,), generator=gen)
    top1, top5 = compute_accuracy(scores, target, topk=(1, 5))
    ranks = (scores > scores.gather(1, target[:, None])).sum(1)  # how many classes beat the target
    assert top1.shape == (1,) and top1.dtype == torch.float32
    assert top1.item() == pytest.approx(100.0 * (ranks < 1).sum().item() / 40)
    assert top5.item() == pytest.approx(100.0 * (ranks < 5).sum().item() / 40)
    assert top5.item() > top1.item()
    # non-contiguous scores and a tuple output (first element used)
    (acc_t,) = compute_accuracy((scores.t().contiguous().t(), None), target)
    assert acc_t.item() == top1.item()
    with pytest.raises(ValueError, match="more classes"):
        compute_accuracy(scores, target, topk=(11,))


def test_distances_match_reference():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 7, generator=gen), torch.randn(3, 7, generator=gen)
    torch.testing.assert_close(euclidean_squared_distance(a, b), torch.cdist(a, b) ** 2, rtol=1e-4, atol=1e-4)
    expected_cos = 1 - torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=2)
    torch.testing.assert_close(cosine_distance(a, b), expected_cos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compute_distance_matrix(a, b, "cosine"), expected_cos, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="euclidean"):
        compute_distance_matrix(a, b, "manhattan")
    with pytest.raises(ValueError, match="feature dimensions"):
        compute_distance_matrix(a, torch.randn(3, 4))


# --------------------------------------------------------------------------------------------- label metrics
def test_macro_f1_hand_computed():
    # class 0: TP1 FP1 FN0 -> 2/3; class 1: TP1 FP0 FN1 -> 2/3; class 2: TP0 -> 0; label 3 only predicted
    y_true = [0, 1, 1, 2, 2]
    y_pred = [0, 1, 2, 0, 3]
    assert macro_f1_score(y_true, y_pred) == pytest.approx((2 / 3 + 2 / 3 + 0.0) / 3)
    assert macro_f1_score([4, 4, 7], [4, 4, 7]) == 1.0  # non-contiguous labels, only present ones count
    with pytest.raises(ValueError, match="differ in length"):
        macro_f1_score([0, 1], [0])


def test_macro_f1_and_cmat_match_sklearn_when_installed():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 8, 200))
    expected = sklearn_metrics.f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
    assert macro_f1_score(y_true, y_pred) == pytest.approx(expected)
    expected_cm = sklearn_metrics.confusion_matrix(y_true, y_pred, normalize="true")
    np.testing.assert_allclose(confusion_matrix(y_true, y_pred), expected_cm)


def test_confusion_matrix_rows_sum_to_one_over_label_union():
    cm = confusion_matrix([0, 0, 1, 2], [0, 1, 1, 5])
    assert cm.shape == (4, 4)  # labels 0, 1, 2, 5
    np.testing.assert_allclose(cm[0], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(cm.sum(axis=1), [1, 1, 1, 0])  # label 5 is only predicted: empty row
    assert confusion_matrix([0, 1], [1, 1], normalize=None).tolist() == [[0, 1], [0, 1]]


# --------------------------------------------------------------------------------------------- evaluator
def _cfg(tmp_path, **test_keys):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    for key, value in test_keys.items():
        cfg.TEST[key] = value
    return cfg


SCORES = torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2], [2, 1, 0], [0, 3, 1]])
LABELS = torch.tensor([0, 1, 1, 2, 1])


def test_result_block_and_keys_exact(tmp_path, capsys):
    evaluator = build_evaluator(_cfg(tmp_path), lab2cname={0: "a", 1: "b", 2: "c"})
    assert isinstance(evaluator, Classification) and "Classification" in EVALUATOR_REGISTRY
    evaluator.process(SCORES[:2], LABELS[:2])
    evaluator.process(SCORES[2:], LABELS[2:])
    results = evaluator.evaluate()
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    f1 = (2 / 3 + 4 / 5 + 0.0) / 3  # class0 TP1 FP1; class1 TP2 FN1; class2 TP0
    assert results["accuracy"] == pytest.approx(60.0)
    assert results["error_rate"] == pytest.approx(40.0)
    assert results["macro_f1"] == pytest.approx(100 * f1)
    assert evaluator.counts() == {"total": 5, "correct": 3}
    assert (evaluator._total, evaluator._correct) == (5, 3)  # read by the trainer for results.jsonl
    assert capsys.readouterr().out == (
        "Loading evaluator: Classification\n"
        "=> result\n* total: 5\n* correct: 3\n* accuracy: 60.0%\n* error: 40.0%\n"
        f"* macro_f1: {100 * f1:.1f}%\n"
    )
    evaluator.reset()
    with pytest.raises(RuntimeError, match="before any process"):
        evaluator.evaluate()


def test_thousands_separator(tmp_path, capsys):
    evaluator = Classification(_cfg(tmp_path))
    evaluator.process(torch.eye(2).repeat(600, 1), torch.tensor([0, 1] * 600))
    evaluator.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,200\n* correct: 1,200\n* accuracy: 100.0%\n" in out


def test_per_class_block_and_split_names(tmp_path, capsys):
    evaluator = Classification(_cfg(tmp_path, PER_CLASS_RESULT=True), lab2cname={0: "cat", 1: "dog", 2: "eel"})
    evaluator.process(SCORES, LABELS)
    results = evaluator.evaluate()
    assert list(results) == ["accuracy", "error_rate", "macro_f1", "perclass_accuracy"]
    assert results["perclass_accuracy"] == pytest.approx((100 + 200 / 3 + 0) / 3)
    out = capsys.readouterr().out
    assert out.endswith(
        "=> per-class result\n"
        "* class: 0 (cat)\ttotal: 1\tcorrect: 1\tacc: 100.0%\n"
        "* class: 1 (dog)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n"
        "* class: 2 (eel)\ttotal: 1\tcorrect: 0\tacc: 0.0%\n"
        "* average: 55.6%\n"
    )
    evaluator.evaluate(lab2cname={0: "x0", 1: "x1", 2: "x2"})  # names of the evaluated split win
    assert "* class: 1 (x1)\t" in capsys.readouterr().out
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(_cfg(tmp_path, PER_CLASS_RESULT=True))


def test_confusion_matrix_saved_per_split(tmp_path, capsys):
    evaluator = Classification(_cfg(tmp_path, COMPUTE_CMAT=True))
    evaluator.process(SCORES, LABELS)
    evaluator.evaluate(split="val")
    evaluator.evaluate()
    assert sorted(os.listdir(tmp_path)) == ["cmat.pt", "cmat_val.pt"]
    cmat = torch.load(tmp_path / "cmat_val.pt", weights_only=True)
    assert cmat.dtype == torch.float64 and cmat.shape == (3, 3)
    torch.testing.assert_close(cmat.sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(cmat[1], torch.tensor([0, 2 / 3, 1 / 3], dtype=torch.float64))
    assert f"Confusion matrix is saved to {tmp_path / 'cmat_val.pt'}\n" in capsys.readouterr().out


def test_base_class_and_unknown_evaluator(tmp_path):
    base = EvaluatorBase(_cfg(tmp_path))
    for call in (base.reset, base.evaluate, lambda: base.process(SCORES, LABELS)):
        with pytest.raises(NotImplementedError):
            call()
    with pytest.raises(ValueError, match=r"do you mean \[Classification\]"):
        build_evaluator(_cfg(tmp_path, EVALUATOR="Clasification"))


def _ddp_worker(rank, world_size, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cfg = get_cfg_default()
        cfg.OUTPUT_DIR = out_dir
        evaluator = Classification(cfg)
        half = slice(0, 2) if rank == 0 else slice(2, 5)
        evaluator.process(SCORES[half], LABELS[half])
        evaluator.evaluate()
        results = evaluator.evaluate()  # a second call must not gather the gathered lists again
        torch.save({"results": dict(results), "counts": evaluator.counts()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available() or os.name != "posix", reason="needs gloo and fork")
def test_evaluate_gathers_all_ranks(tmp_path):
    # fork: the workers reuse the imported modules (spawn would re-import torch in each, ~20 s on 2 cores)
    args = (2, str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(_ddp_worker, args=args, nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert saved["counts"] == {"total": 5, "correct": 3}
        assert saved["results"]["accuracy"] == pytest.approx(60.0)
        assert saved["results"]["macro_f1"] == pytest.approx(100 * (2 / 3 + 4 / 5) / 3)
