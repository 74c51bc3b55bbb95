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


def render(name: str, command: str | None, root: Path = RESULTS) -> str:
    path = root / f"{name}.json"
    if not path.is_file():
        how = f"`{command}`" if command else "its benchmark"
        return (f'!!! note "Awaiting a measurement"\n    No results file `docs/results/{name}.json` yet: '
                f"{how} writes it, and this page then shows its figures with the machine that measured them.\n")
    record = json.loads(path.read_text())
    rows = [f"| `{k}` | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in flatten(record["figures"])]
    return "\n".join([
        f"Measured by `{record['command']}` on {machine_line(record['machine'])} "
        f"([`{name}.json`](results/{name}.json)).",
        *([f"", f"{record['notes']}"] if record.get("notes") else []),
        "", "| figure | value |", "|---|---|", *rows, ""])


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs hook
    return MARK.sub(lambda m: render(m.group(1), m.group(2)), markdown)
