"""One written form for every text a text tower reads: training captions, prompts, class names, queries.

``Tokenizer.__call__`` (towers/text.py) passes every text through ``canonical_text``, so a caption in
training and a prompt or class name at zero-shot time reach the tower written the same way.
big_vision canonicalises its zero-shot class names and prompts (lower case, punctuation removed,
``evaluators/proj/image_text/prompt_engineering.py``); we keep punctuation, which pre-trained text
towers read and which Flickr8k's captions and our templates both end with, and only normalise how
it is spaced and cased:

- Unicode NFC (one code point per accented letter); every run of white space becomes one space,
  none at either end;
- no space before ``, . ! ? ; : ) ]`` and none after ``( [`` (Flickr8k writes "a dog runs ." and
  "a dog , a cat"; prompts write "a photo of a rose.");
- lower case when the vocabulary is uncased but the tokenizer does not lower-case by itself.

What that changes, tower by tower:
- ``minilm``, ``scratch`` (packaged or trained WordPiece), ``hf:`` uncased BERTs: no token id. Their
  BertNormalizer already lower-cases (and strips accents) and BertPreTokenizer splits punctuation off
  words and drops white space, so we do not lower-case again (tested on Flickr8k-style captions).
- ``hf:`` cased towers (RoBERTa's BPE, T5's SentencePiece): "runs ." and "runs." were different
  tokens; now captions read like the text these towers were pre-trained on, as prompts already did.
  Case is kept: a cased vocabulary tells "Rose" from "rose".
"""
from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Iterable

_SPACE = re.compile(r"\s+")
_BEFORE_CLOSING = re.compile(r" ([,.!?;:)\]])")
_AFTER_OPENING = re.compile(r"([(\[]) ")
_SPECIAL = re.compile(r"^(\[.*\]|<.*>)$")  # [CLS], [unused3], <s>, <pad>: not words


def canonical_text(text: str, lowercase: bool = False) -> str:
    """``text`` in its canonical written form (see the module docstring)."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()
    text = _AFTER_OPENING.sub(r"\1", _BEFORE_CLOSING.sub(r"\1", text))
    return text.lower() if lowercase else text


def _lowercases(normalizer: Any) -> bool:
    """Whether a tokenizers normaliser (its JSON form) lower-cases, looking inside sequences."""
    if isinstance(normalizer, dict):
        if normalizer.get("type") == "Lowercase" or normalizer.get("lowercase") is True:
            return True
        return any(_lowercases(n) for n in normalizer.get("normalizers", []))
    return False


def needs_lowercase(vocab: Iterable[str], tokenizer: Any = None, do_lower_case: bool = False) -> bool:
    """True when the vocabulary holds no upper-case word and the tokenizer does not lower-case itself.

    ``tokenizer``: a ``tokenizers.Tokenizer`` (its normaliser is read), or None with ``do_lower_case``
    from a slow transformers tokenizer.
    """
    if tokenizer is not None:
        do_lower_case = _lowercases(json.loads(tokenizer.to_str()).get("normalizer"))
    if do_lower_case:
        return False
    return not any(ch.isupper() for tok in vocab if not _SPECIAL.match(tok) for ch in tok)
