"""Runs with a tuned pre-trained text tower (tune=lora / full / norms) and `littune interpolate`:
what model_info.json records, merged exports, WiSE-FT at alpha 0 / 1 / between, sweeps, refusals.

A tiny random-init BERT saved to a folder stands in for the pre-trained text tower; the image
tower is timm's tiny test_vit, locked (tests/cache/tiny_data.py). Each run trains for seconds.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import littune
from littune.cli import main
from littune.infer.export import export_model
from littune.infer.interpolate import interpolate_run, load_trained, sweep_run, sweep_suite
from littune.runs import latest_checkpoint, load_run
from littune.towers.config import TextTowerConfig
from littune.towers.tuning import interpolate, merge_lora
from littune.train import load_config, train

from tests.cache.tiny_data import TOWER, make_dataset, save_tower_weights
from tests.towers.tiny import tiny_hf_tokenizer

pytestmark = pytest.mark.xdist_group("tuned_runs")  # the module's runs are trained once, on one worker

TEXTS = ["red above blue", "a dog runs on the grass", "green above yellow", "two people ride bikes"]


def save_bert(folder: Path, seed: int = 0) -> Path:
    import transformers as tr

    tok = tiny_hf_tokenizer()
    torch.manual_seed(seed)
    tr.BertModel(tr.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64, pad_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tuned_runs")
    return {"root": root, "bert": save_bert(root / "bert"), "data": make_dataset(root / "data", 24),
            "weights": save_tower_weights(root / "tower" / "test_vit.safetensors")}


def train_run(tiny: dict, out: Path, *overrides: str, bert: Path | None = None, steps: int = 15) -> Path:
    cfg = load_config(None, [
        f"model.image.name={TOWER}", "model.image.pretrained=false", f"model.image.checkpoint={tiny['weights']}",
        f"model.text.name=hf:{bert or tiny['bert']}", "model.text.context_length=16", "model.init_temperature=20",
        f"data.train={tiny['data']}", f"data.cache_root={tiny['root'] / 'cache'}", "data.num_workers=0",
        f"train.out_dir={out}", f"train.steps={steps}", "train.batch_size=12", "train.log_every=5",
        "train.ckpt_every=1000", "train.progress=false", "optim.warmup_steps=2", "optim.lr=0.01", *overrides])
    train(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tiny) -> dict[str, Path]:
    root = tiny["root"]
    return {"lora": train_run(tiny, root / "lora", "model.text.tune=lora", "model.text.lora_rank=4"),
            "full": train_run(tiny, root / "full", "model.text.locked_blocks=1")}


def text_embeddings(model, texts=TEXTS) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_text(model.tokenize(texts))


# ---- what a tuned run records and how it loads ------------------------------------------------------
def test_lora_run_trains_only_adapters_and_head(runs, tiny):
    run = runs["lora"]
    info = json.loads((run / "model_info.json").read_text())
    model, cfg = load_run(run)
    adapters = {n: p for n, p in model.text.named_parameters() if ".lora_" in n}
    counts = info["parameters"]
    # (the trainer freezes the softmax loss' unused bias: "trainable" counts the temperature alone)
    assert {k: v for k, v in counts.items() if k != "trainable"} == {
        k: v for k, v in model.parameter_counts().items() if k != "trainable"}
    assert counts["trainable"] == counts["text_trainable"] + counts["text_head_trainable"] + 1
    assert counts["text_trainable"] == sum(p.numel() for p in adapters.values()) > 0
    assert counts["text_head_trainable"] == sum(p.numel() for p in model.text_head.parameters()) > 0
    assert counts["image_trainable"] == 0 and counts["text"] > 5 * counts["text_trainable"]
    assert info["text_tuning"]["tune"] == "lora" and info["text_tuning"]["lora"]["rank"] == 4
    # The adapters trained (B moved off zero) and the run reloads with them ...
    assert any(float(p.detach().abs().max()) > 0 for n, p in adapters.items() if ".lora_B." in n)
    # ... while the pre-trained weights stayed bit-identical: folding in the adapters at alpha 0
    # gives exactly the tower training started from.
    fresh = TextTowerConfig(name=f"hf:{tiny['bert']}").build()
    assert info["text_tuning"]["base_fingerprint"] == fresh.fingerprint()
    base = merge_lora(interpolate(model.text, 0.0))
    assert base.fingerprint() == fresh.fingerprint()


def test_norms_run_trains_only_layernorms(tiny, tmp_path):
    run = train_run(tiny, tmp_path / "norms", "model.text.tune=norms", steps=4)
    model, _ = load_run(run)
    fresh = TextTowerConfig(name=f"hf:{tiny['bert']}").build().state_dict()
    moved = {k for k, v in model.text.state_dict().items() if not torch.equal(v, fresh[k])}
    assert moved and all("LayerNorm" in k for k in moved)
    info = json.loads((run / "model_info.json").read_text())
    assert info["parameters"]["text_trainable"] == sum(
        p.numel() for n, p in model.text.named_parameters() if "LayerNorm" in n and "pooler" not in n)


def test_lora_export_has_plain_weights_and_the_same_embeddings(runs, tmp_path):
    lit = littune.load(runs["lora"])
    before = text_embeddings(lit.model)
    out = tmp_path / "export"
    export_model(lit, out, hf=False)
    assert lit.model.text.tune == "lora"  # the run's model keeps its adapters; the export got a merged copy
    assert not [k for k in load_file(str(out / "model.safetensors")) if "lora_" in k or "base_layer" in k]
    assert load_config(out / "config.yaml").model.text.tune == "full"
    exported = littune.load(out)  # fingerprints verified on load
    torch.testing.assert_close(text_embeddings(exported.model), before, rtol=0, atol=1e-5)
    images = sorted((Path(lit.cfg.data.train).parent / "images").glob("*.jpg"))[:3]
    assert torch.equal(exported.embed_images(images), lit.embed_images(images))


# ---- interpolation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lora", "full"])
def test_interpolate_endpoints_bit_for_bit(runs, tiny, tmp_path, kind):
    run = runs[kind]
    trained, cfg = load_run(run)
    # alpha 0: the pre-trained tower's features through the trained head
    zero = interpolate_run(run, 0.0, tmp_path / "a0")
    mixed0, cfg0 = load_run(zero["out"])
    assert cfg0.train.interpolate_alpha == 0.0
    pre = TextTowerConfig(name=f"hf:{tiny['bert']}", context_length=16).build().eval()
    with torch.no_grad():
        expected = F.normalize(trained.text_head(pre(trained.tokenize(TEXTS))), dim=-1)
    assert torch.equal(text_embeddings(mixed0), expected)
    assert mixed0.fingerprints()["text_head"] == trained.fingerprints()["text_head"]
    assert mixed0.temperature == trained.temperature
    # alpha 1: the trained model
    one, _ = load_run(interpolate_run(run, 1.0, tmp_path / "a1")["out"])
    assert one.fingerprints() == trained.fingerprints()
    assert torch.equal(text_embeddings(one), text_embeddings(trained))
    # in between: every weight lies between the two ends, and the embeddings are neither
    half, _ = load_run(interpolate_run(run, 0.5, tmp_path / "a05")["out"])
    s0, s1 = mixed0.text.state_dict(), trained.text.state_dict()
    for k, v in half.text.state_dict().items():
        if v.is_floating_point():
            assert ((v >= torch.minimum(s0[k], s1[k]) - 1e-7) & (v <= torch.maximum(s0[k], s1[k]) + 1e-7)).all(), k
    e = text_embeddings(half)
    assert not torch.equal(e, expected) and not torch.equal(e, text_embeddings(trained))


def test_interpolated_run_is_a_run(runs, tiny, tmp_path, capsys):
    out = tmp_path / "mix"
    assert main(["interpolate", "--model", str(runs["full"]), "--alpha", "0.5", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interpolate_alpha"] == 0.5
    assert main(["interpolate", "--model", str(runs["full"]), "--alpha", "0.25", "--out", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'q'}: the text tower of ")  # one line for a person
    assert main(["eval", "retrieval", "--model", str(out), "--data", str(tiny["data"]), "--json",
                 "--cache", str(tiny["root"] / "cache"), "--no-progress"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["i2t_r1"] <= 1
    export_model(littune.load(out), tmp_path / "export", hf=False)
    assert torch.equal(text_embeddings(littune.load(tmp_path / "export").model), text_embeddings(littune.load(out).model))
    with pytest.raises(ValueError, match="its weights are a mix"):  # its own trained weights are not in it
        load_trained(out)


def test_sweep_evaluates_each_alpha_and_writes_the_curve(runs, tiny, tmp_path, capsys):
    evals = {"retrieval": {"kind": "retrieval", "data": str(tiny["data"])}}
    suite = sweep_suite(evals=evals, cache_root=tiny["root"] / "cache", progress=False)
    result = sweep_run(runs["full"], "0,0.5,1", suite, tmp_path / "report", progress=False)
    assert [r["alpha"] for r in result["rows"]] == [0.0, 0.5, 1.0]
    for alpha, row in zip((0.0, 1.0), (result["rows"][0], result["rows"][2])):
        model, _ = load_run(interpolate_run(runs["full"], alpha, tmp_path / f"a{alpha}")["out"])
        want = suite.scalars(suite.run(model))
        assert {k: row[k] for k in want} == want
    report = Path(result["report"])
    table = [line for line in report.read_text().splitlines() if line.startswith("| 0.") or line.startswith("| 1.")]
    assert len(table) == 3 and (report.parent / "interpolation.png").stat().st_size > 1000
    assert json.loads((report.parent / "interpolation.json").read_text()) == result["rows"]
    # the command line: the same rows; a table for a person, one JSON document with --json
    argv = ["interpolate", "--model", str(runs["full"]), "--sweep", "0,1", "--data", str(tiny["data"]),
            "--report", str(tmp_path / "cli"), "--cache", str(tiny["root"] / "cache"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| alpha | retrieval/") and out[-1] == f"report: {tmp_path / 'cli' / 'interpolation.md'}"
    assert [line.split(" | ")[0] for line in out[2:-1]] == ["| 0.00", "| 1.00"]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == [result["rows"][0], result["rows"][2]]


def test_train_interpolate_alpha_mixes_at_the_end(tiny, tmp_path, capfd):
    run = train_run(tiny, tmp_path / "run", "model.text.locked_blocks=1", "train.interpolate_alpha=0.25",
                    "train.progress=true", steps=6)
    assert "M trainable" in capfd.readouterr().err  # the progress line counts what trains
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interpolate_alpha"] == 0.25
    mixed, _ = load_run(run)
    trained, _ = load_run(run, latest_checkpoint(run))  # the checkpoint keeps the trained weights
    assert mixed.fingerprints()["text"] != trained.fingerprints()["text"]
    again = interpolate_run(run, 0.25, tmp_path / "again")  # from the checkpoint, as training did
    assert load_run(again["out"])[0].fingerprints()["text"] == mixed.fingerprints()["text"]
    assert summary["fingerprints"]["text"] == mixed.fingerprints()["text"]


# ---- refusals -----------------------------------------------------------------------------------------
def test_interpolate_refuses_bad_alpha_out_and_sources(runs, tiny, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--alpha=1.5 must lie in \[0, 1\]"):
        interpolate_run(runs["full"], 1.5, tmp_path / "x")
    with pytest.raises(SystemExit) as stop:  # the parser refuses it, from the option's declared range
        main(["interpolate", "--model", str(runs["full"]), "--alpha", "-0.5", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "argument --alpha: -0.5 is not allowed" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--sweep", "0,x"]) == 2
    assert "--sweep" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--alpha", "0.5"]) == 2
    assert "--alpha needs --out" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--alpha", "0.5", "--out", "x", "--data", "d"]) == 2
    assert "--data apply to --sweep" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--sweep", "0,1", "--out", "x"]) == 2
    assert "--out applies to --alpha" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--alpha", "0.5", "--out", "x", "--split", "dev"]) == 2
    assert "--split apply to --sweep" in capsys.readouterr().err
    assert main(["interpolate", "--model", str(runs["full"]), "--sweep", "0,1", "--data", str(tiny["data"]),
                 "--split", "dev"]) == 2  # a csv has no splits: evaluating all of it instead would be silent
    assert "split 'dev' asked for, but" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        interpolate_run(runs["full"], 0.5, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    export_model(littune.load(runs["full"]), tmp_path / "export", hf=False)
    with pytest.raises(ValueError, match="is an export"):
        interpolate_run(tmp_path / "export", 0.5, tmp_path / "y")
    locked = train_run(tiny, tmp_path / "locked", "model.text.lock=L", steps=2)
    with pytest.raises(ValueError, match=r"config.yaml: model.text .*lock=L.* no pre-trained weights to mix"):
        interpolate_run(locked, 0.5, tmp_path / "z")


def test_interpolate_refuses_a_changed_pretrained_source(tiny, tmp_path):
    bert = save_bert(tmp_path / "bert")
    run = train_run(tiny, tmp_path / "run", bert=bert, steps=2)
    interpolate_run(run, 0.5, tmp_path / "ok")  # the source is as it was
    save_bert(bert, seed=1)  # the "pre-trained" weights behind the name change
    with pytest.raises(ValueError, match=r"model_info.json: the pre-trained text tower .* changed"):
        interpolate_run(run, 0.5, tmp_path / "mix")
    assert not (tmp_path / "mix").exists()


def test_interpolate_refuses_a_lora_run_whose_pretrained_weights_changed(runs, tmp_path):
    from safetensors.torch import save_file

    run = tmp_path / "lora"
    shutil.copytree(runs["lora"], run)
    state = load_file(str(run / "model.safetensors"))
    key = next(k for k in state if k.endswith("query.base_layer.weight"))
    state[key] = state[key] + 1e-3  # the frozen weights under the adapters are not the pre-trained ones
    save_file(state, str(run / "model.safetensors"))
    # Refused on load by the text tower's recorded fingerprint, before any mixing (the LoRA base check
    # behind it names model_info.json's pre-trained fingerprint when only that record disagrees).
    with pytest.raises(ValueError, match=r"refusing to load: the weights of text are not the ones recorded"):
        interpolate_run(run, 0.5, tmp_path / "mix")
    assert not (tmp_path / "mix").exists()
