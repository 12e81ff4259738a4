"""From a model name or file to a CLIP model: registry, resolution, safe reading, building, preprocessing.

Safety: a plain state-dict file is read with `torch.load(weights_only=True)`, which never runs
pickled code. A TorchScript archive (OpenAI's own `.pt` files) runs code when opened, so it is opened only if
its SHA-256 is one of OpenAI's published values (part of each download URL, `_MODELS`) or the caller passes
`trust_torchscript=True` (config `MODEL.TRUST_TORCHSCRIPT True`).

Strictness (upstream retries with `strict=False`, so whatever is missing stays random): every tensor of the checkpoint
must find its parameter and every parameter its tensor; the only parameters allowed to be absent are the prompt
parameters the design creates (`VPT`, `VPT_shallow`), which are then initialised N(0, 0.02) as upstream and listed in
the log.
"""

from __future__ import annotations

import difflib
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from .design import PromptDesign, is_prompt_key
from .download import ChecksumError, download, sha256_file
from .model import CLIP, ModifiedResNet, VisionTransformer, heads_for_width

logger = logging.getLogger(__name__)

_URL_ROOT = "https://openaipublic.azureedge.net/clip/models"
# name -> (SHA-256, file name); the URL is `{_URL_ROOT}/{sha}/{file}`, in OpenAI's order
_MODELS: dict[str, tuple[str, str]] = {
    "RN50": ("afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt"),
    "RN101": ("8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt"),
    "RN50x4": ("7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt"),
    "RN50x16": ("52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt"),
    "ViT-B/32": ("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt"),
    "ViT-B/16": ("5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt"),
    "ViT-L/14": ("b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt"),
    "ViT-L/14@336px": ("3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt"),
}
_PUBLISHED_SHA256 = {sha: name for name, (sha, _) in _MODELS.items()}
TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
ENV_WEIGHTS_DIR = "PROMPTKD_CLIP_DIR"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPLoadError(RuntimeError):
    """Base class of the errors raised while finding, reading or loading CLIP weights.

    ``user_error``: the command-line error boundaries end the program with this message on one line.
    """

    user_error = True


class UnknownModelError(CLIPLoadError):
    """Neither a registry name nor an existing file."""


class NotACheckpointError(CLIPLoadError):
    """The file or mapping is not a CLIP state dict (or was refused as unsafe to read)."""


class WeightsUnavailableError(UnknownModelError):
    """A registry model is in none of the searched folders and could not be downloaded (offline, refused)."""

    def __init__(self, problem: str, where: str, fix: str) -> None:
        super().__init__(f"{problem} ({where}): {fix}")


class UntrustedArchiveError(CLIPLoadError):
    """A TorchScript archive whose SHA-256 is not a published OpenAI value, opened without opt-in."""


class StateDictMismatchError(CLIPLoadError):
    """Missing or unexpected keys (or wrong shapes) between a checkpoint and the model built for it."""


def available_models() -> list[str]:
    """Names of the OpenAI CLIP models, in the order of OpenAI's `clip.available_models()`."""
    return list(_MODELS)


def model_url(name: str) -> str:
    sha, filename = _MODELS[name]
    return f"{_URL_ROOT}/{sha}/{filename}"


def published_sha256(name: str) -> str:
    return _MODELS[name][0]


def _canonical_name(name: str) -> str | None:
    """Registry name for `name`, also accepting the file-name spelling (`ViT-B-16`, `ViT-B-16.pt`)."""
    if name in _MODELS:
        return name
    for key, (_, filename) in _MODELS.items():
        if name in (filename, filename.removesuffix(".pt")):
            return key
    return None


