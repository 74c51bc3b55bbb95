"""benchmarks/gpu_check.py runs end to end on the CPU (the same code a GPU machine runs)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")
def test_gpu_check_on_cpu(shared_data, tmp_path):
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--images", "16",
           "--steps", "2", "--live-steps", "1", "--compare", "2", "--batch", "8", "--nproc", "2",
           "--out", str(tmp_path / "out")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1", "LITTUNE_CACHE_DIR": str(tmp_path / "cache"),
        "LITTUNE_RESULTS_DIR": str(tmp_path / "results")})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["ok"] and figures["device"] == "cpu"
    assert figures["embed"]["images"] == 16 and figures["embed"]["min_cosine_vs_cpu"] >= 0.999
    assert figures["cached"]["steps"] == 2 and figures["cached"]["steps_per_s"] > 0
    assert figures["losses_vs_cpu"]["max_rel_diff"] == 0.0  # the same device: the same numbers
    assert len(figures["torchrun"]["losses"]) == 2 and figures["torchrun"]["nproc"] == 2
    assert figures["torchrun"]["max_rel_diff_vs_one_process"] <= 1e-3  # two processes, one global batch
    # the same figures in its results file, with the machine and the command (benchmarks/common.py)
    record = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    assert record["figures"] == figures and record["command"].startswith("python benchmarks/gpu_check.py --device cpu")
    assert record["machine"]["cores"] >= 1 and "avx512f" in record["machine"]["isa"]
    assert record["machine"]["versions"]["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    plan = figures["plan"]  # what docs/scale_plan.md assumes, measured (here on the CPU, 2 rows)
    assert plan["batch"] == 2 and plan["matmul_bf16_gflops"] > 0 and plan["stated_peak_bf16_gflops"] is None
    assert plan["vit_b16_forward"]["gflops"] > 0 and 0 < plan["vit_b16_forward"]["of_matmul"] < 5
    assert plan["bert_base_train"]["gflops"] > 0 and plan["bert_base_train"]["plan_activation_mib_per_example"] > 1
    assert plan["decode_ms_per_image"] > 0
