"""ProDA: prompt distribution learning (Lu et al., CVPR 2022, arXiv 2205.03340).

A bank of K learnable contexts (``prompt_learner.ctx [K, L, D]``, the only trained tensor) shared by all classes.
Prompt k puts the class name in ``front`` (k < K/4), in the ``middle`` (K/4 <= k < K/2) or at the ``end`` of its
context, so the text features of class c form a small sample ``w_{c,1..K}`` of a distribution. Training treats
the classifier weight of class c as a Gaussian over that sample (mean ``mu_c``, diagonal per-dimension
covariance across classes) and minimises an upper bound of the expected cross-entropy: the logits plus half the
variance of each logit difference (paper eq. 7). A diversity term keeps the K class-agnostic prompts apart.
At test time the classifier is the mean of all K normalised text features per class, not re-normalised.

Per step the trainer takes the next M prompts of a random permutation of the bank (a cycle of K/M steps, drawn
from the learner's own generator, whose state is a checkpoint buffer so that resume continues the cycle), encodes
C*M class prompts (+ K class-agnostic ones for the diversity term) with gradient, and computes mean, variance
and loss in fp32 under every ``PREC``. The variance never forms the D x C x C covariance: it is a per-class term
plus one ``(B, M*D) x (M*D, C)`` product. Details and the choices where public ports disagree: docs/proda.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from dassl.config import register_cfg_defaults
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common import (
    CLASS_TOKEN_POSITIONS,
    assemble_prompts,
    class_token_order,
    name_token_counts,
    random_context,
    register_prompt_token_buffers,
)
from .common.inference import FixedClassifier, fixed_classifier
from .coop import CoOpTextPromptTrainer, FrozenTowersCLIP

__all__ = [
    "ProDA",
    "ProDACLIP",
    "ProDAPromptLearner",
    "PromptCycle",
    "diversity_loss",
    "proda_loss",
    "prompt_positions",
    "surrogate_variance",
]

logger = logging.getLogger(__name__)


@register_cfg_defaults
def _add_proda_defaults(cfg: CN) -> None:
    """``TRAINER.PRODA`` defaults: the paper's bank of 32 prompts of 16 tokens, 4 per step, diversity 0.1."""
    cfg.TRAINER.PRODA = CN()
    cfg.TRAINER.PRODA.N_CTX = 16  # context tokens per prompt (L)
    cfg.TRAINER.PRODA.N_PROMPT = 32  # prompts in the bank (K): 1 or a multiple of 4
    cfg.TRAINER.PRODA.PROMPT_BATCH_SIZE = 4  # prompts per training step (M), divides K
    cfg.TRAINER.PRODA.DIVERSITY_WEIGHT = 0.1  # lambda of the class-agnostic diversity loss (0: not computed)
    cfg.TRAINER.PRODA.PREC = "fp16"  # fp16, fp32, amp, bf16 (the loss itself always runs in fp32)


def prompt_positions(n_prompt: int) -> list[str]:
    """Class-name position of each prompt, fixed by its index: the first quarter ``front``, the second ``middle``,
    the rest ``end`` (one prompt: ``end``)."""
    if n_prompt == 1:
        return ["end"]
    if n_prompt < 1 or n_prompt % 4:
        raise ValueError(f"the prompt bank needs 1 or a multiple of 4 prompts, got {n_prompt}")
    quarter = n_prompt // 4
    return ["front"] * quarter + ["middle"] * quarter + ["end"] * (n_prompt - 2 * quarter)


class PromptCycle(nn.Module):
    """Which M prompts of the bank a training step uses: the next M of a random permutation, a new permutation
    every K/M steps.

    The permutation, the position in it and the generator's state are persistent buffers, so checkpoints carry
    them and a resumed run continues the cycle where the interrupted one stopped.
    """

    def __init__(self, n_prompt: int, prompt_batch_size: int, seed: int) -> None:
        super().__init__()
        if prompt_batch_size < 1 or n_prompt % prompt_batch_size:
            raise ValueError(f"PROMPT_BATCH_SIZE must divide N_PROMPT, got {prompt_batch_size} and {n_prompt}")
        self.n_prompt = n_prompt
        self.prompt_batch_size = prompt_batch_size
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("generator_state", generator.get_state())
        self.register_buffer("order", torch.arange(n_prompt))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))

    def next_indices(self) -> torch.Tensor:
        """Indices ``[M]`` of the prompts of the next step (advances the cycle)."""
        position = int(self.position)
        if position == 0:
            generator = torch.Generator()
            generator.set_state(self.generator_state.cpu())
            self.order.copy_(torch.randperm(self.n_prompt, generator=generator))
            self.generator_state.copy_(generator.get_state())
        indices = self.order[position : position + self.prompt_batch_size].clone()
        self.position.fill_((position + self.prompt_batch_size) % self.n_prompt)
        return indices


