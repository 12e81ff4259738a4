"""``SimpleNet``: upstream's backbone + head + classifier network.

Upstream builds the backbone from its own CNN registry (ResNets, AlexNet, ...), which is out of scope here:
every CLIP trainer overrides ``build_model``. This implementation accepts any torchvision classification model
name as ``MODEL.BACKBONE.NAME`` (randomly initialised: no weight download), replaces its final classifier by an
identity to expose features, and adds the optional MLP head and linear classifier as upstream does.
"""

from __future__ import annotations

import torch
from torch import nn


def _strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """Replace the last classification layer of a torchvision model by Identity; return (model, feature dim)."""
    for attr in ("fc", "classifier", "head", "heads"):
        layer = getattr(model, attr, None)
        if layer is None:
            continue
        linears = [m for m in layer.modules() if isinstance(m, nn.Linear)] if isinstance(layer, nn.Module) else []
        if isinstance(layer, nn.Linear) or linears:
            fdim = layer.in_features if isinstance(layer, nn.Linear) else linears[0].in_features
            setattr(model, attr, nn.Identity())
            return model, fdim
    raise ValueError(f"Cannot find the classifier layer of {type(model).__name__} to expose its features")


class SimpleNet(nn.Module):
    """Backbone -> optional MLP head -> optional linear classifier (``num_classes > 0``)."""

    def __init__(self, cfg, model_cfg, num_classes: int, **kwargs) -> None:
        super().__init__()
        import torchvision

        name = model_cfg.BACKBONE.NAME
        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise NotImplementedError(
                f"SimpleNet backbone MODEL.BACKBONE.NAME={name!r} is not available: Dassl's CNN registry is not "
                f"part of this package. Use a torchvision model name (e.g. 'resnet18'), or override "
                f"build_model() in your trainer."
            )
        if model_cfg.BACKBONE.PRETRAINED:
            raise NotImplementedError(
                "SimpleNet does not download pretrained backbones; set MODEL.BACKBONE.PRETRAINED False and load "
                "weights with MODEL.INIT_WEIGHTS instead"
            )
        self.backbone, fdim = _strip_classifier(torchvision.models.get_model(name, weights=None))

        self.head = None
        if model_cfg.HEAD.NAME and model_cfg.HEAD.HIDDEN_LAYERS:
            layers: list[nn.Module] = []
            in_dim = fdim
            act = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU}.get(model_cfg.HEAD.ACTIVATION)
            if act is None:
                raise ValueError(
                    f"MODEL.HEAD.ACTIVATION={model_cfg.HEAD.ACTIVATION!r}; allowed: 'relu', 'leaky_relu', 'elu'"
                )
            for hidden in model_cfg.HEAD.HIDDEN_LAYERS:
                layers.append(nn.Linear(in_dim, hidden))
                if model_cfg.HEAD.BN:
                    layers.append(nn.BatchNorm1d(hidden))
                layers.append(act())
                if model_cfg.HEAD.DROPOUT > 0:
                    layers.append(nn.Dropout(model_cfg.HEAD.DROPOUT))
                in_dim = hidden
            self.head = nn.Sequential(*layers)
            fdim = in_dim

        self.classifier = nn.Linear(fdim, num_classes) if num_classes > 0 else None
        self._fdim = fdim

    @property
    def fdim(self) -> int:
        return self._fdim

    def forward(self, x: torch.Tensor, return_feature: bool = False):
        f = self.backbone(x)
        if self.head is not None:
            f = self.head(f)
        if self.classifier is None:
            return f
        y = self.classifier(f)
        return (y, f) if return_feature else y
