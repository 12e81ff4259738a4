"""Offline end-to-end demo of PromptSRC -> PromptKD on a generated benchmark (``python -m demo``, issue #7).

Modules: ``shapes`` (the dataset), ``pretrain`` (tiny teacher/student CLIPs, cached), ``config`` (presets in
``configs/demo/``), ``pipeline`` (the runs through ``train.py`` and ``parse_test_res.py``), ``progress``.
"""