class ProDAPromptLearner(nn.Module):
    """The prompt bank ``ctx [K, L, D]`` and the fixed token embeddings of every class in every layout.

    ``pair_prompts(k, c)`` assembles prompt k for class c (one row per pair) through the shared assembly; the
    class-agnostic prompts ``[SOT] ctx_k "." [EOT]`` feed the diversity loss. Token buffers end at the last EOT
    (``trim``) because up to K x C prompts are assembled at once.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int,
        n_prompt: int,
        prompt_batch_size: int,
        seed: int,
    ) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("ProDAPromptLearner needs at least one class name")
        if n_ctx < 1:
            raise ValueError(f"N_CTX must be >= 1, got {n_ctx}")
        positions = prompt_positions(n_prompt)
        width = clip_model.token_embedding.weight.shape[1]
        self.n_cls = len(classnames)
        self.n_ctx = n_ctx
        self.n_prompt = n_prompt
        self.ctx = nn.Parameter(random_context(n_prompt, n_ctx, width))
        placeholder = " ".join(["X"] * n_ctx)
        tokenized = register_prompt_token_buffers(self, clip_model, placeholder, classnames, n_ctx, trim=True)
        name_lens = name_token_counts(tokenized, n_ctx)
        orders = [class_token_order(n_ctx, name_lens, tokenized.shape[1], p) for p in CLASS_TOKEN_POSITIONS]
        self.register_buffer("token_orders", torch.stack(orders), persistent=False)  # (3, C, L)
        layout = torch.tensor([CLASS_TOKEN_POSITIONS.index(p) for p in positions], dtype=torch.long)
        self.register_buffer("prompt_layout", layout, persistent=False)  # (K,) index into CLASS_TOKEN_POSITIONS
        self.agnostic = nn.Module()
        register_prompt_token_buffers(self.agnostic, clip_model, placeholder, [""], n_ctx, trim=True)
        self.sampler = PromptCycle(n_prompt, prompt_batch_size, seed)
        counts = {p: positions.count(p) for p in CLASS_TOKEN_POSITIONS}
        logger.info(
            "ProDA prompt bank: %d prompts x %d context tokens (name at front %d, middle %d, end %d), %d per step",
            n_prompt,
            n_ctx,
            counts["front"],
            counts["middle"],
            counts["end"],
            prompt_batch_size,
        )

    def pair_prompts(self, prompt_index: torch.Tensor, class_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``[N, L, D]`` and token ids ``[N, L]`` of prompt ``prompt_index[i]`` for class
        ``class_index[i]``."""
        order = self.token_orders[self.prompt_layout[prompt_index], class_index]  # (N, L)
        prompts = assemble_prompts(
            self.token_prefix[class_index], self.ctx[prompt_index], self.token_suffix[class_index], order
        )
        return prompts, self.tokenized_prompts[class_index]

    def class_pairs(self, prompt_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompt index, class index)`` of every class for each given prompt, prompt-major (``[M*C]`` each)."""
        classes = torch.arange(self.n_cls, device=prompt_indices.device)
        return prompt_indices.repeat_interleave(self.n_cls), classes.repeat(prompt_indices.numel())

    def agnostic_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``[K, L', D]`` and ids ``[K, L']`` of the K prompts without a class name."""
        agnostic = self.agnostic
        prompts = assemble_prompts(agnostic.token_prefix, self.ctx, agnostic.token_suffix)
        return prompts, agnostic.tokenized_prompts.expand(self.n_prompt, -1)


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    """At least fp32 (fp64 stays fp64, so tests can compare against exact references)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def surrogate_variance(image_features: torch.Tensor, text_features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``sigma [B, C]``: variance of the logit difference ``z . (w_j - w_y)`` under the prompt distribution.

    ``image_features z [B, E]``, ``text_features w [C, M, E]`` (M prompts per class), ``label y [B]``. With the
    centred features ``u = w - mean_k w`` and the per-dimension covariance ``Cov_d(a, c) = sum_k u_akd u_ckd /
    (M+1)`` (divisor M+1 as every public implementation):
    ``sigma_bj = sum_d z_bd^2 (Cov_d(j,j) + Cov_d(y,y) - 2 Cov_d(y,j))``
    ``= (z^2 . sum_k u_j^2 + z^2 . sum_k u_y^2 - 2 <z^2 * u_y, u_j>) / (M+1)``, the last term one
    ``(B, M*E) x (M*E, C)`` product; the ``E x C x C`` covariance is never formed. Exact zero for ``j = y`` and
    clamped at 0 against rounding. Computed in fp32 (fp64 inputs stay fp64) outside any autocast region.
    """
    with torch.autocast(device_type=image_features.device.type, enabled=False):
        z2 = _fp32(image_features).square()  # (B, E)
        w = _fp32(text_features)
        u = w - w.mean(dim=1, keepdim=True)  # (C, M, E)
        n_samples = u.shape[1]
        own = z2 @ u.square().sum(dim=1).t()  # (B, C): sum_d z^2 Cov_d(j, j) * (M+1)
        own_true = own.gather(1, label[:, None])  # (B, 1)
        cross = (z2[:, None, :] * u[label]).flatten(1) @ u.flatten(1).t()  # (B, C)
        sigma = (own + own_true - 2 * cross) / (n_samples + 1)
        return sigma.clamp_min(0).scatter(1, label[:, None], 0.0)


