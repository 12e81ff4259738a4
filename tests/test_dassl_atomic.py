"""dassl.utils.atomic: one atomic-write helper for checkpoints, caches, results and configs."""

import datetime
import json
import os

import pytest
import torch

from dassl.utils import atomic_copy_file, atomic_path, atomic_torch_save, atomic_write, atomic_write_text
from dassl.utils.atomic import write_json_atomic


def test_text_and_bytes_replace_the_file_and_leave_no_temp(tmp_path):
    path = tmp_path / "deep" / "out.txt"  # missing parent folders are created
    atomic_write_text("first\n", path)
    atomic_write_text("zweite Zeile \u00e9\n", str(path))
    assert path.read_text(encoding="utf-8") == "zweite Zeile \u00e9\n"
    with atomic_write(path, "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["out.txt"]


def test_failing_write_keeps_previous_file_and_removes_temp(tmp_path):
    path = tmp_path / "keep.txt"
    atomic_write_text("old", path)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path) as f:
            f.write("half of the new cont")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]
    with pytest.raises(KeyboardInterrupt):  # BaseException too: Ctrl-C mid-save must not leave a temp file
        with atomic_path(path) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".keep.txt.")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_json_is_compact_by_default_and_indented_on_request(tmp_path):
    payload = {"items": [["a/b.jpg", 0, "cat"]], "seed": 1}
    write_json_atomic(payload, tmp_path / "cache.json")
    assert (tmp_path / "cache.json").read_text() == '{"items":[["a/b.jpg",0,"cat"]],"seed":1}'
    write_json_atomic({"when": datetime.date(2026, 1, 2)}, tmp_path / "bench.json", indent=2, default=str)
    assert (tmp_path / "bench.json").read_text() == '{\n  "when": "2026-01-02"\n}'
    assert json.loads((tmp_path / "bench.json").read_text()) == {"when": "2026-01-02"}
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, tmp_path / "cache.json")
    assert json.loads((tmp_path / "cache.json").read_text()) == payload
    assert sorted(os.listdir(tmp_path)) == ["bench.json", "cache.json"]


def test_torch_save_and_copy_round_trip(tmp_path):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "epoch": 3}
    atomic_torch_save(state, tmp_path / "model.pth.tar-3")
    loaded = torch.load(tmp_path / "model.pth.tar-3", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], state["w"])
    atomic_copy_file(tmp_path / "model.pth.tar-3", tmp_path / "best" / "model-best.pth.tar")
    assert (tmp_path / "best" / "model-best.pth.tar").read_bytes() == (tmp_path / "model.pth.tar-3").read_bytes()
    with pytest.raises(FileNotFoundError):
        atomic_copy_file(tmp_path / "missing", tmp_path / "model-best.pth.tar")
    assert sorted(os.listdir(tmp_path)) == ["best", "model.pth.tar-3"]


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'w' \\(text\\) or 'wb'"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    assert os.listdir(tmp_path) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    """Checkpoints and results on shared servers must be readable like any file the user writes (umask 022)."""
    import os

    from dassl.utils.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        target = tmp_path / "results.jsonl"
        atomic_write_text("{}", target)
    finally:
        os.umask(old)
    assert (target.stat().st_mode & 0o777) == 0o644
