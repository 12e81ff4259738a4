"""Shared prompt-learning pieces: one implementation of each concept for every trainer in ``trainers/``.

Contract (what other trainers may import from ``trainers.common``):

- CLIP weights from the config: ``load_clip_state_dict(cfg, name_or_path=None)`` (registry name or path via
  ``clip.load_state_dict``, honouring ``MODEL.WEIGHTS_DIR`` / ``MODEL.TRUST_TORCHSCRIPT``),
  ``build_clip_model(cfg, design=None, name_or_path=None, state_dict=None)``, ``check_input_size(cfg, res)``.
- Prompt text (§2.4): ``clean_classname``, ``prompt_template(prefix)``, ``prompt_texts(prefix, classnames)``,
  ``count_phrase_tokens``, ``phrase_context(clip_model, phrase, n_ctx)`` (validated: N_CTX may not exceed the
  phrase's tokens),
  ``random_context(*shape)``, ``init_text_context(clip_model, n_ctx, ctx_init)`` (IVLP/PromptSRC/MaPLe rule),
  ``register_prompt_token_buffers(module, clip_model, prefix, classnames, n_ctx)`` (non-persistent
  ``tokenized_prompts`` / ``token_prefix`` / ``token_suffix``).
- ``VLPromptLearner(classnames, clip_model, n_ctx, ctx_init)``: ``ctx`` parameter, non-persistent token buffers,
  ``forward() -> [C, L, D]``; ``PromptedCLIP`` (IVLP model) and ``ivlp_design(...)``.
- Freezing (§3.0): ``freeze_by_name(model, frozen_markers=())``, ``is_prompt_parameter``,
  ``log_trainable_parameters(model)``.
- Checkpoints (decision 9): ``install_trained_state_checkpointing(model)`` (``state_dict()`` = trainable params +
  persistent buffers), ``full_state_dict(model)`` (unfiltered), ``load_trained_state(model, state_dict, ...)``
  (exact key accounting), ``TOKEN_BUFFER_KEYS``, ``trained_state_keys``.
- Zero-shot text features of a plain CLIP: ``class_text_features(clip_model, classnames, templates)`` (raw
  ``[T, C, E]``), ``ensemble_text_features`` (normalised template ensemble ``[C, E]``).
- Distillation teacher: ``build_teacher(cfg, clip_weights, checkpoint, classnames, ctx_init, device)`` ->
  ``FrozenTeacher`` (image tower, ``logit_scale``, class features ``W`` computed once, ``text_tower_runs``,
  ``logits(image)``), ``resolve_teacher_checkpoint(value, default, key)`` (file, run folder or ``none``),
  ``infer_teacher_design(state_dict)``.
- Base-to-novel evaluation by logit columns: ``base_novel_subsets(C)``, ``evaluate_class_subsets(trainer,
  subsets, split)`` (one pass over ``trainer.test_loader``, one result block + record per subset),
  ``report_base_novel(trainer, base, novel)`` (HM block + ``summary`` record), ``ClassSubsetEvaluator``.
- Losses: ``kl_logit_loss(student_logits, teacher_logits, temperature)``.
- ``CLIPPromptTrainer`` (``TrainerX`` base: PREC check, batch parsing, model registration, ``load_model``) and
  ``resolve_checkpoint_file``; ``trainer_node(cfg)`` returns ``cfg.TRAINER.<NAME>``.
- Config: ``TRAINER.MODAL`` (``base2novel`` | ``cross``) is registered here.
"""

from .checkpoint import (
    TOKEN_BUFFER_KEYS,
    full_state_dict,
    install_trained_state_checkpointing,
    load_trained_state,
    persistent_buffer_names,
    state_keys,
    trained_state_keys,
)
from .class_subsets import ClassSubsetEvaluator, base_novel_subsets, evaluate_class_subsets, report_base_novel
from .clip_loading import build_clip_model, check_input_size, load_clip_state_dict
from .config import VALID_MODALS, trainer_node
from .freezing import TRAINABLE_MARKERS, freeze_by_name, is_prompt_parameter, log_trainable_parameters
from .losses import kl_logit_loss
from .prompt_learner import VLPromptLearner
from .prompt_text import (
    MAX_PHRASE_INIT_CTX,
    clean_classname,
    count_phrase_tokens,
    init_text_context,
    phrase_context,
    prompt_template,
    prompt_texts,
    random_context,
    register_prompt_token_buffers,
)
from .prompted_clip import PromptedCLIP, ivlp_design
from .teacher import (
    TEACHER_IGNORE_PREFIXES,
    ZERO_SHOT_TEACHER,
    FrozenTeacher,
    build_teacher,
    infer_teacher_design,
    resolve_teacher_checkpoint,
)
from .trainer import CLIPPromptTrainer, resolve_checkpoint_file
from .zero_shot import class_text_features, ensemble_text_features

__all__ = [
    "CLIPPromptTrainer",
    "ClassSubsetEvaluator",
    "FrozenTeacher",
    "MAX_PHRASE_INIT_CTX",
    "PromptedCLIP",
    "TEACHER_IGNORE_PREFIXES",
    "TOKEN_BUFFER_KEYS",
    "TRAINABLE_MARKERS",
    "VALID_MODALS",
    "VLPromptLearner",
    "ZERO_SHOT_TEACHER",
    "base_novel_subsets",
    "build_clip_model",
    "build_teacher",
    "check_input_size",
    "class_text_features",
    "clean_classname",
    "count_phrase_tokens",
    "ensemble_text_features",
    "evaluate_class_subsets",
    "freeze_by_name",
    "full_state_dict",
    "infer_teacher_design",
    "init_text_context",
    "install_trained_state_checkpointing",
    "is_prompt_parameter",
    "ivlp_design",
    "kl_logit_loss",
    "load_clip_state_dict",
    "load_trained_state",
    "log_trainable_parameters",
    "persistent_buffer_names",
    "phrase_context",
    "prompt_template",
    "prompt_texts",
    "random_context",
    "register_prompt_token_buffers",
    "report_base_novel",
    "resolve_checkpoint_file",
    "resolve_teacher_checkpoint",
    "state_keys",
    "trained_state_keys",
    "trainer_node",
]