def diversity_loss(features: torch.Tensor) -> torch.Tensor:
    """Mean absolute cosine similarity between different prompts (``features [K, E]``, L2-normalised)."""
    n = features.shape[0]
    if n < 2:
        return features.sum() * 0
    gram = _fp32(features) @ _fp32(features).t()
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=features.device)
    return gram.abs()[off_diagonal].mean()


def proda_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    label: torch.Tensor,
    logit_scale: torch.Tensor,
    agnostic_features: torch.Tensor | None = None,
    diversity_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """ProDA's training loss and its parts, in fp32 whatever the autocast region.

    ``logits = s z . mu`` with ``mu_c = mean_k w_ck`` (not re-normalised), ``s = exp(logit_scale)``; the
    cross-entropy is taken on ``logits + s^2 sigma / 2`` (:func:`surrogate_variance`); with agnostic features the
    diversity term is added with ``diversity_weight``. Returns ``loss``, ``ce``, ``logits`` (+ ``diversity``).
    """
    with torch.autocast(device_type=image_features.device.type, enabled=False):
        z = _fp32(image_features)
        w = _fp32(text_features)
        scale = _fp32(logit_scale).exp()
        logits = scale * z @ w.mean(dim=1).t()  # (B, C)
        refined = logits + 0.5 * scale.square() * surrogate_variance(z, w, label)
        ce = F.cross_entropy(refined, label)
        terms = {"loss": ce, "ce": ce, "logits": logits}
        if agnostic_features is not None:
            terms["diversity"] = diversity_loss(agnostic_features)
            terms["loss"] = ce + diversity_weight * terms["diversity"]
        return terms


