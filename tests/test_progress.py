"""Progress that obeys: ``--no-progress`` silences littune's bars and the third-party ones
(transformers' "Loading weights", huggingface_hub's downloads); commands that answer a question
(classify, search, export) never draw one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from littune.cli import main

REPO = Path(__file__).resolve().parents[1]
BAR = "/s]"  # every tqdm bar ends its line with a rate such as "12.3it/s]" or "4.5img/s]"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    import torch
    import transformers as tr

    from tests.towers.tiny import tiny_hf_tokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = tiny_hf_tokenizer()
    torch.manual_seed(0)
    tr.BertModel(tr.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64, pad_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


_LOAD = """
import sys
mode, folder = sys.argv[1], sys.argv[2]
from littune.progress import quiet_third_party_bars
if mode == "quiet-first":
    quiet_third_party_bars()
import transformers  # noqa: F401  (imported before the switch in "quiet-after")
if mode == "quiet-after":
    quiet_third_party_bars()
from littune.towers import create_text_tower
create_text_tower("hf:" + folder)
print("loaded")
"""


@pytest.mark.parametrize("mode", ["loud", "quiet-first", "quiet-after"])
def test_transformers_loading_bar_is_silenced(tiny_bert, mode):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    r = subprocess.run([sys.executable, "-c", _LOAD, mode, str(tiny_bert)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "loaded", r.stderr
    # The control shows the bar is real; either way of switching it off removes it.
    assert ("Loading weights" in r.stderr) == (mode == "loud"), r.stderr


@pytest.fixture(scope="module")
def labelled(tiny_lit_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    for i, p in enumerate(tiny_lit_run["images"][:8]):  # classes named in words the tiny tokenizer knows
        (root / ("red", "blue")[i % 2]).mkdir(exist_ok=True)
        shutil.copy(p, root / ("red", "blue")[i % 2] / p.name)
    return root


def test_no_progress_means_no_bar_at_all(tiny_lit_run, labelled, tmp_path, capfd):
    def run(cache: Path, *flags: str) -> str:
        capfd.readouterr()
        assert main(["eval", "zeroshot", "--model", str(tiny_lit_run["run"]), "--images", str(labelled),
                     "--cache", str(cache), "--json", *flags]) == 0
        return capfd.readouterr().err

    assert BAR in run(tmp_path / "a")  # the control: embedding the folder draws a bar
    assert run(tmp_path / "b", "--no-progress") == ""  # the same work, nothing on stderr
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"  # and third-party bars are off too
