"""`littune classify | index | search | export`: output schemas, tables, and exit 2 on bad input."""
from __future__ import annotations

import json
import shutil

import pytest

import littune
from littune.cli import main


@pytest.fixture(scope="module")
def photos(tiny_lit_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_photos")
    for p in tiny_lit_run["images"][:10]:
        shutil.copy(p, root / p.name)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def test_classify_json_schema(tiny_lit_run, capsys):
    run, images = str(tiny_lit_run["run"]), [str(p) for p in tiny_lit_run["images"][:3]]
    labels = ["red above green", "blue above red", "black above white"]
    assert main(["classify", "--model", run, *images, "--labels", ",".join(labels), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and len(out) == 3
    expected = littune.load(run).classify(images, labels)
    for row, path, exp in zip(out, images, expected):
        assert set(row) == {"image", "label", "scores", "probabilities"} and row["probabilities"] == "softmax"
        assert row["image"] == path
        assert list(row["scores"]) == list(exp) and set(row["scores"]) == set(labels)
        assert row["label"] == max(row["scores"], key=row["scores"].get) == next(iter(exp))
        assert sum(row["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert all(0 <= v <= 1 for v in row["scores"].values())


def test_classify_table(tiny_lit_run, capsys):
    image = str(tiny_lit_run["images"][0])
    assert main(["classify", "--model", str(tiny_lit_run["run"]), image, "--labels", "red above green, blue above red",
                 "--templates", "single"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == image
    assert lines[1].lstrip().startswith("1. ") and lines[2].lstrip().startswith("2. ")
    assert "%" in lines[1] and "#" in lines[1]


@pytest.mark.parametrize("args, message", [
    (["--labels", " , "], "labels"),
    (["--labels", "a,a"], "duplicate"),
    (["--labels", "a,b", "--templates", "no-such-set"], "unknown template set"),
])
def test_classify_bad_input_exits_2(tiny_lit_run, capsys, args, message):
    assert main(["classify", "--model", str(tiny_lit_run["run"]), str(tiny_lit_run["images"][0]), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("littune classify: error:") and message in err


def test_classify_names_the_bad_file(tiny_lit_run, photos, capsys):
    # Nothing could be classified: exit 2 with the file named.
    assert main(["classify", "--model", str(tiny_lit_run["run"]), str(photos / "broken.png"), "--labels", "a,b"]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main(["classify", "--model", str(photos / "nope"), str(photos / "broken.png"), "--labels", "a,b"]) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_classify_skips_bad_files_and_goes_on(tiny_lit_run, photos, capsys):
    run, good = str(tiny_lit_run["run"]), [str(p) for p in tiny_lit_run["images"][:2]]
    broken, missing = str(photos / "broken.png"), str(photos / "missing.jpg")
    args = ["classify", "--model", run, good[0], broken, good[1], missing, "--labels", "a,b"]
    assert main([*args, "--json"]) == 0  # some images could be classified: exit 0
    out = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in out] == [good[0], broken, good[1], missing]
    assert out[0]["label"] in ("a", "b") and out[2]["label"] in ("a", "b") and "skipped" not in out[0]
    reason = out[1].pop("skipped")  # the PNG signature, then garbage
    assert out[1] == {"image": broken, "label": None, "scores": None} and reason.startswith(f"{broken}: truncated")
    assert out[3] == {"image": missing, "label": None, "scores": None, "skipped": f"{missing}: missing"}
    assert main(args) == 0
    printed = capsys.readouterr()
    assert [line for line in printed.out.splitlines() if not line.startswith(" ")] == [
        good[0], good[1], "probabilities: softmax over the labels"]
    assert printed.err.splitlines() == [f"skipped {reason}", f"skipped {missing}: missing"]


def test_index_then_search_json(tiny_lit_run, photos, tmp_path, capsys):
    out = tmp_path / "photos.index"
    args = ["index", "--model", str(tiny_lit_run["run"]), str(photos), "--out", str(out), "--no-progress",
            "--workers", "0"]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # --json: the JSON alone
    assert summary["count"] == 10 and summary["n_bad"] == 1 and summary["backend"] == "exact"
    assert "broken.png" in (out / "features" / "bad_inputs.tsv").read_text()
    assert main(args) == 0  # the index is complete: it opens again; without --json, one summary line
    assert capsys.readouterr().out.splitlines() == [
        f"indexed 10 images of {photos} into {out} (exact search); skipped 1 bad images, listed in {summary['bad_inputs']}"]

    assert main(["search", "--index", str(out), "red above green", "-k", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all(set(h) == {"rank", "path", "key", "score"} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["path"] == str(photos / h["key"]) for h in hits)
    expected = littune.load_index(out).search("red above green", k=4)
    assert [h["key"] for h in hits] == [e.key for e in expected]

    assert main(["search", "--index", str(out), "red above green", "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and table[0].startswith("  1. ") and table[0].endswith(hits[0]["path"])

    with pytest.raises(SystemExit) as stop:  # refused by the parser, from the option's declared range
        main(["search", "--index", str(out), "red", "-k", "0"])
    assert stop.value.code == 2 and "argument -k: 0 is not allowed: give an integer >= 1" in capsys.readouterr().err
    assert main(["search", "--index", str(out), "  "]) == 2
    assert "query: empty" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path), "red"]) == 2
    assert "not an image index" in capsys.readouterr().err


def test_export_cli(tiny_lit_run, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_lit_run["run"]), "--out", str(tmp_path / "e"), "--json"]) == 0
    printed = capsys.readouterr()
    out = json.loads(printed.out)
    assert out["out"] == str(tmp_path / "e") and out["hf_dual_encoder"] is None and out["hf_dual_encoder_skipped"]
    # Why there is no transformers folder is said where it is seen, not only written in export.json.
    assert printed.err.strip() == f"littune export: no transformers dual encoder: {out['hf_dual_encoder_skipped']}"
    assert main(["classify", "--model", str(tmp_path / "e"), str(tiny_lit_run["images"][0]), "--labels", "a,b",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] in ("a", "b")
    assert main(["export", "--model", str(tiny_lit_run["run"]), "--out", str(tmp_path / "e")]) == 2
    assert "not empty" in capsys.readouterr().err