def _search_dirs(weights_dir: str | os.PathLike | None, download_root: str | os.PathLike | None) -> list[Path]:
    """Resolution order for a registry name: explicit weights dir, `$PROMPTKD_CLIP_DIR`, upstream's
    `./clip/`, then the download cache (`download_root` or OpenAI's `~/.cache/clip`)."""
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir).expanduser())
    if os.environ.get(ENV_WEIGHTS_DIR):
        dirs.append(Path(os.environ[ENV_WEIGHTS_DIR]).expanduser())
    dirs.append(Path("clip"))
    dirs.append(Path(download_root).expanduser() if download_root else Path("~/.cache/clip").expanduser())
    return dirs


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    weights_dir: str | os.PathLike | None = None,
    download_root: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> Path:
    """Path of the weights file for a registry name or a file path; downloads a missing registry model."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_file():
            raise UnknownModelError(f"{path} exists but is not a file; pass a CLIP .pt file or a model name")
        return path
    name = _canonical_name(str(name_or_path))
    if name is None:
        close = difflib.get_close_matches(str(name_or_path), available_models(), n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(
            f"CLIP model {str(name_or_path)!r} is neither a known model name nor an existing file.{hint} "
            f"Known names: {available_models()}."
        )
    filename = _MODELS[name][1]
    dirs = _search_dirs(weights_dir, download_root)
    for directory in dirs:
        if (directory / filename).is_file():
            return directory / filename
    searched = ", ".join(str(d / filename) for d in dirs)
    fix = (
        f"put {filename} into one of these folders (or set MODEL.WEIGHTS_DIR / ${ENV_WEIGHTS_DIR}), "
        "or pass the file's path as the model name"
    )
    if not allow_download:
        raise WeightsUnavailableError(
            f"CLIP weights {filename} for {name} not found and downloading is disabled", f"searched {searched}", fix
        )
    url = model_url(name)
    logger.info("downloading CLIP %s into %s", name, dirs[-1])
    try:
        return download(url, dirs[-1], expected_sha256=published_sha256(name))
    except (OSError, ChecksumError) as err:  # URLError, timeouts, refused connections, disk errors
        reason = getattr(err, "reason", None) or err
        raise WeightsUnavailableError(
            f"CLIP weights {filename} for {name} not found and the download failed ({reason})",
            f"searched {searched}; could not fetch {url}",
            fix,
        ) from err


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a `code/` folder; `torch.save` zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.endswith("constants.pkl") for n in zf.namelist())


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _read_torchscript(path: Path, trust_torchscript: bool) -> dict[str, torch.Tensor]:
    digest = _cached_sha256(path)
    if digest in _PUBLISHED_SHA256:
        logger.info("%s is OpenAI's published %s archive (SHA-256 %s)", path, _PUBLISHED_SHA256[digest], digest)
    elif not trust_torchscript:
        raise UntrustedArchiveError(
            f"{path} is a TorchScript archive whose SHA-256 {digest} is not a published OpenAI value; opening "
            "it would run the code it contains. If you trust the file, pass trust_torchscript=True (config: "
            "MODEL.TRUST_TORCHSCRIPT True), or convert it once to a plain state dict, which loads without "
            f"running code: python -c \"import torch; torch.save({{k: v for k, v in torch.jit.load('{path}', "
            f"map_location='cpu').state_dict().items()}}, '{path.with_suffix('.state_dict.pt')}')\""
        )
    else:
        logger.warning("opening TorchScript archive %s (SHA-256 %s) because trust_torchscript=True", path, digest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        archive = torch.jit.load(str(path), map_location="cpu")
    return {k: v.detach().clone() for k, v in archive.state_dict().items()}


def read_state_dict_file(path: str | os.PathLike, trust_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP weights file without executing pickled code (see module docstring)."""
    path = Path(path)
    if _is_torchscript_archive(path):
        state = _read_torchscript(path, trust_torchscript)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError, EOFError ... all mean "not a safe tensor file"
            raise NotACheckpointError(
                f"{path} could not be read as a tensor-only file with torch.load(weights_only=True), so it was "
                f"not loaded (its pickled code was not executed): {type(err).__name__}: {str(err)[:300]}. "
                "Expected an OpenAI CLIP .pt file or a state dict saved with torch.save(model.state_dict())."
            ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        is_mapping = isinstance(state, Mapping)
        keys = list(state)[:8] if is_mapping else type(state).__name__
        trainer_like = is_mapping and "state_dict" in state
        hint = " (it looks like a trainer checkpoint; load it with the trainer)" if trainer_like else ""
        raise NotACheckpointError(
            f"{path} is not a CLIP state dict: expected a mapping of parameter names to tensors, got {keys}{hint}"
        )
    return {k: v for k, v in state.items() if k not in TORCHSCRIPT_EXTRA_KEYS}


def load_state_dict(
    name_or_path: str | os.PathLike,
    weights_dir: str | os.PathLike | None = None,
    trust_torchscript: bool = False,
    download_root: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> dict[str, torch.Tensor]:
    """Resolve a registry name or a path and read its weights safely; OpenAI key names, dtypes as stored."""
    path = resolve_checkpoint(name_or_path, weights_dir, download_root, allow_download)
    state = read_state_dict_file(path, trust_torchscript)
    _check_is_clip(state, str(path), ("visual.conv1.weight", "token_embedding.weight"))
    return state


def _check_is_clip(state: Mapping[str, Any], source: str, required: tuple[str, ...]) -> None:
    missing = [k for k in required if k not in state]
    if missing:
        raise NotACheckpointError(
            f"{source} is not a CLIP checkpoint: missing {missing}; it has {len(state)} keys, e.g. "
            f"{list(state)[:6]}. Expected OpenAI CLIP weights (e.g. ViT-B-16.pt) or clip.build_model(...).state_dict()."
        )


def _visual_architecture(state: Mapping[str, torch.Tensor], prefix: str = "visual.") -> dict[str, Any]:
    """Vision hyper-parameters from the key shapes (ViT iff ``visual.proj`` exists), as OpenAI's `build_model`."""
    if f"{prefix}proj" in state:
        _check_is_clip(state, "state dict", (f"{prefix}conv1.weight", f"{prefix}positional_embedding"))
        conv = state[f"{prefix}conv1.weight"]
        width, patch = conv.shape[0], conv.shape[-1]
        layers = len({k for k in state if k.startswith(prefix) and k.endswith(".attn.in_proj_weight")})
        grid = round((state[f"{prefix}positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "vision_width": width,
            "vision_layers": layers,
            "vision_patch_size": patch,
            "image_resolution": patch * grid,
            "embed_dim": state[f"{prefix}proj"].shape[1],
        }
    pool_key = f"{prefix}attnpool.positional_embedding"
    _check_is_clip(state, "state dict", (f"{prefix}layer1.0.conv1.weight", pool_key))
    depth = prefix.count(".") + 1  # index of the block number in "visual.layerN.<block>.*"
    layers = tuple(
        len({k.split(".")[depth] for k in state if k.startswith(f"{prefix}layer{b}.")}) for b in (1, 2, 3, 4)
    )
    rows = state[pool_key].shape[0]
    out = round((rows - 1) ** 0.5)
    if out * out + 1 != rows:
        raise NotACheckpointError(f"{pool_key} has {rows} rows, not (res/32)^2 + 1 for any resolution")
    return {
        "vision_width": state[f"{prefix}layer1.0.conv1.weight"].shape[0],
        "vision_layers": layers,
        "vision_patch_size": None,
        "image_resolution": out * 32,
        "embed_dim": state[f"{prefix}attnpool.c_proj.weight"].shape[0],
    }


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """`CLIP(...)` constructor arguments inferred from the key shapes of an OpenAI-layout state dict."""
    _check_is_clip(
        state,
        "state dict",
        ("visual.conv1.weight", "token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight"),
    )
    arch = _visual_architecture(state)
    width = state["ln_final.weight"].shape[0]
    arch.update(
        embed_dim=state["text_projection"].shape[1],
        context_length=state["positional_embedding"].shape[0],
        vocab_size=state["token_embedding.weight"].shape[0],
        transformer_width=width,
        transformer_heads=heads_for_width(width),
        transformer_layers=len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
    )
    return arch


def _materialize(factory: Callable[[], nn.Module], state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Build the module on the meta device, then fill it from `state` (fp32 copies) with strict key checks.

    Building on meta skips the random initialisation of weights that are overwritten anyway (ViT-L/14 has
    428M of them); the prompt parameters absent from `state` are initialised N(0, 0.02) afterwards.
    """
    with torch.device("meta"):
        module = factory()
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    bad_missing = [k for k in missing if not is_prompt_key(k)]
    if bad_missing or unexpected:
        prompt_extra = [k for k in unexpected if is_prompt_key(k)]
        hint = (
            " The checkpoint holds prompt parameters the design does not create; build with the design they "
            "were trained with (depth = number of VPT_shallow blocks + 1)."
            if prompt_extra
            else ""
        )
        raise StateDictMismatchError(
            f"{source} does not match the model built for it: missing keys {bad_missing[:20]}"
            f"{' ...' if len(bad_missing) > 20 else ''} ({len(bad_missing)}), unexpected keys {unexpected[:20]}"
            f"{' ...' if len(unexpected) > 20 else ''} ({len(unexpected)}).{hint}"
        )
    tensors = {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v.clone() for k, v in state.items()}
    try:
        module.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as err:  # shape mismatches
        raise StateDictMismatchError(f"{source}: {err}") from err
    for key in missing:
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        old = getattr(owner, leaf)
        setattr(owner, leaf, nn.Parameter(torch.empty(old.shape).normal_(std=0.02)))
    if missing:
        logger.info("%s: prompt parameters not in the checkpoint, initialised N(0, 0.02): %s", source, missing)
    leftover = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftover:
        raise StateDictMismatchError(f"{source}: tensors left uninitialised after loading: {leftover}")
    return module.eval()


def build_model(state_dict: Mapping[str, torch.Tensor], design: PromptDesign | Mapping | None = None) -> CLIP:
    """CLIP from an OpenAI-layout state dict, in eval mode with fp32 parameters.

    `design` is a `PromptDesign`, upstream's `design_details` dict, or None (plain CLIP). The three
    TorchScript extras (`input_resolution`, `context_length`, `vocab_size`) are ignored.
    """
    state = {k: v for k, v in state_dict.items() if k not in TORCHSCRIPT_EXTRA_KEYS}
    arch = infer_architecture(state)
    design = PromptDesign.coerce(design)
    if design.vision_prompts and arch["vision_patch_size"] is None:
        logger.warning("ResNet image tower: the vision prompts of %s are ignored (as upstream)", design)
    return _materialize(lambda: CLIP(**arch, design=design), state, "CLIP state dict")


def build_visual(state_dict: Mapping[str, torch.Tensor], design: PromptDesign | Mapping | None = None) -> nn.Module:
    """Only the image tower (`visual.*` keys; other keys are ignored), e.g. for PromptKD's student.

    The module has `.output_dim` and `.input_resolution`; prompt parameter names are as inside `visual.`.
    """
    design = PromptDesign.coerce(design)
    visual = {k.removeprefix("visual."): v for k, v in state_dict.items() if k.startswith("visual.")}
    arch = _visual_architecture(state_dict)
    if arch["vision_patch_size"] is None:
        width = arch["vision_width"]

        def factory() -> nn.Module:
            return ModifiedResNet(
                arch["vision_layers"], arch["embed_dim"], width * 32 // 64, arch["image_resolution"], width
            )
    else:

        def factory() -> nn.Module:
            return VisionTransformer(
                arch["image_resolution"],
                arch["vision_patch_size"],
                arch["vision_width"],
                arch["vision_layers"],
                heads_for_width(arch["vision_width"]),
                arch["embed_dim"],
                design,
            )

    return _materialize(factory, visual, "CLIP visual state dict")


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transform(n_px: int) -> transforms.Compose:
    """CLIP's test transform: bicubic resize of the short side, centre crop, RGB, normalise."""
    return transforms.Compose(
        [
            transforms.Resize(n_px, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(n_px),
            _to_rgb,
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def load(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    design: PromptDesign | Mapping | None = None,
    jit: bool = False,
    download_root: str | os.PathLike | None = None,
    trust_torchscript: bool = False,
    weights_dir: str | os.PathLike | None = None,
) -> tuple[CLIP, transforms.Compose]:
    """`(model, preprocess)` for a registry name or a weights file; the model is fp32, eval mode, on `device`.

    `jit=True` (upstream: return the TorchScript model itself) is refused: the eager model computes the same
    and opening archives is restricted (it runs TorchScript code).
    """
    if jit:
        raise ValueError(
            "clip.load(jit=True) is not supported: the eager model is numerically the same; use jit=False "
            "and torch.compile for speed"
        )
    state = load_state_dict(name_or_path, weights_dir, trust_torchscript, download_root)
    model = build_model(state, design).to(device)
    return model, image_transform(model.visual.input_resolution)
