"""CLIP BPE tokenizer: vocabulary file pinned, ids identical to open_clip's, truncation semantics."""

from __future__ import annotations

import hashlib

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer as OpenClipTokenizer
from open_clip.tokenizer import tokenize as open_clip_tokenize
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

import clip
from clip.tokenizer import DEFAULT_BPE_PATH, SimpleTokenizer, byte_to_unicode, clean_text

BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# Benchmark class names in their final form (after the readers' renaming).
SPEC_CLASSNAMES = [
    "face", "leopard", "motorbike", "accordion", "airplane", "anchor", "car_side", "water_lilly", "yin_yang",
    "abyssinian", "american_pit_bull_terrier", "2000 AM General Hummer SUV", "pink primrose", "apple_pie",
    "baby_back_ribs", "Cessna 172", "F/A-18", "abbey", "outdoor apartment_building", "shop bakery", "banded",
    "blotchy", "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
    "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River",
    "Sea or Lake", "Apply_Eye_Makeup", "Yo_Yo", "Handstand_Pushups",
]  # fmt: skip

ODD_STRINGS = [
    "",
    "   leading and   trailing\twhitespace\n\n",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m",
    "\u5317\u4eac \u6771\u4eac \uc11c\uc6b8",
    "\u041c\u043e\u0441\u043a\u0432\u0430 \u0627\u0644\u0642\u0627\u0647\u0631\u0629",
    "emoji \U0001f600\U0001f436 and \u2603 snowman",
    "&amp;lt;b&amp;gt; double-escaped &amp; html &quot;quotes&quot; &#39;single&#39;",
    "mojibake: \u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d and \u00c3\u00a9",
    "it's they're we've I'm you'll he'd DON'T",
    "numbers 1234567890 and 3.14159, 1/2, 50%",
    "UPPER lower MiXeD",
    "ligatures \ufb01 \ufb02 and full-width \uff21\uff22\uff23",
]


def test_vocabulary_file_is_pinned() -> None:
    assert hashlib.sha256(DEFAULT_BPE_PATH.read_bytes()).hexdigest() == BPE_SHA256


def test_vocabulary_layout() -> None:
    tok = SimpleTokenizer()
    table = byte_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("a")] == "a" and table[0] == chr(256) and table[ord(" ")] == chr(256 + 32)
    assert tok.vocab_size == 49408 and len(tok.bpe_ranks) == 48894
    assert tok.sot_token_id == 49406 and tok.eot_token_id == 49407
    # open_clip 3.x renamed the two special tokens (`<start_of_text>`); the other 49406 entries must agree
    ref = {k: v for k, v in OpenClipTokenizer().encoder.items() if v < 49406}
    assert {k: v for k, v in tok.encoder.items() if v < 49406} == ref


def test_special_tokens_in_text_map_to_their_ids() -> None:
    """OpenAI's pre-tokeniser keeps `<|startoftext|>`/`<|endoftext|>` whole."""
    tok = SimpleTokenizer()
    assert tok.encode("<|startoftext|>dog<|endoftext|>") == [49406, tok.encode("dog")[0], 49407]


def test_ids_identical_to_open_clip_on_dataset_classnames_and_prompts() -> None:
    names = SPEC_CLASSNAMES + list(IMAGENET_CLASSNAMES)
    texts = names + [n.replace("_", " ") for n in names]
    templates = OPENAI_IMAGENET_TEMPLATES
    texts += [templates[i % len(templates)](n) for i, n in enumerate(IMAGENET_CLASSNAMES)]
    texts += [f"a photo of a {n.replace('_', ' ')}." for n in SPEC_CLASSNAMES]
    ours = clip.tokenize(texts)
    ref = open_clip_tokenize(texts)
    assert ours.dtype == torch.long and ours.shape == (len(texts), 77)
    assert torch.equal(ours, ref.long())


@pytest.fixture(scope="module")
def tokenizers() -> tuple[SimpleTokenizer, OpenClipTokenizer]:
    return clip.get_tokenizer(), OpenClipTokenizer()


@pytest.mark.parametrize("text", ODD_STRINGS)
def test_ids_identical_to_open_clip_on_unicode_html_and_odd_strings(text: str, tokenizers) -> None:
    ours, ref = tokenizers
    assert ours.encode(text) == ref.encode(text)
    assert ours.decode(ours.encode(text)) == ref.decode(ref.encode(text))


def test_cleaning() -> None:
    assert clean_text("  A&amp;amp;B \n\t C  ") == "a&b c"
    assert clip.tokenize("a cat").tolist() == clip.tokenize(["  A   CAT "]).tolist()


def test_very_long_text_truncate_semantics() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    with pytest.raises(RuntimeError, match="context length 77"):
        clip.tokenize(text)
    ours = clip.tokenize(text, truncate=True)
    assert torch.equal(ours, open_clip_tokenize([text]).long())  # open_clip truncates the same way
    assert ours[0, 0] == 49406 and ours[0, -1] == 49407 and (ours[0] != 0).all()
    assert ours[0].argmax() == 76  # EOT pooling still finds the end
    exact = " ".join(["dog"] * 75)  # 75 tokens + SOT + EOT = 77: fits exactly
    assert clip.tokenize(exact)[0, -1] == 49407
    with pytest.raises(RuntimeError):
        clip.tokenize(exact + " dog")
    short = clip.tokenize(["a dog"], context_length=8)
    assert short.tolist() == [[49406, 320, 1929, 49407, 0, 0, 0, 0]]
