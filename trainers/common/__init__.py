"""Shared prompt-learning pieces: one implementation of each concept for every trainer in ``trainers/``.

Other trainers import from ``trainers.common`` only the names in ``__all__`` below; each module's docstring says
what its piece does (``clip_loading``: CLIP weights from the config; ``prompt_text``: prompt templates and context
initialisation; ``prompt_layout``: where the class name sits in the context and the one assembly of prompt
embeddings; ``prompt_learner`` / ``prompted_clip``: the text prompt learner and the IVLP model; ``freezing``:
the name rule for what trains; ``checkpoint``: reading our and the official checkpoints; ``zero_shot``: text
features of a plain CLIP; ``teacher``: the frozen distillation teacher and teacher ensembles;
``teacher_cache``: stored teacher features of training views, read back by later runs; ``class_subsets``:
base-to-novel evaluation by logit columns; ``losses``; ``trainer``: the ``CLIPPromptTrainer`` base; ``config``:
``TRAINER.MODAL``). ``students`` (the CoOp/IVLP/MaPLe distillation students) is imported from
``trainers.common.students`` itself, as it builds on ``trainers.coop`` and ``trainers.maple``.
"""

from dassl.utils.trained_state import persistent_buffer_names, state_keys, trained_state_keys

from .checkpoint import TOKEN_BUFFER_KEYS, load_trained_state
from .class_subsets import ClassSubsetEvaluator, base_novel_subsets, evaluate_class_subsets, report_base_novel
from .clip_loading import build_clip_model, check_input_size, load_clip_state_dict
from .config import VALID_MODALS, trainer_node
from .freezing import freeze_by_name, is_prompt_parameter, log_trainable_parameters, store_matmul_weights_in
from .losses import kl_logit_loss, kl_target_loss
from .prompt_layout import CLASS_TOKEN_POSITIONS, assemble_prompts, class_token_order, name_token_counts
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
    TeacherEnsemble,
    TeacherView,
    build_teacher,
    check_same_classes,
    infer_teacher_design,
    mixture_target,
    normalized_weights,
    resolve_teacher_checkpoint,
)
from .teacher_cache import CACHE_DTYPES, TeacherCache, batch_probe, tensor_fingerprint
from .trainer import CLIPPromptTrainer, resolve_checkpoint_file
from .zero_shot import class_text_features, ensemble_text_features

__all__ = [
    "CACHE_DTYPES",
    "CLASS_TOKEN_POSITIONS",
    "CLIPPromptTrainer",
    "ClassSubsetEvaluator",
    "FrozenTeacher",
    "TeacherCache",
    "TeacherEnsemble",
    "TeacherView",
    "MAX_PHRASE_INIT_CTX",
    "PromptedCLIP",
    "TEACHER_IGNORE_PREFIXES",
    "TOKEN_BUFFER_KEYS",
    "VALID_MODALS",
    "VLPromptLearner",
    "ZERO_SHOT_TEACHER",
    "base_novel_subsets",
    "assemble_prompts",
    "batch_probe",
    "build_clip_model",
    "build_teacher",
    "check_input_size",
    "class_text_features",
    "class_token_order",
    "clean_classname",
    "count_phrase_tokens",
    "ensemble_text_features",
    "evaluate_class_subsets",
    "freeze_by_name",
    "infer_teacher_design",
    "init_text_context",
    "is_prompt_parameter",
    "ivlp_design",
    "check_same_classes",
    "kl_logit_loss",
    "kl_target_loss",
    "load_clip_state_dict",
    "load_trained_state",
    "log_trainable_parameters",
    "mixture_target",
    "name_token_counts",
    "normalized_weights",
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
    "store_matmul_weights_in",
    "tensor_fingerprint",
    "trained_state_keys",
    "trainer_node",
]
