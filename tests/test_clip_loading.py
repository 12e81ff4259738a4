"""Weight resolution and safe loading: state dicts, TorchScript archives (trust rules), refused pickles."""

from __future__ import annotations

import ast
import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

import clip
import clip.loading as loading
from clip.download import sha256_file
from tests.helpers.tiny_clip import save_tiny_clip

CLIP_DIR = pathlib.Path(clip.__file__).parent


class _Payload:
    """Unpickling this calls `Path.touch(marker)`: proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value.to(ours[key].dtype)), key


def test_state_dict_file_loads_under_any_name(tmp_path: Path) -> None:
    state = save_tiny_clip(tmp_path / "my weights.bin", fmt="state_dict", seed=4)
    model, preprocess = clip.load(tmp_path / "my weights.bin")
    _assert_same_weights(model, state)
    assert next(model.parameters()).device.type == "cpu" and not model.training
    assert preprocess(Image.new("RGB", (50, 40))).shape == (3, 32, 32)


def test_torchscript_archive_needs_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ViT-B-16.pt"
    state = save_tiny_clip(path, fmt="torchscript", seed=5)
    assert state["visual.conv1.weight"].dtype == torch.float16  # like OpenAI's archives
    opened: list[str] = []
    real_jit_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append(str(a[0])) or real_jit_load(*a, **k))
    with pytest.raises(clip.UntrustedArchiveError) as info:
        clip.load(path)
    message = str(info.value)
    assert "trust_torchscript=True" in message and "MODEL.TRUST_TORCHSCRIPT" in message
    assert "torch.save" in message and str(path) in message
    assert opened == []  # refused before the archive was opened
    model, _ = clip.load(path, trust_torchscript=True)
    _assert_same_weights(model, state)
    assert opened == [str(path)]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_torchscript_with_published_sha256_opens_without_opt_in(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "archive.pt"
    state = save_tiny_clip(path, fmt="torchscript", vision="resnet", seed=6)
    digest = sha256_file(path)
    monkeypatch.setitem(loading._PUBLISHED_SHA256, digest, "RN50")
    loaded = clip.load_state_dict(path)
    assert set(loaded) == set(state)  # the three TorchScript extras are dropped
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_conversion_one_liner_from_the_error_message_works(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    state = save_tiny_clip(path, fmt="torchscript", seed=8)
    with pytest.raises(clip.UntrustedArchiveError) as info:
        clip.load_state_dict(path)
    command = str(info.value).split('python -c "', 1)[1].rsplit('"', 1)[0]
    exec(command)  # the user-facing fix: convert once (trusting the file), then load as a plain state dict
    converted = path.with_suffix(".state_dict.pt")
    model = clip.build_model(clip.load_state_dict(converted))
    _assert_same_weights(model, state)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_payload_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "ViT-B-16.pt"
    obj = {"visual.conv1.weight": _Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, path)
    with pytest.raises(clip.NotACheckpointError, match="weights_only"):
        clip.load(path)
    assert not marker.exists()


def test_files_that_are_not_clip_checkpoints(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(clip.NotACheckpointError, match=r"not a CLIP checkpoint.*visual\.conv1\.weight"):
        clip.load_state_dict(tmp_path / "other.pt")
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "trainer.pth")
    with pytest.raises(clip.NotACheckpointError, match="trainer checkpoint"):
        clip.load_state_dict(tmp_path / "trainer.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(clip.NotACheckpointError, match="Tensor"):
        clip.load_state_dict(tmp_path / "tensor.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(clip.NotACheckpointError):
        clip.load_state_dict(tmp_path / "notes.txt")
    with pytest.raises(clip.UnknownModelError, match="not a file"):
        clip.load_state_dict(tmp_path)


def test_unknown_name_lists_known_names_and_closest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(clip.UnknownModelError) as info:
        clip.load("ViT-B/61")
    assert "'ViT-B/16'" in str(info.value) and "ViT-L/14@336px" in str(info.value)
    assert clip.available_models() == [
        "RN50", "RN101", "RN50x4", "RN50x16", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="jit=True"):
        clip.load("ViT-B/16", jit=True)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dirs = {
        "weights_dir": tmp_path / "weights",
        "env": tmp_path / "env",
        "upstream": tmp_path / "clip",
        "cache": tmp_path / "home" / ".cache" / "clip",
    }
    for directory in dirs.values():
        directory.mkdir(parents=True)
        (directory / "ViT-B-16.pt").write_bytes(b"")
    monkeypatch.setenv("PROMPTKD_CLIP_DIR", str(dirs["env"]))
    resolve = clip.resolve_checkpoint
    assert resolve("ViT-B/16", weights_dir=dirs["weights_dir"]) == dirs["weights_dir"] / "ViT-B-16.pt"
    assert resolve("ViT-B/16").resolve() == dirs["env"] / "ViT-B-16.pt"
    monkeypatch.delenv("PROMPTKD_CLIP_DIR")
    assert resolve("ViT-B-16").resolve() == dirs["upstream"] / "ViT-B-16.pt"  # file-name spelling accepted
    (dirs["upstream"] / "ViT-B-16.pt").unlink()
    assert resolve("ViT-B/16") == dirs["cache"] / "ViT-B-16.pt"
    (dirs["cache"] / "ViT-B-16.pt").unlink()
    with pytest.raises(clip.UnknownModelError, match="downloading is disabled"):
        resolve("ViT-B/16", allow_download=False)
    explicit = tmp_path / "elsewhere.pt"
    explicit.write_bytes(b"")
    assert resolve(explicit) == explicit


def test_missing_registry_model_is_downloaded_with_its_published_checksum(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_download(url, root, expected_sha256=None, **kw):
        calls.append((url, Path(root), expected_sha256))
        return Path(root) / "ViT-L-14.pt"

    monkeypatch.setattr(loading, "download", fake_download)
    path = clip.resolve_checkpoint("ViT-L/14", download_root=tmp_path / "dl")
    sha = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"
    url = f"https://openaipublic.azureedge.net/clip/models/{sha}/ViT-L-14.pt"
    assert calls == [(url, tmp_path / "dl", sha)] and path == tmp_path / "dl" / "ViT-L-14.pt"


def test_load_with_design_and_build_visual_from_file(tmp_path: Path) -> None:
    save_tiny_clip(tmp_path / "w.pt", seed=9)
    design = clip.PromptDesign("ivlp", vision_depth=2, text_depth=2, vision_ctx=4, text_ctx=4)
    model, _ = clip.load(tmp_path / "w.pt", design=design)
    assert model.visual.VPT.shape == (4, 64) and model.transformer.resblocks[1].VPT_shallow.shape == (4, 32)
    visual = clip.build_visual(clip.load_state_dict(tmp_path / "w.pt"), design)
    assert visual.VPT.shape == (4, 64) and not hasattr(visual, "token_embedding")


def test_preprocess_matches_clip_normalisation() -> None:
    preprocess = clip.image_transform(32)
    color = (200, 100, 50)
    out = preprocess(Image.new("RGBA", (80, 48), color + (255,)))  # RGBA -> RGB, non-square
    assert out.shape == (3, 32, 32)
    expected = (torch.tensor(color) / 255 - torch.tensor(loading.CLIP_MEAN)) / torch.tensor(loading.CLIP_STD)
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected, rtol=0, atol=1e-5)
    ramp = Image.fromarray(torch.arange(64).repeat(32, 1).to(torch.uint8).numpy() * 4).convert("RGB")
    out = preprocess(ramp)  # 64x32 -> short side 32 already: centre crop keeps columns 16..47
    first = (torch.tensor(16 * 4) / 255 - loading.CLIP_MEAN[0]) / loading.CLIP_STD[0]
    torch.testing.assert_close(out[0, 0, 0], first, rtol=0, atol=1e-5)


def test_clip_package_imports_no_other_project_package() -> None:
    for path in CLIP_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in ("dassl", "trainers", "datasets") for n in names), (path, names)
