"""bench_make_test reads pytest's summary line in both shapes pytest prints it (with -q, as `make test`
runs it, the line has no rules around it), and the counts in it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "bench_make_test", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_make_test.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("line", ["1095 passed, 1 skipped, 11 warnings in 546.25s (0:09:06)",
                                  "===== 1095 passed, 1 skipped, 11 warnings in 546.25s (0:09:06) ====="])
def test_summary_line_is_found_with_or_without_rules(line):
    log = f"tests/x.py::test_a\n  some warning in 3.0s of text\n{line}\n"
    [(summary, seconds)] = bench.SUMMARY.findall(log)
    assert float(seconds) == 546.25
    assert bench.counts(summary) == {"passed": 1095, "skipped": 1}


def test_failures_are_counted():
    [(summary, _)] = bench.SUMMARY.findall("2 failed, 1093 passed in 600.00s (0:10:00)\n")
    assert bench.counts(summary) == {"failed": 2, "passed": 1093}
