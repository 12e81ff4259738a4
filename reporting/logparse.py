"""Read Dassl-style ``log.txt`` files: invocations, the config they printed, and their result blocks.

The engine appends every re-run to the same ``log.txt``; upstream Dassl instead starts
``log.txt-<timestamp>`` next to the old file. Either way one file set holds several
*invocations*, each starting with ``train.py``'s ``** Arguments **`` banner. Results are only trusted per
invocation: the end signal (``Finish training`` / ``=> result``) of a finished run must not
make the per-epoch ``val`` lines of a later, interrupted re-run count as final results.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

FINISH_SIGNAL = "Finish training"
# Dassl < 0.6.1 (CoOp-era logs) printed "Finished training"; forks' parsers wait for that one.
FINISH_SIGNALS = (FINISH_SIGNAL, "Finished training")
RESULT_SIGNAL = "=> result"
B2N_SIGNAL = "=> base-to-novel result"  # our PromptKD trainer: base_accuracy / novel_accuracy / HM lines
_ARGS_BANNER = "** Arguments **"
_CONFIG_BANNER = "** Config **"
_EVAL_LINE = re.compile(r"Evaluate on the \*(\w+)\* set")
_METRIC_LINE = re.compile(r"^\* (\w+): ([-+\d.,eE]+)(%?)$")
_CONFIG_LINE = re.compile(r"^( *)([A-Z0-9_]+):(?: (.*))?$")
_ARG_LINE = re.compile(r"^([a-z_]+):(?: (.*))?$")
_ITERATION_LINE = re.compile(r"^epoch \[\d+/\d+\]")
_TIMESTAMPED_LOG = re.compile(r"^log\.txt-(.+)$")


def upstream_metric_regex(keyword: str) -> re.Pattern[str]:
    """Upstream's metric pattern ``\\* {keyword}: ([\\.\\deE+-]+)%`` with the keyword escaped (upstream does not)."""
    return re.compile(r"\* " + re.escape(keyword) + r": ([\.\deE+-]+)%")


@dataclass
class ResultBlock:
    """One evaluator block (``=> result`` and its ``* name: value`` lines)."""

    split: str | None  # from the preceding "Evaluate on the *split* set" line, None when absent
    after_finish: bool  # printed after "Finish training" in the same invocation
    metrics: dict[str, float] = field(default_factory=dict)
    kind: str = "result"  # "result" (evaluator block) or "base2novel" (PromptKD's summary block)


@dataclass
class Invocation:
    """The lines one run of ``train.py`` wrote."""

    path: str
    lines: list[str] = field(default_factory=list)  # stripped
    args: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)  # dotted keys, raw text values
    blocks: list[ResultBlock] = field(default_factory=list)
    finished: bool = False
    trained: bool = False  # iteration lines seen

    @property
    def eval_only(self) -> bool:
        """An ``--eval-only`` run: said by its arguments, or guessed when it neither trained nor finished."""
        flag = self.args.get("eval_only")
        if flag is not None:
            return flag.strip() == "True"
        return not self.trained and not self.finished and bool(self.blocks)

    def final_block(self) -> ResultBlock | None:
        """The run's final result: last block after ``Finish training``, or the last block of an eval-only run."""
        blocks = [b for b in self.blocks if b.kind == "result"]
        if self.finished:
            after = [b for b in blocks if b.after_finish]
            return after[-1] if after else None
        if self.eval_only and blocks:
            return blocks[-1]
        return None

    def base2novel_block(self) -> ResultBlock | None:
        """PromptKD's ``=> base-to-novel result`` block of the final evaluation, if printed."""
        final = self.final_block()
        blocks = [
            b
            for b in self.blocks
            if b.kind == "base2novel" and b.after_finish == (final is not None and final.after_finish)
        ]
        return blocks[-1] if blocks else None

    def upstream_value(self, regex: re.Pattern[str], end_signals: tuple[str, ...]) -> float | None:
        """Upstream's rule inside this invocation: the last regex match on a line at or after an end signal."""
        seen_signal = False
        value = None
        for line in self.lines:
            if line in end_signals:
                seen_signal = True
            match = regex.search(line)
            if match and seen_signal:
                value = float(match.group(1))
        return value


def log_files(run_dir: str) -> list[str]:
    """``log.txt`` then upstream's ``log.txt-<timestamp>`` files (newer runs), oldest first."""
    names = sorted(os.listdir(run_dir))
    files = [os.path.join(run_dir, "log.txt")] if "log.txt" in names else []
    files += [os.path.join(run_dir, n) for n in names if _TIMESTAMPED_LOG.match(n)]
    return [f for f in files if os.path.isfile(f)]


def parse_log_file(path: str) -> list[Invocation]:
    """Split one log file into invocations and parse each."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return parse_log_text(text, path)


def parse_log_text(text: str, path: str = "<text>") -> list[Invocation]:
    """Parse log text; a new invocation starts at every ``** Arguments **`` banner that follows other lines."""
    chunks: list[list[str]] = [[]]
    for raw in text.splitlines():
        if raw.strip() == _ARGS_BANNER and any(line.strip() for line in chunks[-1][:-1]):
            # The banner is framed by '*' lines; the opening one belongs to the new invocation.
            last = chunks[-1][-1].strip() if chunks[-1] else ""
            opening = [chunks[-1].pop()] if last and set(last) == {"*"} else []
            chunks.append(opening)
        chunks[-1].append(raw)
    invocations = []
    for chunk in chunks:
        if any(line.strip() for line in chunk):
            inv = Invocation(path, lines=[line.strip() for line in chunk])
            inv.config = read_config_dump(chunk)
            _read_args_and_results(inv)
            invocations.append(inv)
    return invocations


def _read_args_and_results(inv: Invocation) -> None:
    in_args = False
    block: ResultBlock | None = None
    split: str | None = None
    for line in inv.lines:
        if line == _ARGS_BANNER:
            in_args = True
            continue
        if in_args:
            match = _ARG_LINE.match(line)
            if match:
                inv.args[match.group(1)] = match.group(2) or ""
                continue
            if line and set(line) == {"*"} and not inv.args:
                continue  # closing frame of the banner
            in_args = False
        if line in FINISH_SIGNALS:
            inv.finished = True
            block = None
            continue
        if _ITERATION_LINE.match(line):
            inv.trained = True
            block = None
            continue
        match = _EVAL_LINE.search(line)
        if match:
            split = match.group(1)
            block = None
            continue
        if line in (RESULT_SIGNAL, B2N_SIGNAL):
            kind = "result" if line == RESULT_SIGNAL else "base2novel"
            block = ResultBlock(split=split, after_finish=inv.finished, kind=kind)
            inv.blocks.append(block)
            split = None
            continue
        if block is not None:
            match = _METRIC_LINE.match(line)
            if match:
                block.metrics[match.group(1)] = float(match.group(2).replace(",", ""))
                continue
            if line == "=> per-class result" or line.startswith("* class:"):
                continue
            block = None


def read_config_dump(lines: list[str]) -> dict[str, str]:
    """The yacs dump printed after ``** Config **`` as dotted keys (a later dump overrides an earlier one)."""
    config: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if lines[i].strip() != _CONFIG_BANNER:
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i].strip() and set(lines[i].strip()) == {"*"}:
            i += 1
        stack: list[tuple[int, str]] = []
        while i < len(lines):
            match = _CONFIG_LINE.match(lines[i].rstrip())
            if not match:
                break
            indent, key, value = len(match.group(1)), match.group(2), match.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if value is None:
                stack.append((indent, key))
            else:
                config[".".join([k for _, k in stack] + [key])] = value.strip()
            i += 1
    return config
