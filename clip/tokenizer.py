"""CLIP's byte-level BPE tokenizer, reading `bpe_simple_vocab_16e6.txt.gz` next to this file.

Text is cleaned (ftfy, HTML unescaped twice, whitespace collapsed, lower-cased), split by a regex into words,
contractions, single digits and punctuation runs; each piece's UTF-8 bytes are mapped to printable unicode
symbols and merged by the BPE ranks. Ids: 256 byte symbols, the same with `</w>`, one per merge, then
`<|startoftext|>` (49406) and `<|endoftext|>` (49407).
"""

from __future__ import annotations

import gzip
import html
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

DEFAULT_BPE_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # merges used from the file (its first line is a header)
_PRETOKENIZE = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


@lru_cache
def byte_to_unicode() -> dict[int, str]:
    """Reversible byte -> printable character table: printable Latin-1 bytes map to themselves, the other 68
    bytes to code points 256, 257, ... in increasing byte order (so BPE never sees whitespace/control bytes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean_text(text: str) -> str:
    """ftfy fix, HTML unescape (twice, for doubly escaped entities), whitespace collapse, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class SimpleTokenizer:
    """CLIP BPE tokenizer with upstream's `encode`/`decode` API and a per-word cache."""

    def __init__(self, bpe_path: str | os.PathLike = DEFAULT_BPE_PATH) -> None:
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1 : _NUM_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = list(self.byte_encoder.values())  # insertion order: printable bytes first, then the others
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.cache = {SOT_TOKEN: SOT_TOKEN, EOT_TOKEN: EOT_TOKEN}
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        self.vocab_size = len(self.encoder)

    def bpe(self, piece: str) -> str:
        """Merge the symbols of one pre-token, lowest rank first; returns space-separated BPE tokens."""
        cached = self.cache.get(piece)
        if cached is not None:
            return cached
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            ranked = [(self.bpe_ranks.get(pair, _NO_RANK), pair) for pair in zip(word, word[1:], strict=False)]
            rank, (first, second) = min(ranked)
            if rank == _NO_RANK:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        out = " ".join(word)
        self.cache[piece] = out
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without SOT/EOT."""
        ids: list[int] = []
        for piece in _PRETOKENIZE.findall(clean_text(text)):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(symbols).split(" "))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        data = bytearray(self.byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")


_NO_RANK = float("inf")


@lru_cache(maxsize=1)
def get_tokenizer() -> SimpleTokenizer:
    """The shared tokenizer (loading the merges takes ~0.1 s; do it once per process)."""
    return SimpleTokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    """`[SOT] + ids + [EOT]` per text, zero-padded to `context_length` -> LongTensor `(N, context_length)`.

    Too-long texts raise RuntimeError unless `truncate=True`, which keeps the first `context_length` ids and
    makes the last one EOT (so EOT pooling still finds it).
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = get_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_token_id, *tokenizer.encode(text), tokenizer.eot_token_id]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(
                    f"Input {text[:80]!r}{'...' if len(text) > 80 else ''} is too long for context length "
                    f"{context_length} ({len(ids)} tokens incl. SOT/EOT); shorten it or pass truncate=True"
                )
            ids = ids[:context_length]
            ids[-1] = tokenizer.eot_token_id
        result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result
