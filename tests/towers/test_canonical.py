"""Text canonicalisation: one written form for captions, prompts and class names (towers/canonical.py),
applied by every Tokenizer; a no-op on MiniLM's token ids, lower case only where a tokenizer needs it."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from littune.towers.canonical import canonical_text, needs_lowercase
from littune.towers.text_hf import hf_tokenizer, minilm_path
from littune.towers.text_scratch import wrap_tokenizer

from .tiny import CAPTIONS

# Flickr8k writes a space before punctuation; prompts and class names do not.
STYLES = [
    "A child in a pink dress is climbing up a set of stairs in an entry way .",
    "Two dogs , one black and one white , play in the snow !",
    "a photo of a Rose.",
    "  a\tphoto  of a   garden rose ( pink ) .\n",
    "Café crème : a naïve photo ; really ?",
]


def test_canonical_text_known_answers():
    assert canonical_text("A dog runs .") == "A dog runs."
    assert canonical_text("Two dogs , one black ; one white !") == "Two dogs, one black; one white!"
    assert canonical_text("  a\tphoto  of a   ( pink ) rose \n") == "a photo of a (pink) rose"
    assert canonical_text("A Photo of a ROSE .", lowercase=True) == "a photo of a rose."
    assert canonical_text("cafe\u0301") == "caf\u00e9"  # NFC: e + combining accent -> one code point
    assert canonical_text("a photo of a {}.") == "a photo of a {}."  # templates keep their placeholder
    for s in STYLES:  # idempotent
        assert canonical_text(canonical_text(s, True), True) == canonical_text(s, True)


def _raw_and_ours(texts):
    from transformers import AutoTokenizer

    ours = hf_tokenizer(str(minilm_path()), 64)
    raw = AutoTokenizer.from_pretrained(str(minilm_path()))
    return ours, ours(texts)["input_ids"], raw(texts, padding=True, truncation=True, max_length=64,
                                               return_tensors="pt")["input_ids"]


def test_minilm_token_ids_are_unchanged():
    # MiniLM's tokenizer lower-cases, strips accents and splits punctuation itself: canonicalisation
    # must neither double that up nor change a single id.
    texts = STYLES + [s.upper() for s in STYLES] + [canonical_text(s) for s in STYLES]
    ours, a, b = _raw_and_ours(texts)
    assert ours.lowercase is False  # its BertNormalizer lower-cases: we leave it to it
    assert a.tolist() == b.tolist()
    assert a[0].tolist() == ours([canonical_text(STYLES[0])])["input_ids"][0].tolist()


@pytest.mark.data
def test_minilm_token_ids_are_unchanged_on_flickr8k(shared_data: Path):
    with open(shared_data / "flickr8k" / "captions.csv", newline="") as f:
        captions = [row["caption"] for row in csv.DictReader(f)][::20]  # 2,023 captions
    assert sum(canonical_text(c) != c for c in captions) > len(captions) // 2  # most have " ." endings
    _, a, b = _raw_and_ours(captions)
    assert a.tolist() == b.tolist()


def _wordpiece(lowercase: bool):
    """A WordPiece on lower-case captions, with or without a lower-casing normaliser."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CAPTIONS * 3, trainers.WordPieceTrainer(vocab_size=100, special_tokens=["[PAD]", "[UNK]"]))
    return tok


def test_lower_case_only_where_the_tokenizer_would_not():
    lowering, plain = wrap_tokenizer(_wordpiece(True), 16), wrap_tokenizer(_wordpiece(False), 16)
    assert lowering.lowercase is False and plain.lowercase is True
    for tok in (lowering, plain):
        assert tok(["A DOG RUNS ."])["input_ids"].tolist() == tok(["a dog runs."])["input_ids"].tolist()
    # Without our lower-casing, "DOG" would be an unknown word to a vocabulary that has only "dog".
    unk = _wordpiece(False).token_to_id("[UNK]")
    assert unk in _wordpiece(False).encode("A DOG RUNS").ids
    assert unk not in plain(["A DOG RUNS"])["input_ids"][0].tolist()
    # A cased vocabulary keeps case.
    assert not needs_lowercase(["[CLS]", "Rose", "rose"]) and needs_lowercase(["[CLS]", "<s>", "rose", "##s"])
    assert not needs_lowercase(["rose"], do_lower_case=True)


def test_cased_bpe_tower_reads_captions_and_prompts_alike(tmp_path):
    # A cased byte-level BPE (RoBERTa-style): "runs ." and "runs." are different tokens until canonicalised.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([c.capitalize() + " ." for c in CAPTIONS] * 3,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>").save_pretrained(tmp_path / "bpe")
    raw = PreTrainedTokenizerFast.from_pretrained(tmp_path / "bpe")
    ours = hf_tokenizer(str(tmp_path / "bpe"), 32)
    assert ours.lowercase is False  # upper-case letters in its vocabulary: case is kept
    assert raw("A dog runs .")["input_ids"] != raw("A dog runs.")["input_ids"]
    a, b = ours(["A dog runs .", "A dog  runs."])["input_ids"].tolist()
    assert a == b == raw("A dog runs.")["input_ids"]
    assert ours(["A dog"])["input_ids"].tolist() != ours(["a dog"])["input_ids"].tolist()
