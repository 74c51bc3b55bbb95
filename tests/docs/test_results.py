"""Figures are traceable: benchmarks write results files with the machine and the command, and the
pages render their figure boxes from those files (docs/hooks/results.py)."""
from __future__ import annotations

import json
import re
import sys

from tests.docs.hooks import DOCS, REPO, common, results


def test_write_results_records_machine_command_and_figures(tmp_path, monkeypatch):
    bench = common()
    monkeypatch.setenv("LITTUNE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(REPO / "benchmarks" / "bench_cache.py"), "--quick", "--threads", "2"])
    path = bench.write_results({"embed_images_per_s": 38.1, "rows": [{"batch": 256, "peak_rss_gib": 2.54}]})
    assert path == tmp_path / "bench_cache-quick.json"
    record = json.loads(path.read_text())
    assert record["command"] == "python benchmarks/bench_cache.py --quick --threads 2"
    machine = record["machine"]
    assert machine["cores"] >= 1 and set(machine["isa"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert machine["versions"]["torch"] and "openvino" in machine["versions"] and machine["date"].endswith("Z")
    assert len(machine["load_avg_1_5_15"]) == 3 and all(x >= 0 for x in machine["load_avg_1_5_15"])
    cpuinfo = open("/proc/cpuinfo").read() if sys.platform == "linux" else ""
    if cpuinfo:
        assert machine["cpu"] and machine["cpu"] in cpuinfo
        assert machine["isa"]["avx2"] == (" avx2 " in cpuinfo.replace("\n", " "))
    monkeypatch.setenv("LITTUNE_RESULTS_DIR", "")
    assert bench.write_results({"x": 1}) is None  # empty: no file


def test_a_results_box_shows_exactly_the_files_figures(tmp_path):
    record = {"benchmark": "bench_x", "variant": None, "command": "python benchmarks/bench_x.py --n 3",
              "machine": {"cpu": "Test CPU 9000", "cores": 2, "isa": {"avx2": True, "amx_bf16": False},
                          "versions": {"torch": "2.14.1", "openvino": "2026.4.1"}, "commit": "abc1234",
                          "date": "2026-12-06T04:00:00Z", "load_avg_1_5_15": [2.1, 1.5, 0.9]},
              "notes": None, "figures": {"images_per_s": 45.9, "levels": [{"p50_ms": 386}, {"p50_ms": 1190}]}}
    (tmp_path / "bench_x.json").write_text(json.dumps(record))
    box = results().render("bench_x", None, root=tmp_path)
    assert "`python benchmarks/bench_x.py --n 3`" in box and "Test CPU 9000, 2 cores usable (ISA: avx2)" in box
    assert "torch 2.14.1" in box and "openvino 2026.4.1" in box
    assert "load average 2.1 / 1.5 / 0.9 (1 / 5 / 15 min) when it ended" in box
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", box, flags=re.M))
    assert rows == {"images_per_s": "45.9", "levels[0].p50_ms": "386", "levels[1].p50_ms": "1190"}
    missing = results().render("bench_y", "python benchmarks/bench_y.py", root=tmp_path)
    assert "Awaiting a measurement" in missing and "`python benchmarks/bench_y.py`" in missing


def test_every_results_file_is_complete_and_shown_on_a_page():
    pages = "".join(p.read_text() for p in DOCS.glob("*.md"))
    shown = set(results().MARK.findall(pages))
    names = {name for name, _ in shown}
    for path in sorted((DOCS / "results").glob("*.json")):
        record = json.loads(path.read_text())
        assert {"command", "machine", "figures"} <= set(record), path.name
        assert record["machine"].get("cpu") and record["machine"].get("date"), path.name
        assert path.stem in names, f"docs/results/{path.name} is shown on no page"
    for name, command in shown:  # each box names the command that writes its file
        assert command and command.startswith("python benchmarks/"), name
        script = command.split()[1]
        assert (REPO / script).is_file(), f"{name}: {script} does not exist"


def test_a_study_box_is_one_row_per_setting_with_the_best_in_bold(tmp_path):
    def setting(name, r1, top1):
        return {"setting": name, "image": "efficientnet_lite0 (L)", "text": "minilm (L)", "steps": 300,
                "batch_size": 1024, "train_s": 90.0,
                "evals": {"dev": {"i2t_r1": r1, "t2i_r1": 0.2, "i2t_r5": 0.9},
                          "flowers": {"top1": top1, "top5": 1.0, "mean_per_class": 0.3}}}
    record = {"benchmark": "run_study", "variant": "x", "command": "python benchmarks/run_study.py configs/study/x.yaml",
              "machine": {"cpu": "Test CPU", "cores": 2, "date": "2026-12-06T04:00:00Z"}, "notes": None,
              "figures": {"config": "configs/study/x.yaml", "wall_s": 1.0,
                          "settings": {"a": setting("a", 0.3214, 0.41), "b": setting("b", 0.35, 0.3999)}}}
    (tmp_path / "study-x.json").write_text(json.dumps(record))
    box = results().render("study-x", None, root=tmp_path)
    lines = [ln for ln in box.splitlines() if ln.startswith("|")]
    assert lines[0] == ("| setting | image tower | text tower | steps × batch | train min | dev i2t R@1 | dev t2i R@1 "
                        "| flowers top-1 | flowers mean per class |")
    assert lines[2] == "| a | efficientnet_lite0 (L) | minilm (L) | 300 × 1024 | 1.5 | 0.321 | 0.200 | **0.410** | 0.300 |"
    assert lines[3] == "| b | efficientnet_lite0 (L) | minilm (L) | 300 × 1024 | 1.5 | **0.350** | 0.200 | 0.400 | 0.300 |"
    assert len(lines) == 4
