"""Figures written into the prose (summary tables, the README's headline rows) agree with the results
files they were read from, so re-running a benchmark without updating its page fails here."""
from __future__ import annotations

import json
import re

import pytest

from tests.docs.hooks import DOCS, REPO


def record(name: str) -> dict:
    path = DOCS / "results" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"docs/results/{name}.json not written yet")
    return json.loads(path.read_text())["figures"]


def section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    start = text.index(heading)
    nxt = text.find("\n## ", start + len(heading))
    return text[start:nxt if nxt > 0 else None]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def shown(text: str, value: float) -> bool:
    """``text`` is ``value`` rounded to the decimals the text shows."""
    decimals = len(text.partition(".")[2])
    return number(text) == round(value, decimals)


def test_cache_scale_summary_table_matches_its_results_file():
    figures = record("bench_cache_scale")
    text = section("caches.md", "## Measured: caches of")
    rows = {int(r["n"]): r for r in figures["rows"]}
    table = re.findall(r"^\| ([\d,]+) \| ([\d.]+) GB \| ([\d.]+) s \| ([\d.]+) s \(\+ ([\d.]+) s\) \| ([\d,]+) MiB / "
                       r"[^|]+\| ([\d,]+), ([\d.]+) GiB \| ([\d,]+), ([\d.]+) GiB \|$", text, flags=re.M)
    assert {int(number(t[0])) for t in table} == set(rows), "one table row per measured cache size"
    for n, disk, write, open_s, counts, arrow, u_ex, u_rss, b_ex, b_rss in table:
        r = rows[int(number(n))]
        assert shown(disk, r["bytes_on_disk"] / 1e9), n
        assert shown(write, r["write_s"]) and shown(open_s, r["open_s"]) and shown(counts, r["counts_s"]), n
        assert shown(arrow, r["captions_arrow_mib"]), n
        for mode, ex, rss in (("uniform", u_ex, u_rss), ("buffer", b_ex, b_rss)):
            assert shown(ex, r[mode]["examples_per_s"]) and shown(rss, r[mode]["peak_rss_gib"]), (n, mode)
    for mode, label in (("buffer", "through the shuffle buffer"), ("uniform", "uniform sampling")):
        v = figures["vs_smallest"][mode]
        m = re.search(label + r"\**:? x([\d.]+) (?:examples/s )?and \+([\d.]+) GiB", text)
        assert m, f"caches.md names the {mode} ratio"
        assert shown(m.group(1), v["examples_per_s_ratio"]) and shown(m.group(2), v["peak_rss_diff_gib"]), mode


def test_readme_demo_rows_match_the_demo_benchmark():
    figures = record("bench_demo")["warm"]
    readme = (REPO / "README.md").read_text()
    f = figures["flickr8k_test"]
    expected = {
        "Flickr8k test image->text R@1 / R@5 / R@10": f"{f['i2t_r1']:.3f} / {f['i2t_r5']:.3f} / {f['i2t_r10']:.3f}",
        "Flickr8k test text->image R@1 / R@5 / R@10": f"{f['t2i_r1']:.3f} / {f['t2i_r5']:.3f} / {f['t2i_r10']:.3f}",
        "flowers zero-shot top-1 (5 classes, chance 0.200)": f"{figures['flowers_zeroshot_top1']:.3f}",
        "flowers linear probe top-1 (locked features)": f"{figures['flowers_probe_top1']:.3f}",
        "wall time of `littune demo` (install not included)": f"{figures['littune_demo_wall_s'] / 60:.1f} min",
    }
    for label, value in expected.items():
        m = re.search(r"^\| " + re.escape(label) + r"\s*\| (.+?) \|$", readme, flags=re.M)
        assert m, f"README shows the demo's row {label!r}"
        assert m.group(1) == value, label


def test_readme_cold_demo_times_match_the_demo_benchmark():
    cold = record("bench_demo")["cold"]
    readme = " ".join((REPO / "README.md").read_text().split())
    m = re.search(r"installs \(([\d.]+) minutes\) and embeds [\d,]+ images and [\d,]+ captions \(([\d.]+) minutes "
                  r"on 2 cores\): ([\d.]+) minutes for a cold `make demo`", readme)
    assert m, "README gives the cold demo's install, embedding and total times"
    install, embed, total = (float(x) for x in m.groups())
    assert install == round(cold["phases_s"]["install"] / 60, 1) and embed == round(cold["phases_s"]["embed"] / 60, 1)
    assert total == round(cold["make_demo_wall_s"] / 60, 1)


def test_prefix_cache_page_quotes_its_results_file():
    figures = record("bench_prefix_cache-train")
    text = section("prefix_cache.md", "## What it costs and saves")
    cache = figures["cache"]
    assert (f"| {cache['disk_mb']:.0f} MB for {cache['texts']:,} captions ({cache['tokens']:,} tokens), built in "
            f"{cache['build_s']:.0f} s ({cache['build_texts_per_s']:.0f} captions/s) |") in text
    for name, label in (("live", "live"), ("prefix", "from the prefix cache")):
        speeds = " / ".join(f"{run['steps_per_s']:.4f}" for run in figures[name])
        assert f"| {label} | {speeds} steps/s |" in text
    assert f"| speed-up (best run of each) | {figures['speedup']:.2f}x |" in text
    assert f"load average {figures['load_avg_at_start'][0]:.1f} when it started" in text


