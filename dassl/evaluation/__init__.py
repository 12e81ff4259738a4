"""Evaluators (``TEST.EVALUATOR``); ``Classification`` prints the block that log parsers read."""

from .build import EVALUATOR_REGISTRY, build_evaluator
from .evaluator import Classification, EvaluatorBase

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator", "Classification", "EvaluatorBase"]