class ProDACLIP(FrozenTowersCLIP):
    """Frozen CLIP towers + the ProDA prompt bank.

    ``forward(image)`` gives class logits with the mean classifier of all K prompts; ``forward(image, label,
    prompt_indices, diversity_weight)`` the training loss terms of :func:`proda_loss`. The classifier is computed
    without gradient and cached under the identity and version counter of the prompt bank and the class tokens:
    an optimiser step, ``load_state_dict``, resume or a new class set (a new learner) all recompute it.
    """

    prompt_learner: ProDAPromptLearner

    # Sequences per text-tower pass when the classifier encodes all K x C prompts (the last chunk may be smaller).
    max_text_sequences = 1024

    def __init__(self, clip_model: nn.Module, prompt_learner: ProDAPromptLearner) -> None:
        super().__init__(clip_model, prompt_learner)
        self._classifier: torch.Tensor | None = None
        self._classifier_key: tuple | None = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised features ``[B, E]`` of the frozen image tower (no gradient)."""
        with torch.no_grad():
            return F.normalize(self.image_encoder(image), dim=-1)

    def encode_pairs(self, prompt_index: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features ``[N, E]`` of the given (prompt, class) pairs."""
        prompts, tokenized = self.prompt_learner.pair_prompts(prompt_index, class_index)
        return F.normalize(self.text_encoder(prompts, tokenized), dim=-1)

    def encode_prompts(self, prompt_indices: torch.Tensor) -> torch.Tensor:
        """Features ``[C, M, E]`` of the given prompts for every class (with gradient)."""
        learner = self.prompt_learner
        features = self.encode_pairs(*learner.class_pairs(prompt_indices))  # (M*C, E)
        return features.view(prompt_indices.numel(), learner.n_cls, -1).transpose(0, 1)

    def encode_agnostic(self) -> torch.Tensor:
        """Features ``[K, E]`` of the class-agnostic prompts (with gradient)."""
        return F.normalize(self.text_encoder(*self.prompt_learner.agnostic_prompts()), dim=-1)

    @torch.no_grad()
    def compute_class_features(self) -> torch.Tensor:
        """Classifier ``[C, E]`` (fp32): mean over all K prompts of the normalised features of each class.

        The K*C prompts are encoded in chunks of ``max_text_sequences`` consecutive (prompt, class) pairs,
        prompt-major, the last partial chunk included.
        """
        learner = self.prompt_learner
        device = learner.ctx.device
        prompt_index, class_index = learner.class_pairs(torch.arange(learner.n_prompt, device=device))
        chunks = [
            self.encode_pairs(p, c).float()
            for p, c in zip(
                prompt_index.split(self.max_text_sequences), class_index.split(self.max_text_sequences), strict=True
            )
        ]
        return torch.cat(chunks).view(learner.n_prompt, learner.n_cls, -1).mean(dim=0)

    def _classifier_state(self) -> tuple:
        learner = self.prompt_learner
        ctx, tokens = learner.ctx, learner.tokenized_prompts
        device_type = ctx.device.type
        autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        return (id(learner), ctx.data_ptr(), ctx._version, ctx.device, id(tokens), tokens.shape, autocast)

    def class_features(self) -> torch.Tensor:
        """The cached classifier, recomputed when the prompt bank or the class tokens changed."""
        key = self._classifier_state()
        if self._classifier is None or self._classifier_key != key:
            self._classifier = self.compute_class_features()
            self._classifier_key = key
        return self._classifier

    def forward(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None = None,
        prompt_indices: torch.Tensor | None = None,
        diversity_weight: float = 0.0,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        image_features = self.encode_image(image)  # (B, E)
        if label is None:
            return self.logit_scale.exp().float() * image_features.float() @ self.class_features().t()
        if prompt_indices is None:
            raise ValueError("ProDA training needs the prompt_indices of the step (PromptCycle.next_indices())")
        text_features = self.encode_prompts(prompt_indices)  # (C, M, E)
        agnostic = self.encode_agnostic() if diversity_weight > 0 else None
        return proda_loss(image_features, text_features, label, self.logit_scale, agnostic, diversity_weight)


@TRAINER_REGISTRY.register()
class ProDA(CoOpTextPromptTrainer):
    """Prompt Distribution Learning (Lu et al., CVPR 2022); registered model ``prompt_learner`` (key ``ctx`` plus
    the ``sampler.*`` cycle state, which only resume reads)."""

    IGNORE_PREFIXES = ("sampler.",)

    def inference_model(self) -> FixedClassifier:
        """The fixed classifier of the mean class features over the whole prompt bank (as the evaluator)."""
        self.set_model_mode("eval")
        return fixed_classifier(self.model, self.model.compute_class_features())

    def check_cfg(self, cfg: CN) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.PRODA
        if node.N_CTX < 1:
            raise ValueError(f"TRAINER.PRODA.N_CTX is {node.N_CTX}; it must be >= 1 (the paper uses 16)")
        if node.N_PROMPT != 1 and (node.N_PROMPT < 4 or node.N_PROMPT % 4):
            raise ValueError(
                f"TRAINER.PRODA.N_PROMPT is {node.N_PROMPT}; use 1 or a multiple of 4 (a quarter of the prompts puts "
                "the class name in front, a quarter in the middle, the rest at the end); the paper uses 32"
            )
        m = node.PROMPT_BATCH_SIZE
        if m < 1 or node.N_PROMPT % m:
            raise ValueError(
                f"TRAINER.PRODA.PROMPT_BATCH_SIZE is {m}; it must divide TRAINER.PRODA.N_PROMPT={node.N_PROMPT} "
                "(e.g. 4 for 32 prompts)"
            )
        if node.DIVERSITY_WEIGHT < 0:
            raise ValueError(f"TRAINER.PRODA.DIVERSITY_WEIGHT is {node.DIVERSITY_WEIGHT}; it must be >= 0")

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.cfg.TRAINER.PRODA
        seed = int(torch.randint(0, 2**62, ()).item())  # from the run's seeded RNG
        return ProDAPromptLearner(
            classnames,
            clip_model,
            n_ctx=node.N_CTX,
            n_prompt=node.N_PROMPT,
            prompt_batch_size=node.PROMPT_BATCH_SIZE,
            seed=seed,
        )

    def build_custom_clip(self, clip_model: nn.Module, prompt_learner: nn.Module) -> nn.Module:
        return ProDACLIP(clip_model, prompt_learner)

    @property
    def prompt_learner(self) -> ProDAPromptLearner:
        """The registered (unwrapped) prompt bank."""
        return self._models[self.MODEL_NAME]

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        weight = float(self.cfg.TRAINER.PRODA.DIVERSITY_WEIGHT)
        indices = self.prompt_learner.sampler.next_indices()
        with self.autocast():
            terms = self.model(image, label=label, prompt_indices=indices, diversity_weight=weight)
        self.model_backward_and_update(terms["loss"])
        summary = {"loss": terms["loss"].item(), "acc": compute_accuracy(terms["logits"], label)[0].item()}
        if "diversity" in terms:
            summary["div"] = terms["diversity"].item()
        self.update_lr_after_last_batch()
        return summary