def test_testing_page_lists_the_modules_below_the_mutation_goal():
    figures = record("mutation")
    text = section("testing.md", "### Last measured scores")
    row = re.search(r"^\| below 0\.90 \| (.*) \|$", text, flags=re.M)
    assert row, "testing.md's goal table has a 'below 0.90' row"
    shown_below = dict(re.findall(r"`([\w/]+\.py)` \(([\d.]+)\)", row.group(1)))
    below = {m.removeprefix("littune/"): f["score"] for m, f in figures.items() if f["score"] < 0.90}
    assert set(shown_below) == set(below)
    for module, score in shown_below.items():
        assert shown(score, below[module]), module


def _values(figures) -> set[float]:
    """Every number in a results file's figures, dict keys that are numbers (thresholds) included."""
    if isinstance(figures, dict):
        keys = {float(k) for k in figures if re.fullmatch(r"\d+\.\d+", str(k))}
        return keys.union(*(_values(v) for v in figures.values()))
    if isinstance(figures, list):
        return set().union(*(_values(v) for v in figures)) if figures else set()
    return {float(figures)} if isinstance(figures, (int, float)) and not isinstance(figures, bool) else set()


def test_time_to_quality_reading_quotes_its_results_file():
    """Every R@1 or top-1 the reading below bench_ttq's box quotes (0.xxx) is a figure of that run."""
    values = _values(record("bench_ttq")) | _values(record("bench_ttq-demo"))  # the full table; the demo's now
    text = section("benchmarks.md", "## Time to quality")
    reading = text[text.index("Reading the run above"):]
    quoted = re.findall(r"\b0\.\d{3}\b", reading)
    assert quoted, "the reading quotes the run's figures"
    towers = _values(record("study-towers"))  # the towers study's figure it points to
    for q in quoted:
        assert any(shown(q, v) for v in values | towers), f"{q} is in none of bench_ttq[-demo], study-towers"


def test_readme_test_time_matches_bench_make_test():
    figures = record("bench_make_test")
    readme = (REPO / "README.md").read_text()
    m = re.search(r"`make test` runs ([\d,]+) tests .*? it\s+took\s+([\d.]+)\s+minutes\s+in\s+all:\s+([\d.]+)\s+of\s+first"
                  r"\s+install\s+and\s+([\d.]+)\s+of\s+tests", readme, flags=re.S)
    assert m, "the README says how long make test takes"
    assert int(number(m.group(1))) == figures["counts"]["passed"]
    for text, key in zip(m.groups()[1:], ("total_min", "install_min", "test_min")):
        assert shown(text, figures[key]), key


def _study_numbers(figures: dict) -> tuple[set[float], set[float]]:
    """A study's evaluation figures, and the differences between settings on the same figure (and
    between one setting's evaluations of the same figure, e.g. with and without aliases)."""
    by_metric: dict[tuple[str, str], list[float]] = {}
    for r in figures["settings"].values():
        for ev, figs in (r.get("evals") or {}).items():
            for k, v in figs.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    by_metric.setdefault((ev, k), []).append(float(v))
    values = {v for vs in by_metric.values() for v in vs}
    diffs = {abs(a - b) for vs in by_metric.values() for a in vs for b in vs}
    for r in figures["settings"].values():  # one setting, the same figure under two evaluations (aliases or not)
        evals = [e for e in (r.get("evals") or {}).values()]
        diffs |= {abs(a[k] - b[k]) for a in evals for b in evals for k in a.keys() & b.keys()
                  if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))}
    return values, diffs


@pytest.mark.parametrize("name, heading", [("study-towers", "## Stronger locked towers"),
                                           ("study-zeroshot", "## Zero-shot that keeps"),
                                           ("study-flickr8k_lock", "## Does locking help?"),
                                           ("study-views", "## How the image is seen"),
                                           ("study-mpnet", "## The demo's recipe on MPNet"),
                                           ("study-concat_weight", "## How much Lite2"),
                                           ("study-head_regularisation", "## Regularising the text head"),
                                           ("study-lite1", "## A smaller second image tower"),
                                           ("study-loss", "## The sigmoid loss"),
                                           ("study-sigmoid_more", "## Around the sigmoid loss"),
                                           ("study-anchors", "## The image tower's own classes"),
                                           ("study-anchors_more", "## Around the class anchors")])
def test_study_readings_quote_their_results_files(name, heading):
    """Each three-decimal figure a study's reading quotes is one of its run's figures, or the gap
    between two settings on the same figure: rerunning a study without rereading it fails here."""
    values, diffs = _study_numbers(record(name))
    text = section("studies.md", heading)
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("|"))
    quoted = re.findall(r"(?<![\d.])([+\-−]?)(0\.\d{3})\b", prose)
    assert quoted, f"the {name} reading quotes its figures"
    for sign, q in quoted:
        pool = diffs if sign else values | diffs
        assert any(shown(q, v) for v in pool), f"{sign}{q} in the {name} reading is not a figure of docs/results/{name}.json"
