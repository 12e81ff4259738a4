"""Benchmarks of PromptKD's cost: distillation steps, evaluation and data loading (issue #8).

Benchmarks are scripts (``python -m bench.distill ...``), not tests; ``tests/test_bench_smoke.py`` only checks that
each one starts and prints its table at tiny sizes. See ``bench/README.md`` for how to run them and the measured
results.
"""
