"""MkDocs hook: figures on the pages come from the results files benchmarks write (docs/results/).

``<!-- littune:results NAME | COMMAND -->`` becomes the figures of ``docs/results/NAME.json`` as a
table, headed by the machine that measured them and the exact command
(``benchmarks/common.py: write_results``). Without that file it becomes a note that the figures
await a measurement, naming the command that writes them, so no page quotes a figure no file backs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
MARK = re.compile(r"<!-- littune:results\s+([\w.-]+)\s*(?:\|\s*(.*?))?\s*-->")


def flatten(figures: object, prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as (dotted key, value) rows: ``levels[0].p50_ms``."""
    if isinstance(figures, dict):
        out = []
        for k, v in figures.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(figures, list) and any(isinstance(v, (dict, list)) for v in figures):
        out = []
        for i, v in enumerate(figures):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    return [(prefix, figures)]


def machine_line(machine: dict) -> str:
    isa = [k for k, v in (machine.get("isa") or {}).items() if v]
    versions = machine.get("versions") or {}
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "littune")
    load = machine.get("load_avg_1_5_15")
    busy = f"; load average {' / '.join(map(str, load))} (1 / 5 / 15 min) when it ended" if load else ""
    return (f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cores')} cores usable "
            f"(ISA: {', '.join(isa) or 'none of those recorded'}); {libs}; "
            f"commit {machine.get('commit') or '?'}, {machine.get('date') or 'undated'}{busy}")


# A study's table: one row per setting, two headline figures per evaluation (benchmarks/run_study.py).
STUDY_METRICS = {"i2t_r1": "i2t R@1", "t2i_r1": "t2i R@1", "top1": "top-1", "mean_per_class": "mean per class"}


def study_table(settings: dict) -> list[str]:
    """The settings of a `littune study` run as one markdown table; the best value of a column in bold."""
    evals: dict[str, list[str]] = {}
    for r in settings.values():
        for ev, figs in (r.get("evals") or {}).items():
            evals.setdefault(ev, [])
            evals[ev] += [k for k in STUDY_METRICS if k in figs and k not in evals[ev]]
    columns = [(ev, k) for ev, keys in evals.items() for k in keys]
    found = {c: [v for r in settings.values() if isinstance(v := (r.get("evals") or {}).get(c[0], {}).get(c[1]),
                                                               (int, float))] for c in columns}
    best = {c: max(vs) if len(set(vs)) > 1 else None for c, vs in found.items()}  # a column all equal: none

    def cell(r: dict, c: tuple[str, str]) -> str:
        v = (r.get("evals") or {}).get(c[0], {}).get(c[1])
        if not isinstance(v, (int, float)):
            return "–"
        return f"**{v:.3f}**" if v == best[c] else f"{v:.3f}"

    def minutes(s: object) -> str:
        return f"{s / 60:.1f}" if isinstance(s, (int, float)) else "–"

    head = ["setting", "image tower", "text tower", "steps × batch", "train min",
            *(f"{ev} {STUDY_METRICS[k]}" for ev, k in columns)]
    rows = [f"| {n} | {r['image']} | {r['text']} | {r['steps']} × {r['batch_size']} | {minutes(r.get('train_s'))} | "
            + " | ".join(cell(r, c) for c in columns) + " |" for n, r in settings.items()]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]


def render(name: str, command: str | None, root: Path = RESULTS) -> str:
    path = root / f"{name}.json"
    if not path.is_file():
        how = f"`{command}`" if command else "its benchmark"
        return (f'!!! note "Awaiting a measurement"\n    No results file `docs/results/{name}.json` yet: '
                f"{how} writes it, and this page then shows its figures with the machine that measured them.\n")
    record = json.loads(path.read_text())
    if record.get("benchmark") == "run_study":
        rows = study_table(record["figures"]["settings"])
    else:
        rows = ["| figure | value |", "|---|---|",
                *(f"| `{k}` | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in flatten(record["figures"]))]
    return "\n".join([
        f"Measured by `{record['command']}` on {machine_line(record['machine'])} "
        f"([`{name}.json`](results/{name}.json)).",
        *([f"", f"{record['notes']}"] if record.get("notes") else []),
        "", *rows, ""])


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs hook
    return MARK.sub(lambda m: render(m.group(1), m.group(2)), markdown)
