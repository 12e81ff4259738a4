"""Prediction with a trained model alone, and the one-file export of it.

Every trainer gives an :class:`InferenceModel` (``images [B, 3, H, W] -> logits [B, C]``) through its
``inference_model()`` method, computing exactly what its evaluator counts:

- :class:`FixedClassifier` for every method whose class features do not depend on the image (zero-shot CLIP,
  CoOp, IVLP, MaPLe, PromptSRC, ProDA, every PromptKD student): the class features are computed once (or were
  stored at training time, PromptKD), so prediction runs the image tower alone;
  ``logits = exp(s) * normalize(P(f(x))) @ W^T`` with the (prompted) image tower ``f``, PromptKD's projector ``P``
  (identity elsewhere), MaPLe's vision prompts fixed at their trained values.
- :class:`ConditionalClassifier` for CoCoOp, whose prompts depend on each image: the whole model runs.

:func:`export_model` writes one file that :func:`torch.load` opens with ``weights_only=True`` (tensors and plain
containers only): the architecture as data, the weights inference needs, the class features, class names,
preprocessing and provenance. :func:`load_exported_model` rebuilds the module from it without any run folder,
dataset or CLIP file, for people who embed the student in their own code::

    from trainers.common.inference import load_exported_model
    exported = load_exported_model("student.pt")
    probabilities = exported.model(exported.transform(pil_image)[None]).softmax(-1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

import clip
from dassl.errors import CheckpointError

__all__ = [
    "EXPORT_FORMAT",
    "ConditionalClassifier",
    "ExportedModel",
    "FixedClassifier",
    "InferenceModel",
    "export_model",
    "fixed_classifier",
    "load_exported_model",
    "eval_transform",
]

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "promptkd-export"
EXPORT_VERSION = 1


class InferenceModel(nn.Module):
    """``forward(images) -> logits [B, C]``; :meth:`export_state` describes it as tensors and plain data."""

    kind = ""

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def export_state(self) -> dict[str, Any]:
        """``{"architecture": plain data, "state_dict": tensors, ...}`` from which :func:`build_inference_model`
        rebuilds an identical module."""
        raise NotImplementedError


def _vision_design(visual: nn.Module) -> clip.PromptDesign:
    """The prompt design a CLIP image tower was built with, read from the prompt parameters it owns."""
    if getattr(visual, "VPT", None) is None:
        return clip.PromptDesign()
    blocks = [i for i, block in enumerate(visual.transformer.resblocks) if block.VPT_shallow is not None]
    if blocks != list(range(1, len(blocks) + 1)):
        raise ValueError(f"deep vision prompts at blocks {blocks}: expected blocks 1..k")
    return clip.PromptDesign(variant="ivlp", vision_depth=len(blocks) + 1, vision_ctx=int(visual.VPT.shape[0]))


class FixedClassifier(InferenceModel):
    """A (prompted) CLIP image tower, an optional projector and fixed class features ``W [C, E]`` (used as the
    method's evaluator uses them: normalised by the methods that normalise, ProDA's mean features as they are)."""

    kind = "fixed_classifier"

    def __init__(
        self,
        visual: nn.Module,
        class_features: torch.Tensor,
        logit_scale: torch.Tensor,
        projector: nn.Module | None = None,
        vision_prompts: tuple[torch.Tensor, Sequence[torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.visual = visual
        self.projector = projector
        self.register_buffer("class_features", class_features.detach().float().clone())
        self.register_buffer("logit_scale", logit_scale.detach().float().reshape(()).clone())
        self.num_deep_prompts = None if vision_prompts is None else len(vision_prompts[1])
        if vision_prompts is not None:  # MaPLe: layer-0 and deeper vision prompts, fixed after training
            shared_ctx, deep = vision_prompts
            self.register_buffer("shared_ctx", shared_ctx.detach().float().clone())
            for i, prompt in enumerate(deep):
                self.register_buffer(f"deep_prompt_{i}", prompt.detach().float().clone())
        self.eval()

    @property
    def num_classes(self) -> int:
        return int(self.class_features.shape[0])

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features ``[B, E]`` in the class features' space."""
        if self.num_deep_prompts is None:
            features = self.visual(image)
        else:
            deep = [getattr(self, f"deep_prompt_{i}") for i in range(self.num_deep_prompts)]
            features = self.visual(image, self.shared_ctx, deep)
        if self.projector is not None:
            features = self.projector(features)
        return F.normalize(features, dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encode_image(image)
        return self.logit_scale.exp() * features @ self.class_features.t().to(features.dtype)

    def export_state(self) -> dict[str, Any]:
        projector = None
        if self.projector is not None:
            first, last = self.projector.conv1[0], self.projector.conv1[3]
            projector = [int(first.in_channels), int(last.out_channels)]
        architecture = {
            "vision_design": dataclasses.asdict(_vision_design(self.visual)),
            "projector": projector,
            "num_deep_prompts": self.num_deep_prompts,
        }
        return {"architecture": architecture, "state_dict": _cpu_state(self)}

    @classmethod
    def from_export(cls, architecture: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> FixedClassifier:
        from trainers.promptkd import StudentProjector

        design = clip.PromptDesign(**architecture["vision_design"])
        visual = clip.build_visual({k: v for k, v in state.items() if k.startswith("visual.")}, design)
        projector = None
        if architecture["projector"] is not None:
            projector = StudentProjector(*architecture["projector"])
        prompts = None
        if architecture["num_deep_prompts"] is not None:
            deep = [state[f"deep_prompt_{i}"] for i in range(architecture["num_deep_prompts"])]
            prompts = (state["shared_ctx"], deep)
        model = cls(visual, state["class_features"], state["logit_scale"], projector, prompts)
        model.load_state_dict(dict(state), strict=True)
        return model.eval()


def fixed_classifier(prompted: nn.Module, class_features: torch.Tensor | None = None) -> FixedClassifier:
    """The fixed classifier of a prompted CLIP (``image_encoder``, ``logit_scale``, ``encode_text()``; MaPLe's also
    ``vision_prompts()``), with its class features encoded once unless given (fp32, no autocast)."""
    with torch.no_grad():
        device = prompted.logit_scale.device
        with torch.autocast(device_type=device.type, enabled=False):
            if class_features is None:
                class_features = prompted.encode_text()
            vision_prompts = prompted.vision_prompts() if hasattr(prompted, "vision_prompts") else None
    return FixedClassifier(prompted.image_encoder, class_features, prompted.logit_scale, vision_prompts=vision_prompts)


class ConditionalClassifier(InferenceModel):
    """CoCoOp: the prompts depend on each image's features, so the model runs whole (text tower included)."""

    kind = "cocoop"

    def __init__(
        self,
        model: nn.Module,
        n_ctx: int,
        ctx_init: str,
        clip_state: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.n_ctx, self.ctx_init = n_ctx, ctx_init
        self._clip_state = clip_state  # gives the CLIP the model was built on, for export
        self.eval()

    @property
    def num_classes(self) -> int:
        return int(self.model.prompt_learner.n_cls)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def export_state(self) -> dict[str, Any]:
        if self._clip_state is None:
            raise ValueError("ConditionalClassifier built without its CLIP state dict cannot be exported")
        learner = self.model.prompt_learner
        architecture = {"n_ctx": int(self.n_ctx), "ctx_init": str(self.ctx_init)}
        learned = {k: v for k, v in learner.state_dict().items() if k not in ("token_prefix", "token_suffix")}
        return {
            "architecture": architecture,
            "state_dict": {k: v.detach().cpu() for k, v in learned.items()},
            "clip_state_dict": {k: v.detach().cpu() for k, v in self._clip_state().items()},
        }

    @classmethod
    def from_export(
        cls, architecture: Mapping[str, Any], state: Mapping[str, torch.Tensor], payload: Mapping[str, Any]
    ) -> ConditionalClassifier:
        from trainers.cocoop import CoCoOpCLIP, CoCoOpPromptLearner

        clip_model = clip.build_model(payload["clip_state_dict"], clip.PromptDesign())
        learner = CoCoOpPromptLearner(
            payload["classnames"], clip_model, architecture["n_ctx"], architecture["ctx_init"]
        )
        missing, unexpected = learner.load_state_dict(dict(state), strict=False)
        if unexpected or set(missing) - {"token_prefix", "token_suffix"}:
            raise CheckpointError("exported CoCoOp prompts do not match", f"missing {missing}, unexpected {unexpected}")
        return cls(CoCoOpCLIP(clip_model, learner), architecture["n_ctx"], architecture["ctx_init"])


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _plain(value: Any) -> Any:
    """A config value as plain containers (what ``weights_only`` loading admits)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def eval_transform(input_cfg: Mapping[str, Any]) -> Any:
    """The evaluator's test-time pipeline for the ``INPUT`` settings of a run (resize, crop, normalise)."""
    from dassl.config import get_cfg_default
    from dassl.data.transforms import build_transform

    cfg = get_cfg_default()
    for key, value in _plain(dict(input_cfg)).items():
        cfg.INPUT[key] = CfgNode(value) if isinstance(value, dict) else value
    cfg.INPUT.SIZE = tuple(cfg.INPUT.SIZE)
    described = io.StringIO()
    with contextlib.redirect_stdout(described):  # the engine prints the pipeline; a library call logs it
        transform = build_transform(cfg, is_train=False)
    logger.debug("%s", described.getvalue().rstrip())
    return transform


@dataclass
class ExportedModel:
    """What :func:`load_exported_model` returns: the module, its class names and test-time preprocessing."""

    model: InferenceModel
    classnames: list[str]
    transform: Any
    precision: str
    provenance: dict[str, Any]
    input: dict[str, Any]


def export_model(
    model: InferenceModel,
    classnames: Sequence[str],
    input_cfg: Mapping[str, Any],
    precision: str,
    provenance: Mapping[str, Any],
    path: str,
) -> None:
    """Write the self-contained file ``path`` (atomically)."""
    from dassl.utils import atomic_torch_save

    if len(classnames) != model.num_classes:
        raise ValueError(f"{len(classnames)} class names for a model of {model.num_classes} classes")
    payload = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "kind": model.kind,
        "classnames": list(classnames),
        "input": _plain(dict(input_cfg)),
        "precision": str(precision),
        "provenance": _plain(dict(provenance)),
        **model.export_state(),
    }
    atomic_torch_save(payload, path)


def build_inference_model(payload: Mapping[str, Any]) -> InferenceModel:
    """The module of an export payload."""
    if payload["kind"] == FixedClassifier.kind:
        return FixedClassifier.from_export(payload["architecture"], payload["state_dict"])
    if payload["kind"] == ConditionalClassifier.kind:
        return ConditionalClassifier.from_export(payload["architecture"], payload["state_dict"], payload)
    raise CheckpointError(f"unknown exported model kind {payload['kind']!r}", "kind", "re-export with this version")


def load_exported_model(path: str, device: str | torch.device = "cpu") -> ExportedModel:
    """Load a file written by ``predict.py --export`` (``torch.load(weights_only=True)``; nothing is executed)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(
            "exported model not found", path, "check the path (predict.py --export writes one)"
        ) from err
    except pickle.UnpicklingError as err:  # weights_only refused a global: nothing was executed
        raise CheckpointError(
            "refused to load the exported model: it holds objects other than tensors and plain containers; "
            "nothing in it was run",
            path,
            "re-export it with predict.py --export",
        ) from err
    except Exception as err:  # a truncated file, not a torch file
        raise CheckpointError(
            f"not a readable exported model ({type(err).__name__})", path, "re-export it with predict.py --export"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            "not an exported model (a checkpoint of a training run?)",
            path,
            "pass a file written by predict.py --export, or the run folder with --model-dir",
        )
    if payload.get("version") != EXPORT_VERSION:
        raise CheckpointError(f"export version {payload.get('version')} is not {EXPORT_VERSION}", path, "re-export it")
    model = build_inference_model(payload).to(device)
    return ExportedModel(
        model=model,
        classnames=list(payload["classnames"]),
        transform=eval_transform(payload["input"]),
        precision=payload["precision"],
        provenance=dict(payload["provenance"]),
        input=dict(payload["input"]),
    )
