"""Training metrics to ``metrics.jsonl`` (one JSON object per line) and TensorBoard."""
from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: int = 0):
        self.path = run_dir / "metrics.jsonl"
        self.bad_path = run_dir / "bad_inputs.tsv"
        if self.path.is_file():  # drop rows past the checkpoint we resume from
            rows = [r for r in self._read() if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._f = self.path.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is optional for users
            self.tb = None

    def _read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, row: dict) -> None:
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def bad_inputs(self, rows: list[tuple]) -> None:
        new = not self.bad_path.is_file()
        with self.bad_path.open("a", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            if new:
                w.writerow(["key", "path", "reason", "detail"])
            w.writerows(rows)

    def close(self) -> None:
        self._f.close()
        if self.tb is not None:
            self.tb.close()
