"""Text towers: scratch (every pooling), local tiny BERT / T5, the packaged MiniLM; tokenizers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from littune.towers import TEXT_TOWERS, create_text_tower, list_text_towers, train_tokenizer, wrap_tokenizer
from littune.towers.text_scratch import load_tokenizer

from .tiny import CAPTIONS, tiny_wordpiece

POOLINGS = ["first", "last", "mean", "max", "attention"]
SHORT, LONG = "a dog runs", "a black cat sleeps on a red sofa under a tree in the park"


@pytest.fixture(scope="module")
def tok():
    return wrap_tokenizer(tiny_wordpiece(), context_length=12)


def _scratch(tok, pooling="mean", lock="u", **kw):
    torch.manual_seed(0)
    return create_text_tower("scratch", tokenizer=tok, width=32, depth=2, heads=2, pooling=pooling, lock=lock, **kw)


# ---- tokenizers --------------------------------------------------------------------------------------
def test_train_and_wrap_tokenizer(tmp_path):
    raw = train_tokenizer(CAPTIONS * 3, vocab_size=90)
    assert raw.get_vocab_size() <= 90
    assert [raw.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    tok = wrap_tokenizer(raw, context_length=6)
    assert (tok.context_length, tok.vocab_size) == (6, raw.get_vocab_size())
    enc = tok(["A DOG", "a black cat sleeps on a red sofa"])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.dtype == mask.dtype == torch.long
    assert ids.shape == mask.shape == (2, 6)  # padded to the longest, which is truncated to 6
    assert torch.equal(ids[0], tok(["a dog", "a black cat sleeps on a red sofa"])["input_ids"][0])  # lower-cased
    n = int(mask[0].sum())
    assert 4 <= n < 6 and ids[0, 0] == 2 and ids[0, n - 1] == 3  # [CLS] a dog [SEP]
    assert raw.token_to_id("a") in ids[0, 1:n - 1].tolist()
    assert mask[0].tolist() == [1] * n + [0] * (6 - n) and ids[0, n:].tolist() == [0] * (6 - n)
    assert mask[1].tolist() == [1] * 6 and ids[1, 0] == 2 and ids[1, -1] == 3  # [SEP] kept on truncation
    assert (ids < tok.vocab_size).all()

    tok.save(tmp_path / "tok")
    again = load_tokenizer(str(tmp_path / "tok"), context_length=6)
    assert torch.equal(again(["a dog"])["input_ids"], tok(["a dog"])["input_ids"])
    with pytest.raises(FileNotFoundError):
        load_tokenizer(str(tmp_path / "nothing-here"), 6)


def test_wrapping_twice_keeps_each_context_length():
    raw = tiny_wordpiece()
    long_tok, short_tok = wrap_tokenizer(raw, 12), wrap_tokenizer(raw, 5)
    assert long_tok([LONG])["input_ids"].shape == (1, 12)
    assert short_tok([LONG])["input_ids"].shape == (1, 5)
    assert raw.truncation is None  # the caller's tokenizer is left as it was


def test_tokenizer_refuses_empty_and_non_strings(tok):
    with pytest.raises(ValueError, match="text 1 is empty"):
        tok(["a dog", ""])
    with pytest.raises(ValueError, match="text 2 is empty"):
        tok(["a dog", "a cat", "  \t\n"])
    with pytest.raises(ValueError, match="no texts"):
        tok([])
    with pytest.raises(TypeError, match="text 0 is int"):
        tok([3])
    with pytest.raises(TypeError, match="not a single string"):
        tok("a dog")


# ---- scratch tower ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", POOLINGS)
def test_scratch_tower_forward_backward(tok, pooling):
    tower = _scratch(tok, pooling)
    assert tower.embed_dim == 32 and tower.context_length == 12
    tower.train()
    out = tower(tok([SHORT, LONG, "two people"]))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert tower.token_emb.weight.grad is not None and tower.token_emb.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tower.blocks.parameters())
    if pooling == "attention":
        assert tower.attn_pool.query.grad.abs().sum() > 0
    assert not torch.allclose(out[0], out[2])


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("train", [False, True])
def test_scratch_tower_ignores_padding(tok, pooling, train):
    tower = _scratch(tok, pooling).train(train)
    with torch.no_grad():
        alone = tower(tok([SHORT]))
        batched = tower(tok([SHORT, LONG]))
    assert tok([SHORT, LONG])["attention_mask"][0].sum() < 12  # SHORT really is padded in the batch
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)


def test_scratch_tower_with_packaged_vocabulary():
    tower = create_text_tower("scratch", width=16, depth=1, heads=2, context_length=8, lock="u")
    assert tower.tokenizer.vocab_size == 30522 and tower.context_length == 8
    enc = tower.tokenizer(["a photo of a daisy " * 10])
    assert enc["input_ids"].shape == (1, 8)
    assert tower(enc).shape == (1, 16)


def test_scratch_tower_bad_settings(tok):
    with pytest.raises(ValueError, match="not divisible"):
        create_text_tower("scratch", tokenizer=tok, width=30, heads=4)
    tower = _scratch(tok, pooling="median")
    with pytest.raises(ValueError, match="pooling 'median'"):
        tower(tok([SHORT]))


def test_text_tower_locked_builds_no_graph(tok):
    tower = _scratch(tok, lock="L")
    tower.train()
    out = tower(tok([SHORT]))
    assert not tower.training and not out.requires_grad
    assert tower.describe()["trainable_params"] == 0 and tower.describe()["vocab_size"] == tok.vocab_size


# ---- local Hugging Face encoders ---------------------------------------------------------------------------
HF_EMBED = {"bert": 32, "t5": 24}


@pytest.mark.parametrize("lock", ["L", "U", "u"])
@pytest.mark.parametrize("family", sorted(HF_EMBED))
def test_hf_text_towers_forward_backward(hf_text_dirs, family, lock):
    tower = create_text_tower(f"hf:{hf_text_dirs[family]}", lock=lock, context_length=16)
    assert tower.embed_dim == HF_EMBED[family] and tower.context_length == 16
    tower.train()
    out = tower(tower.tokenizer([SHORT, LONG]))
    assert out.shape == (2, HF_EMBED[family]) and torch.isfinite(out).all()
    if lock == "L":
        assert not out.requires_grad and not tower.training
        return
    out.pow(2).mean().backward()
    grads = [p.grad for p in tower.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("family", sorted(HF_EMBED))
def test_hf_text_tower_truncates_and_ignores_padding(hf_text_dirs, family):
    tower = create_text_tower(f"hf:{hf_text_dirs[family]}", context_length=8).eval()
    assert tower.tokenizer([LONG * 4])["input_ids"].shape == (1, 8)
    with torch.no_grad():
        alone = tower(tower.tokenizer([SHORT]))
        batched = tower(tower.tokenizer([SHORT, LONG]))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)


def test_hf_text_tower_pretrained_vs_random_init(hf_text_dirs):
    name = f"hf:{hf_text_dirs['bert']}"
    a, b, u = (create_text_tower(name), create_text_tower(name), create_text_tower(name, lock="u"))
    assert a.fingerprint() == b.fingerprint() != u.fingerprint()


def test_hf_context_length_capped_by_model_max_length(tmp_path):
    from transformers import BertConfig, BertModel

    from .tiny import tiny_hf_tokenizer

    tok = tiny_hf_tokenizer(model_max_length=10)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=10)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tower = create_text_tower(f"hf:{tmp_path}", context_length=64)
    assert tower.context_length == 10
    assert tower(tower.tokenizer([LONG * 3])).shape == (1, 16)


# ---- the packaged MiniLM ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return create_text_tower("minilm", lock="L")


def test_minilm_is_384d_and_semantically_sensible(minilm):
    assert minilm.embed_dim == 384 and minilm.context_length == 64
    texts = ["a dog runs on grass", "a puppy running in a field", "a red sports car"]
    emb = F.normalize(minilm(minilm.tokenizer(texts)), dim=-1)
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2


def test_minilm_truncates_to_context_and_refuses_empty(minilm):
    enc = minilm.tokenizer(["word " * 300, "short"])
    assert enc["input_ids"].shape == (2, 64)
    assert enc["attention_mask"][1].sum() == 3  # [CLS] short [SEP]
    assert torch.isfinite(minilm(enc)).all()
    with pytest.raises(ValueError, match="text 1"):
        minilm.tokenizer(["a dog", " "])


def test_minilm_ignores_padding(minilm):
    alone = minilm(minilm.tokenizer([SHORT]))
    batched = minilm(minilm.tokenizer([SHORT, LONG]))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)


def test_minilm_context_length_option():
    tower = create_text_tower("minilm", lock="L", context_length=16)
    assert tower.context_length == 16
    assert tower.tokenizer([LONG * 3])["input_ids"].shape == (1, 16)


def test_text_registry():
    names = {t["name"]: t for t in list_text_towers()}
    assert {"scratch", "hf:*", "minilm"} <= set(names)
    assert names["minilm"]["embed_dim"] == 384
    assert "hf:anything" in TEXT_TOWERS and "scratch" in TEXT_TOWERS
    with pytest.raises(KeyError) as e:
        create_text_tower("minilmm")
    assert "Did you mean 'minilm'" in e.value.args[0]
    with pytest.raises(KeyError, match="scratch:x"):
        create_text_tower("scratch:x")


def test_every_trainable_parameter_of_minilm_gets_a_gradient():
    """DDP needs it: a trainable parameter without gradient (BERT's unused pooler) stalls its buckets."""
    from littune.towers import create_text_tower

    tower = create_text_tower("minilm", lock="U", locked_blocks=2)
    tower(tower.tokenizer(["a dog runs on the grass", "two people"])).sum().backward()
    missing = [n for n, p in tower.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert not tower.model.pooler.dense.weight.requires_grad


def test_bert_tokenize_is_cls_and_word_pieces_without_sep(hf_text_dirs):
    # big_vision's bert_tokenize(max_len=8): [CLS] + up to 7 word pieces, no [SEP], padded with 0
    name = f"hf:{hf_text_dirs['bert']}"
    bv = create_text_tower(name, context_length=8, tokenize="bert_tokenize").tokenizer
    own = create_text_tower(name, context_length=8).tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_text_dirs["bert"]))
    long, short = "a dog runs on the grass with a red ball in its mouth", "a dog"
    enc = bv([long, short])
    pieces = tok(long, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 7
    assert enc["input_ids"][0].tolist() == [tok.cls_token_id, *pieces[:7]]
    short_ids = [tok.cls_token_id, *tok(short, add_special_tokens=False)["input_ids"]]
    assert enc["input_ids"][1].tolist() == short_ids + [0] * (8 - len(short_ids))
    assert enc["attention_mask"][1].tolist() == [1] * len(short_ids) + [0] * (8 - len(short_ids))
    assert tok.sep_token_id not in enc["input_ids"].tolist()[0]
    # the tokenizer's own layout ends with [SEP] and keeps one piece fewer; the two never share a cache
    assert own([long])["input_ids"][0].tolist() == [tok.cls_token_id, *pieces[:6], tok.sep_token_id]
    assert bv.fingerprint() != own.fingerprint()


def test_unknown_tokenize_style_is_refused_naming_the_key(hf_text_dirs):
    with pytest.raises(ValueError, match="model.text.tokenize='t5'.*bert_tokenize"):
        create_text_tower(f"hf:{hf_text_dirs['bert']}", tokenize="t5")
